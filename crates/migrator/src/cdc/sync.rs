//! `sync`: reads the slot's changes and applies them, until caught up or, with `follow`, until
//! stopped.
//!
//! The slot is read with `pg_logical_slot_peek_binary_changes` up to the server's position at the
//! start of each round, a bounded number of changes at a time (decoding stops at a transaction's
//! end, so a round holds whole transactions), and its rows are applied as they arrive: a legacy
//! transaction of a million rows never sits in memory. The slot is advanced only after every
//! target committed what the round held: to the last commit applied, or, when the round drained
//! the stream up to its position, to that position (no commit of the publication's tables lies
//! between; a transaction still open there commits later and is still decoded then).

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use platform::Service;
use serde::Serialize;
use sqlx::PgConnection;

use crate::cdc::apply::{self, Applier, RowChange};
use crate::cdc::pgoutput::{self, Lsn, Message};
use crate::cdc::slot::{self, PUBLICATION};
use crate::connect;
use crate::contract::TABLES;
use crate::endpoints::Endpoints;
use crate::error::{MigrateError, Result};
use crate::progress::Progress;

/// Changes decoded per round (the round ends at the end of the transaction that reaches it).
const ROUND_CHANGES: i32 = 20_000;

/// The advisory lock (in the legacy database) a running sync holds.
const SYNC_LOCK: i64 = 0x6d66_655f_7379_6e63; // "mfe_sync"

/// The message prefix of cutover's end-of-stream marker.
pub const MARKER_PREFIX: &str = "mfe-cutover";

#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Keep applying until stopped, rather than until caught up.
    pub follow: bool,
    /// Stop once this marker (`pg_logical_emit_message` content) has been applied; a change
    /// after it is an error (a writer got past the freeze).
    pub until_marker: Option<String>,
    /// How long to wait for another sync to end (a killed one's session may linger a moment)
    /// before giving up with [`MigrateError::SyncBusy`].
    pub wait_for_other: Duration,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    pub transactions: u64,
    pub rows: u64,
    /// The last commit applied.
    pub position: Option<String>,
    /// Bytes of WAL between the slot and the server's position at the end.
    pub lag_bytes: i64,
    pub seconds: f64,
    pub marker_seen: bool,
}

/// Lag and rate, for the progress display.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lag {
    pub bytes: i64,
    pub seconds: f64,
    pub changes_per_second: f64,
}

/// The legacy columns of the contract tables: (name, type oid, typmod) in column order.
async fn legacy_catalog(
    conn: &mut PgConnection,
) -> Result<HashMap<String, Vec<(String, u32, i32)>>> {
    let rows: Vec<(String, String, i64, i32)> = sqlx::query_as(
        "SELECT c.relname::text, a.attname::text, a.atttypid::bigint, a.atttypmod \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relname = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY c.relname, a.attnum",
    )
    .bind(TABLES.iter().map(|t| t.name).collect::<Vec<_>>())
    .fetch_all(conn)
    .await?;
    let mut out: HashMap<String, Vec<(String, u32, i32)>> = HashMap::new();
    for (table, column, oid, typmod) in rows {
        out.entry(table)
            .or_default()
            .push((column, oid as u32, typmod));
    }
    Ok(out)
}

fn pg_time(micros_since_2000: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    const UNIX_2000: i64 = 946_684_800_000_000;
    chrono::DateTime::from_timestamp_micros(micros_since_2000.checked_add(UNIX_2000)?)
}

