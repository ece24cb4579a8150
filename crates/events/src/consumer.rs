//! Consuming events: one durable queue per service, bound to the event types it handles.
//!
//! A delivery is applied in one database transaction that also records its event id in the
//! service's `<schema>.processed_events` (the inbox); the message is acknowledged only after that
//! transaction commits. A redelivered or duplicated event finds its id already recorded and changes
//! nothing. A handler failure sends the message to `<queue>.retry`, whose expiry routes it back to
//! the main queue after the retry delay; after `max_retries` failures it goes to `<queue>.dlq`
//! (with the last error in its headers) and consumption goes on.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use platform::config::ExposeSecret;
use sqlx::{PgConnection, PgPool};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::broker::{self, Backoff, Link};
use crate::envelope::Envelope;
use crate::settings::EventsSettings;

/// How long the broker may take to confirm a copy before the session is abandoned (a broker in a
/// resource alarm keeps the connection up but confirms nothing).
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest connecting and declaring may take before the attempt starts over.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A session this old has proven itself, whatever happened in it.
const STABLE_SESSION: Duration = Duration::from_secs(30);

/// Header counting the failed attempts of a message.
pub const RETRIES_HEADER: &str = "x-mfe-retries";
/// Header holding the last handler error of a retried or dead-lettered message.
pub const ERROR_HEADER: &str = "x-mfe-error";
/// Header holding the routing key (event type) a dead-lettered message was published with.
pub const ROUTING_KEY_HEADER: &str = "x-mfe-routing-key";

pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;
pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'a>>;

/// What a service does with an event, inside the transaction that also records the event's id.
pub trait Handler: Send + Sync + 'static {
    fn handle<'a>(&'a self, tx: &'a mut PgConnection, event: &'a Envelope) -> HandlerFuture<'a>;
}

pub struct Consumer {
    pool: PgPool,
    /// Records an event id in `<schema>.processed_events`; built once, run per delivery.
    record_id_sql: String,
    settings: Arc<EventsSettings>,
    routing_keys: Vec<String>,
    handler: Arc<dyn Handler>,
    link: Link,
}

