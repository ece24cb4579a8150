//! Publishes a service's outbox to the exchange. The relay wakes on the outbox's notification
//! (sent at commit), with a slow poll as a safety net, and publishes unpublished rows in creation
//! order with publisher confirms; a row is marked published only after the broker confirmed it.
//!
//! Each batch runs in one database transaction holding a transaction-level advisory lock on the
//! outbox, so two instances of a service never publish the same rows at once; a crash between the
//! confirm and the commit republishes the batch, which consumers recognise by the event ids.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::task::JoinHandle;
use uuid::Uuid;

use platform::config::ExposeSecret;
use platform::otel::Carrier;
use tracing::Instrument;

use crate::broker::{self, Backoff, Link};
use crate::envelope::Envelope;
use crate::outbox::Outbox;
use crate::settings::EventsSettings;

/// Rows published per transaction.
const BATCH: i64 = 200;

/// The longest connecting, declaring and listening may take before the attempt starts over.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the broker refused (nacked) event {0}")]
    Nacked(Uuid),
    #[error("the broker connection closed")]
    Disconnected,
    #[error("an outbox payload is not JSON: {0}")]
    Payload(serde_json::Error),
}

pub struct Relay {
    pool: PgPool,
    outbox: Outbox,
    settings: Arc<EventsSettings>,
    link: Link,
}

impl Relay {
    pub fn new(pool: PgPool, outbox: Outbox, settings: Arc<EventsSettings>, link: Link) -> Self {
        Self {
            pool,
            outbox,
            settings,
            link,
        }
    }

    /// Runs the relay in the background for the life of the process.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(self) {
        let mut backoff = Backoff::new();
        let mut housekeeping = tokio::time::interval(Duration::from_secs(3600));
        loop {
            let error = self.session(&mut backoff, &mut housekeeping).await;
            self.link.set(false);
            let delay = backoff.next_delay();
            tracing::warn!(
                source = %self.settings.source,
                error = %error,
                retry_in_ms = delay.as_millis() as u64,
                "event relay interrupted"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One connection's life: returns only on failure.
    async fn session(
        &self,
        backoff: &mut Backoff,
        housekeeping: &mut tokio::time::Interval,
    ) -> RelayError {
        let opened = match tokio::time::timeout(SETUP_TIMEOUT, self.open()).await {
            Ok(opened) => opened,
            Err(_) => Err(broker::timed_out("relay set-up (connect, declare, listen)").into()),
        };
        let (connection, channel, mut listener) = match opened {
            Ok(opened) => opened,
            Err(e) => return e,
        };
        self.link.set(true);
        tracing::info!(source = %self.settings.source, exchange = %self.settings.exchange, "event relay connected");
        let mut backlog_reported: Option<std::time::Instant> = None;
        loop {
            match self.publish_batch(&channel).await {
                // Only a batch that went through resets the backoff: a failure right after each
                // connect must not turn into a reconnect storm.
                Ok(n) if n == BATCH as usize => {
                    backoff.reset();
                    continue;
                }
                Ok(_) => backoff.reset(),
                Err(e) => return e,
            }
            // Counting is a query of its own: at most once a second, not once per commit.
            if backlog_reported.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                self.report_backlog().await;
                backlog_reported = Some(std::time::Instant::now());
            }
            tokio::select! {
                notified = listener.recv() => {
                    if let Err(e) = notified {
                        return e.into();
                    }
                }
                _ = tokio::time::sleep(self.settings.relay_poll) => {}
                _ = housekeeping.tick() => self.purge().await,
            }
            if !connection.status().connected() {
                return RelayError::Disconnected;
            }
        }
    }

    async fn open(&self) -> Result<(Connection, Channel, PgListener), RelayError> {
        let name = format!("{} relay", self.settings.source);
        let connection = broker::connect(self.settings.url.expose_secret(), &name).await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        broker::declare_exchange(&channel, &self.settings.exchange).await?;
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(self.outbox.channel()).await?;
        Ok((connection, channel, listener))
    }

    /// Publishes up to [`BATCH`] unpublished rows, oldest first; returns how many.
    async fn publish_batch(&self, channel: &Channel) -> Result<usize, RelayError> {
        let mut tx = self.pool.begin().await?;
        // Under READ COMMITTED the rows below are read after the lock is granted, so they include
        // everything the previous holder marked; REPEATABLE READ would read as of the lock request.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            .execute(&mut *tx)
            .await?;
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(self.outbox.table())
                .fetch_one(&mut *tx)
                .await?;
        if !locked {
            // Another instance is publishing; its commit or the next poll wakes us.
            return Ok(0);
        }
        let sql = format!(
            "SELECT id, event_type, payload::text, occurred_at, trace_context FROM {} \
             WHERE published_at IS NULL ORDER BY seq LIMIT $1",
            self.outbox.table()
        );
        let rows: Vec<OutboxRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut pending = Vec::with_capacity(rows.len());
        for (id, event_type, payload, occurred_at, context) in rows {
            let head = Head {
                id,
                event_type: &event_type,
                source: &self.settings.source,
                occurred_at,
            };
            let body = body_of(&head, &payload).map_err(RelayError::Payload)?;
            let span = publish_span(&head, &self.settings.exchange, context.map(|c| c.0));
            let trace = span.in_scope(platform::otel::current_carrier);
            let confirm = publish_body(channel, &self.settings.exchange, &head, &body, &trace)
                .instrument(span)
                .await?;
            pending.push((id, event_type, confirm));
        }
        let mut ids = Vec::with_capacity(pending.len());
        for (id, event_type, confirm) in pending {
            if crate::consumer::confirmed(confirm).await?.is_nack() {
                return Err(RelayError::Nacked(id));
            }
            metrics::counter!(
                "events_published_total",
                "source" => self.settings.source.clone(),
                "type" => contracts::events::metric_label(&event_type),
            )
            .increment(1);
            ids.push(id);
        }
        let sql = format!(
            "UPDATE {} SET published_at = now() WHERE id = ANY($1)",
            self.outbox.table()
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::debug!(source = %self.settings.source, events = ids.len(), "published");
        Ok(ids.len())
    }

    async fn report_backlog(&self) {
        match self.outbox.backlog(&self.pool).await {
            Ok(n) => {
                metrics::gauge!("events_outbox_backlog", "source" => self.settings.source.clone())
                    .set(n as f64)
            }
            Err(e) => tracing::warn!(error = %e, "cannot count the outbox backlog"),
        }
    }

    async fn purge(&self) {
        match self
            .outbox
            .purge_published(&self.pool, self.settings.outbox_retention)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "purged published outbox rows"),
            Err(e) => tracing::warn!(error = %e, "purging the outbox failed"),
        }
    }
}

