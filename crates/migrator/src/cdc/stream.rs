//! Reading a slot over the streaming replication protocol (`START_REPLICATION ... LOGICAL`), the
//! way PostgreSQL's own apply worker reads it, through the maintained `pgwire-replication` crate.
//!
//! Why not `pg_logical_slot_peek_binary_changes`: the SQL function decodes a whole round into a
//! tuplestore before it returns the first row, the slot can only move on after the round is
//! applied (so decoding and applying never overlap), and `pg_replication_slot_advance` decodes
//! the same WAL a second time. The walsender decodes once and streams while we apply; the slot's
//! position moves when we report it (a standby status update), and only ever to a position every
//! target has committed.
//!
//! The walsender renders values with the session settings given at connection
//! ([`crate::engine::sql::SESSION_SETUP`]'s, as startup options), so a row's text is the same as the
//! copy's and verify's.

use std::time::Duration;

use pgwire_replication::{ReplicationClient, ReplicationConfig, ReplicationEvent};

use crate::cdc::pgoutput::{self, Lsn, Message};
use crate::error::{MigrateError, Result};

/// Startup options: the settings of [`crate::engine::sql::SESSION_SETUP`] that change how a value prints.
const RENDERING: &str = "-c DateStyle=ISO,MDY -c IntervalStyle=postgres -c extra_float_digits=1 \
                         -c bytea_output=hex -c TimeZone=UTC -c standard_conforming_strings=on";

/// Messages the client reads ahead (each one row change, or a begin or commit).
const STREAM_BUFFER: usize = 32;

/// What the stream delivers.
#[derive(Debug)]
pub enum Event {
    /// A decoded `pgoutput` message.
    Message(Message),
    /// The server has sent everything up to here (a keepalive): no commit before it is pending.
    Position(Lsn),
}

/// One walsender session on a slot.
pub struct Stream {
    client: ReplicationClient,
    confirmed: Lsn,
}

/// Where to connect, from a `postgresql://` URL: the replication connection takes host, port,
/// user, password and database as fields.
fn config(url: &str, slot: &str, publication: &str, from: Lsn) -> Result<ReplicationConfig> {
    let opts = platform::db::parse_url(url).map_err(MigrateError::Usage)?;
    if matches!(
        opts.get_ssl_mode(),
        sqlx::postgres::PgSslMode::Require
            | sqlx::postgres::PgSslMode::VerifyCa
            | sqlx::postgres::PgSslMode::VerifyFull
    ) {
        return Err(MigrateError::Usage(
            "sync reads the slot without TLS, and the legacy URL requires it (sslmode); run the \
             tool where it reaches the server over a trusted network, or use sync --method diff"
                .into(),
        ));
    }
    let parsed = url::Url::parse(url).map_err(|e| MigrateError::Usage(e.to_string()))?;
    let password = parsed
        .password()
        .map(|p| {
            url::form_urlencoded::parse(format!("p={p}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        })
        .or_else(|| {
            parsed
                .query_pairs()
                .find(|(k, _)| k == "password")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default();
    let host = match opts.get_socket() {
        Some(dir) => dir.display().to_string(),
        None => opts.get_host().to_string(),
    };
    let mut cfg = ReplicationConfig::new(
        host,
        opts.get_username(),
        password,
        opts.get_database().unwrap_or("postgres"),
        slot,
        publication,
    )
    .with_port(opts.get_port())
    .with_start_lsn(pgwire_replication::Lsn::from_u64(from.0))
    // Never report less than the slot already confirmed.
    .with_ack_lsn(pgwire_replication::Lsn::from_u64(from.0))
    .with_status_interval(Duration::from_millis(100))
    // Messages read ahead of the router: the bound of what waits here is this many rows.
    .with_buffer_size(STREAM_BUFFER)
    .with_options(RENDERING)
    .with_application_name("mfe migrate");
    cfg.tls = pgwire_replication::TlsConfig::disabled();
    Ok(cfg)
}

/// Writes a fence into the WAL of the database `conn` is connected to (a transactional
/// `pg_logical_emit_message` under `prefix`); once a stream of it delivers the fence, every
/// transaction committed before this call has been delivered. Returns the fence's content.
pub async fn write_fence(conn: &mut sqlx::PgConnection, prefix: &str) -> Result<String> {
    let fence = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    sqlx::query("SELECT pg_logical_emit_message(true, $1, $2)")
        .bind(prefix)
        .bind(&fence)
        .execute(conn)
        .await?;
    Ok(fence)
}

impl Stream {
    /// Starts streaming `slot` (of `publication`) from `from`, its confirmed position.
    pub async fn open(url: &str, slot: &str, publication: &str, from: Lsn) -> Result<Self> {
        let cfg = config(url, slot, publication, from)?;
        let client = ReplicationClient::connect(cfg)
            .await
            .map_err(|e| stream_error("starting to stream the slot", e, url))?;
        Ok(Self {
            client,
            confirmed: from,
        })
    }

    /// The next event; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<Event>> {
        let Some(event) = self
            .client
            .recv()
            .await
            .map_err(|e| MigrateError::Stream(format!("the replication stream failed: {e}")))?
        else {
            return Ok(None);
        };
        Ok(Some(match event {
            ReplicationEvent::XLogData { data, .. } => Event::Message(
                pgoutput::parse(&data).map_err(|e| MigrateError::Stream(e.to_string()))?,
            ),
            ReplicationEvent::Begin {
                final_lsn,
                xid,
                commit_time_micros,
            } => Event::Message(Message::Begin {
                final_lsn: Lsn(final_lsn.as_u64()),
                commit_time: commit_time_micros,
                xid,
            }),
            ReplicationEvent::Commit {
                lsn,
                end_lsn,
                commit_time_micros,
            } => Event::Message(Message::Commit {
                commit_lsn: Lsn(lsn.as_u64()),
                end_lsn: Lsn(end_lsn.as_u64()),
                commit_time: commit_time_micros,
            }),
            ReplicationEvent::Message {
                transactional,
                lsn,
                prefix,
                content,
            } => Event::Message(Message::Logical {
                transactional,
                lsn: Lsn(lsn.as_u64()),
                prefix,
                content: content.to_vec(),
            }),
            ReplicationEvent::KeepAlive { wal_end, .. } => Event::Position(Lsn(wal_end.as_u64())),
            ReplicationEvent::StoppedAt { .. } => return Ok(None),
        }))
    }

    /// Everything before `lsn` is committed where it goes: the server may forget it. Sent with
    /// the next status update (within 100 ms).
    pub fn confirm(&mut self, lsn: Lsn) {
        self.confirmed = self.confirmed.max(lsn);
        self.client
            .update_applied_lsn(pgwire_replication::Lsn::from_u64(lsn.0));
    }

    /// Sends the last confirmed position and ends the session (the end of the stream says
    /// nothing of positions: the server would keep the one it had).
    pub async fn close(mut self) {
        let metrics = self.client.metrics();
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while metrics.last_applied_lsn().as_u64() < self.confirmed.0
            && std::time::Instant::now() < deadline
            && self.client.is_running()
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.client.shutdown()).await;
    }
}

fn stream_error(what: &str, e: pgwire_replication::PgWireError, url: &str) -> MigrateError {
    MigrateError::Stream(format!(
        "{what} on {} failed: {e}",
        platform::config::mask_url(url)
    ))
}