enum Outcome {
    Applied,
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
enum ApplyError {
    /// The message itself or the handler failed: counted towards dead-lettering.
    #[error("{0}")]
    Rejected(String),
    /// The database is down or the transaction hit a transient conflict; not the message's
    /// fault, so not counted.
    #[error("database: {0}")]
    Unavailable(String),
}

impl ApplyError {
    fn from_db(error: sqlx::Error) -> Self {
        if crate::transient::is_transient(&error) {
            Self::Unavailable(error.to_string())
        } else {
            Self::Rejected(format!("database: {error}"))
        }
    }
}

impl Consumer {
    /// A consumer of `routing_keys` whose inbox is `<schema>.processed_events`.
    pub fn new(
        pool: PgPool,
        schema: &str,
        settings: Arc<EventsSettings>,
        routing_keys: &[&str],
        handler: Arc<dyn Handler>,
        link: Link,
    ) -> Self {
        Self {
            pool,
            record_id_sql: format!(
                "INSERT INTO {}.processed_events (event_id, event_type, source) \
                 VALUES ($1, $2, $3) ON CONFLICT (event_id) DO NOTHING",
                platform::db::quote_ident(schema)
            ),
            settings,
            routing_keys: routing_keys.iter().map(|k| k.to_string()).collect(),
            handler,
            link,
        }
    }

    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(self) {
        let mut backoff = Backoff::new();
        loop {
            let started = std::time::Instant::now();
            let error = self.session(&mut backoff).await;
            if started.elapsed() > STABLE_SESSION {
                // A session this long worked, even if no event came: the next outage starts
                // its backoff from the beginning.
                backoff.reset();
            }
            self.link.set(false);
            tracing::debug!(queue = %self.settings.queue, "consumer session ended");
            let delay = backoff.next_delay();
            tracing::warn!(
                queue = %self.settings.queue,
                error = %error,
                retry_in_ms = delay.as_millis() as u64,
                "event consumer interrupted"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn session(&self, backoff: &mut Backoff) -> lapin::Error {
        let name = format!("{} consumer", self.settings.source);
        let setup = async {
            let connection = broker::connect(self.settings.url.expose_secret(), &name).await?;
            let channel = connection.create_channel().await?;
            broker::declare_consumer_topology(&channel, &self.settings, &self.routing_keys).await?;
            channel
                .basic_qos(self.settings.prefetch, BasicQosOptions::default())
                .await?;
            let publisher = connection.create_channel().await?;
            publisher
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            let deliveries = channel
                .basic_consume(
                    self.settings.queue.as_str().into(),
                    name.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            Ok::<_, lapin::Error>((connection, publisher, deliveries))
        };
        let result = match tokio::time::timeout(SETUP_TIMEOUT, setup).await {
            Ok(result) => result,
            Err(_) => Err(broker::timed_out(
                "consumer set-up (connect, declare, consume)",
            )),
        };
        let (_connection, publisher, mut deliveries) = match result {
            Ok(opened) => opened,
            Err(e) => return e,
        };
        self.link.set(true);
        tracing::info!(queue = %self.settings.queue, "event consumer connected");
        let mut progressed = false;
        while let Some(delivery) = deliveries.next().await {
            let outcome = match delivery {
                Ok(delivery) => self.process(&publisher, delivery).await,
                Err(e) => Err(e),
            };
            if let Err(e) = outcome {
                return e;
            }
            // Back off from scratch only once a session proved it works: a failure right after
            // each connect must not turn into a reconnect storm.
            if !progressed {
                progressed = true;
                backoff.reset();
            }
        }
        lapin::Error::from(lapin::ErrorKind::InvalidConnectionState(
            lapin::ConnectionState::Closed,
        ))
    }

    async fn process(&self, publisher: &Channel, delivery: Delivery) -> Result<(), lapin::Error> {
        // A retried message comes back from the retry queue under the queue's name; its original
        // routing key travels in a header.
        let routing_key = header_string(&delivery.properties, ROUTING_KEY_HEADER)
            .unwrap_or_else(|| delivery.routing_key.to_string());
        let parsed = serde_json::from_slice::<Envelope>(&delivery.data);
        let event_type = match &parsed {
            Ok(envelope) => envelope.event_type.clone(),
            Err(_) => routing_key.clone(),
        };
        let span = self.process_span(&delivery, &event_type);
        let result = match parsed {
            Ok(envelope) => self.apply(&envelope).instrument(span).await,
            Err(e) => Err(ApplyError::Rejected(format!("malformed envelope: {e}"))),
        };
        match result {
            Ok(outcome) => {
                let outcome = match outcome {
                    Outcome::Applied => "applied",
                    Outcome::Duplicate => "duplicate",
                };
                metrics::counter!("events_consumed_total", "queue" => self.settings.queue.clone(), "type" => contracts::events::metric_label(&event_type), "outcome" => outcome).increment(1);
                delivery.ack(BasicAckOptions::default()).await?;
            }
            Err(ApplyError::Unavailable(e)) => {
                tracing::warn!(queue = %self.settings.queue, error = %e, "database unavailable or busy; the event goes back to the queue");
                tokio::time::sleep(Duration::from_secs(1)).await;
                delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await?;
            }
            Err(ApplyError::Rejected(error)) => {
                self.fail(publisher, &delivery, &routing_key, &event_type, &error)
                    .await?;
            }
        }
        Ok(())
    }

    /// The consumer span of one delivery (OpenTelemetry's messaging conventions): in the trace
    /// its headers carry, linked to the span that published it.
    fn process_span(&self, delivery: &Delivery, event_type: &str) -> tracing::Span {
        let span = tracing::info_span!(
            "process",
            otel.name = %format_args!("process {event_type}"),
            otel.kind = "consumer",
            messaging.system = "rabbitmq",
            messaging.operation.type = "process",
            messaging.destination.name = %self.settings.queue,
            messaging.message.id = delivery.properties.message_id().as_ref().map(|id| id.as_str()),
        );
        let carrier: platform::otel::Carrier = ["traceparent", "tracestate"]
            .into_iter()
            .filter_map(|name| Some((name.to_string(), header_string(&delivery.properties, name)?)))
            .collect();
        platform::otel::continue_linked(&span, &carrier);
        span
    }

    async fn apply(&self, envelope: &Envelope) -> Result<Outcome, ApplyError> {
        let mut tx = self.pool.begin().await.map_err(ApplyError::from_db)?;
        let inserted = sqlx::query(sqlx::AssertSqlSafe(self.record_id_sql.as_str()))
            .bind(envelope.id)
            .bind(&envelope.event_type)
            .bind(&envelope.source)
            .execute(&mut *tx)
            .await
            .map_err(ApplyError::from_db)?;
        if inserted.rows_affected() == 0 {
            return Ok(Outcome::Duplicate);
        }
        self.handler.handle(&mut tx, envelope).await.map_err(|e| {
            if crate::transient::is_transient_boxed(e.as_ref()) {
                ApplyError::Unavailable(e.to_string())
            } else {
                ApplyError::Rejected(e.to_string())
            }
        })?;
        tx.commit().await.map_err(ApplyError::from_db)?;
        Ok(Outcome::Applied)
    }

    /// Sends a failed message to the retry queue, or to the dead-letter queue once it has failed
    /// `max_retries` times, and acknowledges it only after the broker confirmed the copy.
    async fn fail(
        &self,
        publisher: &Channel,
        delivery: &Delivery,
        routing_key: &str,
        event_type: &str,
        error: &str,
    ) -> Result<(), lapin::Error> {
        let retries = retries_of(&delivery.properties);
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(
            ERROR_HEADER.into(),
            AMQPValue::LongString(truncate(error, 1000).into()),
        );
        headers.insert(
            ROUTING_KEY_HEADER.into(),
            AMQPValue::LongString(routing_key.into()),
        );
        let queue_labels = self.settings.queue.clone();
        let (target, properties) = if retries < self.settings.max_retries {
            headers.insert(
                RETRIES_HEADER.into(),
                AMQPValue::LongLongInt(i64::from(retries) + 1),
            );
            tracing::warn!(queue = %self.settings.queue, %event_type, attempt = retries + 1, %error, "event handling failed; will retry");
            metrics::counter!("events_retried_total", "queue" => queue_labels, "type" => contracts::events::metric_label(event_type)).increment(1);
            let expiration = self.settings.retry_delay.as_millis().to_string();
            (
                self.settings.retry_queue(),
                delivery
                    .properties
                    .clone()
                    .with_headers(headers)
                    .with_expiration(expiration.into()),
            )
        } else {
            headers.insert(
                RETRIES_HEADER.into(),
                AMQPValue::LongLongInt(i64::from(retries)),
            );
            tracing::error!(queue = %self.settings.queue, %event_type, %error, "event dead-lettered after {retries} retries");
            metrics::counter!("events_dead_lettered_total", "queue" => queue_labels, "type" => contracts::events::metric_label(event_type)).increment(1);
            (
                self.settings.dead_letter_queue(),
                rebuilt(&delivery.properties, headers),
            )
        };
        let pending = publisher
            .basic_publish(
                "".into(),
                target.as_str().into(),
                // Mandatory: if the queue is gone the broker returns the copy instead of dropping it.
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &delivery.data,
                properties.with_delivery_mode(2),
            )
            .await?;
        let confirm = confirmed(pending).await?;
        if confirm.is_nack() {
            // Keep the original: it comes back to us rather than being lost.
            delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await?;
            return Ok(());
        }
        if confirm.take_message().is_some() {
            // Unroutable: the session ends, the original goes back to the queue, and the next
            // session declares the retry and dead-letter queues again.
            tracing::error!(queue = %self.settings.queue, %target, "the broker returned the copy: queue missing");
            return Err(lapin::Error::from(lapin::ErrorKind::InvalidChannelState(
                lapin::ChannelState::Error,
                "a retry or dead-letter queue is missing",
            )));
        }
        delivery.ack(BasicAckOptions::default()).await?;
        Ok(())
    }
}

/// Waits for the broker's confirm of a publish, at most [`CONFIRM_TIMEOUT`].
pub async fn confirmed(
    pending: lapin::PublisherConfirm,
) -> Result<lapin::Confirmation, lapin::Error> {
    match tokio::time::timeout(CONFIRM_TIMEOUT, pending).await {
        Ok(confirmation) => confirmation,
        Err(_) => Err(broker::timed_out("no publisher confirm")),
    }
}

/// How many times this message has already failed.
pub fn retries_of(properties: &BasicProperties) -> u32 {
    let Some(headers) = properties.headers() else {
        return 0;
    };
    match headers.inner().get(RETRIES_HEADER) {
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongInt(n)) => u32::try_from(*n).unwrap_or(0),
        Some(AMQPValue::ShortInt(n)) => u32::try_from(*n).unwrap_or(0),
        _ => 0,
    }
}

/// A string header, whichever AMQP string type carried it.
pub fn header_string(properties: &BasicProperties, name: &str) -> Option<String> {
    match properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

/// `properties` without an expiration and with `headers`: the persistent copy of a message that
/// must wait for nobody (dead-lettered, or replayed from there).
pub(crate) fn rebuilt(properties: &BasicProperties, headers: FieldTable) -> BasicProperties {
    let mut fresh = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(headers);
    if let Some(v) = properties.content_type() {
        fresh = fresh.with_content_type(v.clone());
    }
    if let Some(v) = properties.message_id() {
        fresh = fresh.with_message_id(v.clone());
    }
    if let Some(v) = properties.kind() {
        fresh = fresh.with_type(v.clone());
    }
    if let Some(v) = properties.app_id() {
        fresh = fresh.with_app_id(v.clone());
    }
    if let Some(v) = properties.timestamp() {
        fresh = fresh.with_timestamp(*v);
    }
    fresh
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}