/// Publishes `envelope` persistently with its id as the AMQP message id; the returned confirm
/// resolves when the broker has taken responsibility for it.
pub async fn publish(
    channel: &Channel,
    exchange: &str,
    envelope: &Envelope,
) -> Result<lapin::PublisherConfirm, lapin::Error> {
    let body = serde_json::to_vec(envelope).expect("an envelope always serializes");
    let head = Head {
        id: envelope.id,
        event_type: &envelope.event_type,
        source: &envelope.source,
        occurred_at: envelope.occurred_at,
    };
    publish_body(channel, exchange, &head, &body, &Carrier::new()).await
}

/// An outbox row as the relay reads it: id, type, payload, time, the recording span's context.
type OutboxRow = (
    Uuid,
    String,
    String,
    DateTime<Utc>,
    Option<sqlx::types::Json<Carrier>>,
);

/// The producer span of one event's publishing (OpenTelemetry's messaging conventions), in the
/// trace of the span that recorded the event.
fn publish_span(head: &Head<'_>, exchange: &str, recorded_in: Option<Carrier>) -> tracing::Span {
    let span = tracing::info_span!(
        "publish",
        otel.name = %format_args!("publish {}", head.event_type),
        otel.kind = "producer",
        messaging.system = "rabbitmq",
        messaging.operation.type = "send",
        messaging.destination.name = exchange,
        messaging.rabbitmq.destination.routing_key = head.event_type,
        messaging.message.id = %head.id,
    );
    if let Some(carrier) = recorded_in {
        platform::otel::continue_from(&span, &carrier);
    }
    span
}

/// An envelope without its data: what the message's properties and routing need.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Head<'a> {
    id: Uuid,
    #[serde(rename = "type")]
    event_type: &'a str,
    source: &'a str,
    occurred_at: DateTime<Utc>,
}

/// The envelope of an outbox row, its payload written as the JSON text PostgreSQL holds rather
/// than read into a `serde_json::Value` and written again: a payload serde_json cannot represent
/// (a number beyond f64, say) must not stop every event recorded after it.
fn body_of(head: &Head<'_>, payload: &str) -> serde_json::Result<Vec<u8>> {
    #[derive(Serialize)]
    struct Body<'a> {
        #[serde(flatten)]
        head: &'a Head<'a>,
        data: &'a RawValue,
    }
    let data: &RawValue = serde_json::from_str(payload)?;
    serde_json::to_vec(&Body { head, data })
}

async fn publish_body(
    channel: &Channel,
    exchange: &str,
    head: &Head<'_>,
    body: &[u8],
    trace: &Carrier,
) -> Result<lapin::PublisherConfirm, lapin::Error> {
    channel
        .basic_publish(
            exchange.into(),
            head.event_type.into(),
            BasicPublishOptions::default(),
            body,
            properties(head, trace),
        )
        .await
}

/// The message's properties; `trace` (W3C `traceparent`, `tracestate`) goes in its headers.
fn properties(head: &Head<'_>, trace: &Carrier) -> BasicProperties {
    let properties = BasicProperties::default()
        .with_message_id(head.id.to_string().into())
        .with_type(head.event_type.into())
        .with_app_id(head.source.into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_timestamp(head.occurred_at.timestamp().max(0) as u64);
    if trace.is_empty() {
        return properties;
    }
    let mut headers = FieldTable::default();
    for (name, value) in trace {
        headers.insert(
            name.as_str().into(),
            AMQPValue::LongString(value.as_str().into()),
        );
    }
    properties.with_headers(headers)
}