pub async fn sync(
    endpoints: &Endpoints,
    opts: &SyncOptions,
    progress: &dyn Progress,
    on_lag: &(dyn Fn(Lag) + Sync),
    stop: impl Future<Output = ()>,
) -> Result<SyncReport> {
    let started = Instant::now();
    let mut legacy = connect::connection("legacy", endpoints.legacy()).await?;
    if slot::info(&mut legacy).await?.is_none() {
        return Err(MigrateError::Usage(
            "there is no capture slot on the legacy database: `copy` makes one when the server \
             allows logical decoding (else use `sync --method diff`)"
                .into(),
        ));
    }
    // One sync at a time: two would read the same changes and apply them side by side. The lock
    // is this connection's, so it goes with the process, however it ends.
    // A killed sync's backend ends soon after it next fails to reach its client.
    let _ = sqlx::raw_sql("SET client_connection_check_interval = 1000")
        .execute(&mut legacy)
        .await;
    let give_up = Instant::now() + opts.wait_for_other;
    loop {
        let mine: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(SYNC_LOCK)
            .fetch_one(&mut legacy)
            .await?;
        if mine {
            break;
        }
        if Instant::now() >= give_up {
            return Err(MigrateError::SyncBusy);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let slot_name = slot::slot_of(&mut legacy).await?;
    let catalog = legacy_catalog(&mut legacy).await?;
    let mut targets = Vec::new();
    for service in Service::ALL {
        let mut conn = connect::connection(service.name(), endpoints.target(service)).await?;
        sqlx::raw_sql(apply::POSITION_SQL)
            .execute(&mut conn)
            .await?;
        targets.push((service, conn));
    }
    let mut applier = Applier::new(&slot_name, targets, catalog).await?;
    let mut report = SyncReport::default();
    tokio::pin!(stop);
    let mut last_commit_time: Option<chrono::DateTime<chrono::Utc>> = None;
    // Set once the marker was applied, across rounds: any change after it is a writer that got
    // past the freeze.
    let mut after_marker = false;
    let outcome: Result<()> = async {
        loop {
            let round_started = Instant::now();
            // The flushed position: decoding reads no further, and advancing the slot to a
            // position it has not decoded would skip a commit.
            let upto: String = sqlx::query_scalar("SELECT pg_current_wal_flush_lsn()::text")
                .fetch_one(&mut legacy)
                .await?;
            let upto: Lsn = upto.parse().map_err(MigrateError::Other)?;
            let mut messages = 0i64;
            let mut changes_in_round = 0u64;
            let mut last_end: Option<Lsn> = None;
            let mut begin_time = None;
            {
                let mut rows = sqlx::query_as::<_, (Vec<u8>,)>(
                    "SELECT data FROM pg_logical_slot_peek_binary_changes($1, $2::text::pg_lsn, $3, \
                     'proto_version', '1', 'publication_names', $4, 'messages', 'true')",
                )
                .bind(&slot_name)
                .bind(upto.to_string())
                .bind(ROUND_CHANGES)
                .bind(PUBLICATION)
                .fetch(&mut legacy);
                while let Some((data,)) = rows.try_next().await? {
                    messages += 1;
                    match pgoutput::parse(&data).map_err(|e| MigrateError::Other(e.to_string()))? {
                        Message::Begin { final_lsn, commit_time, .. } => {
                            applier.begin(final_lsn);
                            begin_time = pg_time(commit_time);
                        }
                        Message::Relation(rel) => applier.relation(&rel)?,
                        Message::Insert { relation, new } => {
                            if after_marker {
                                return Err(past_marker());
                            }
                            changes_in_round += 1;
                            applier.change(relation, RowChange::Insert { values: new }).await?;
                        }
                        Message::Update { relation, old, new } => {
                            if after_marker {
                                return Err(past_marker());
                            }
                            changes_in_round += 1;
                            let old_key = match &old {
                                Some(old) => apply::old_key(old, applier.key_index(relation)?),
                                None => None,
                            };
                            applier
                                .change(relation, RowChange::Update { old_key, values: new })
                                .await?;
                        }
                        Message::Delete { relation, old } => {
                            if after_marker {
                                return Err(past_marker());
                            }
                            changes_in_round += 1;
                            let key = apply::old_key(&old, applier.key_index(relation)?)
                                .ok_or_else(|| MigrateError::Other("a delete without its key".into()))?;
                            applier.change(relation, RowChange::Delete { key }).await?;
                        }
                        Message::Truncate { relations, .. } => {
                            if after_marker {
                                return Err(past_marker());
                            }
                            changes_in_round += 1;
                            applier.truncate(&relations).await?;
                        }
                        Message::Logical { prefix, content, .. } if prefix == MARKER_PREFIX => {
                            let content = String::from_utf8_lossy(&content).to_string();
                            if opts.until_marker.as_deref() == Some(content.as_str()) {
                                after_marker = true;
                                report.marker_seen = true;
                            }
                        }
                        Message::Commit { end_lsn, .. } => {
                            let applied = applier.commit(begin_time).await?;
                            report.transactions += 1;
                            report.rows += applied.rows;
                            last_end = Some(end_lsn);
                            last_commit_time = begin_time.or(last_commit_time);
                        }
                        Message::Logical { .. } | Message::Type | Message::Origin => {}
                    }
                }
            }
            let drained = messages < i64::from(ROUND_CHANGES);
            let advance_to = if drained { Some(upto) } else { last_end };
            if let Some(lsn) = advance_to {
                slot::advance(&mut legacy, &slot_name, lsn).await?;
                report.position = Some(lsn.to_string());
            }
            let info = slot::info(&mut legacy).await?;
            let lag_bytes = info.map_or(0, |i| i.lag_bytes);
            let round_secs = round_started.elapsed().as_secs_f64().max(0.001);
            on_lag(Lag {
                bytes: lag_bytes,
                seconds: if drained {
                    0.0
                } else {
                    last_commit_time.map_or(0.0, |t| {
                        (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0
                    })
                },
                changes_per_second: changes_in_round as f64 / round_secs,
            });
            report.lag_bytes = lag_bytes;
            if report.marker_seen && drained {
                return Ok(());
            }
            if drained && !opts.follow && opts.until_marker.is_none() {
                return Ok(());
            }
            if drained {
                tokio::select! {
                    _ = &mut stop => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            } else if futures::poll!(&mut stop).is_ready() {
                return Ok(());
            }
        }
    }
    .await;
    applier.close().await;
    outcome?;
    progress.table_step("sync", "caught up");
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Brings the service databases up to the legacy database's current position: by syncing here,
/// or, while another sync (`--follow`) runs, by waiting (at most 30 s) until it has applied what
/// was committed before this call.
pub async fn catch_up(endpoints: &Endpoints) -> Result<()> {
    let mut legacy = connect::connection("legacy", endpoints.legacy()).await?;
    if slot::info(&mut legacy).await?.is_none() {
        return Ok(());
    }
    let quiet = |_: Lag| {};
    match sync(
        endpoints,
        &SyncOptions::default(),
        &crate::Silent,
        &quiet,
        std::future::pending(),
    )
    .await
    {
        Ok(_) => return Ok(()),
        Err(MigrateError::SyncBusy) => {}
        Err(e) => return Err(e),
    }
    // Another sync (`--follow`) is at it: wait until it has applied what is committed now.
    let deadline = Instant::now() + Duration::from_secs(30);
    let goal: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(&mut legacy)
        .await?;
    let goal: Lsn = goal.parse().map_err(MigrateError::Other)?;
    while Instant::now() < deadline {
        let confirmed = slot::info(&mut legacy).await?.map(|i| i.confirmed);
        if confirmed.is_some_and(|c| c >= goal) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn past_marker() -> MigrateError {
    MigrateError::Other(
        "a change was committed after the cutover marker: a writer got past the freeze".into(),
    )
}
