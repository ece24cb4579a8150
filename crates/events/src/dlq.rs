//! Operators' view of a dead-letter queue: list what is there, and replay chosen events into the
//! service's queue (only that service sees them again, not every subscriber of the exchange).
//!
//! Listing takes messages without acknowledging them and closes the channel, which puts them back
//! in their original order; nothing is removed by looking.

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use serde::Serialize;
use uuid::Uuid;

use crate::broker;
use crate::consumer::{
    ERROR_HEADER, RETRIES_HEADER, ROUTING_KEY_HEADER, header_string, rebuilt, retries_of,
};
use crate::envelope::Envelope;
use crate::settings::dead_letter_queue;

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("cannot reach the broker at {url}: {source}")]
    Unreachable { url: String, source: lapin::Error },
    #[error("queue {0} does not exist")]
    NoSuchQueue(String),
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error(
        "the broker refused or could not route the replayed copy of a message; it stays in the dead-letter queue"
    )]
    Nacked,
}

/// One dead-lettered message.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The event id (AMQP message id), when the message had one.
    pub id: Option<String>,
    /// The routing key it was published with (the event type).
    pub routing_key: Option<String>,
    pub event_type: Option<String>,
    pub source: Option<String>,
    pub retries: u32,
    /// The last handler error.
    pub error: Option<String>,
    /// The body as text (lossy for binary bodies).
    pub body: String,
}

/// What a replay did.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReport {
    pub replayed: Vec<String>,
    /// Messages looked at and left in the dead-letter queue (not selected).
    pub kept: usize,
}

/// Which dead letters a replay takes.
#[derive(Debug, Clone)]
pub enum Selection {
    All,
    Ids(Vec<Uuid>),
}

/// Connects and checks `queue` exists; returns the messages it holds.
async fn open(url: &str, queue: &str) -> Result<(Connection, Channel, u32), DlqError> {
    let connection = connect(url, "mfe events dlq").await?;
    let channel = connection.create_channel().await?;
    match passive_declare(&channel, queue).await {
        Some(declared) => Ok((connection, channel, declared.message_count())),
        None => Err(DlqError::NoSuchQueue(queue.to_string())),
    }
}

async fn connect(url: &str, name: &str) -> Result<Connection, DlqError> {
    broker::connect(url, name)
        .await
        .map_err(|source| DlqError::Unreachable {
            url: broker::masked(url),
            source,
        })
}

/// `queue`'s declaration as it stands, or `None` when it does not exist (the broker then closes
/// `channel`).
async fn passive_declare(channel: &Channel, queue: &str) -> Option<lapin::Queue> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .ok()
}

/// How many messages a service's queue and its dead-letter queue hold, and who consumes it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct QueueDepth {
    pub queue: String,
    /// Ready messages (not those delivered and not yet acknowledged).
    pub messages: u32,
    pub consumers: u32,
    /// Messages in `<queue>.dlq`.
    pub dead_letters: u32,
}

/// The depth of each of `queues` (and of its dead-letter queue) on one connection; a queue that
/// does not exist (yet) is left out. Looks without taking anything.
pub async fn depths(url: &str, queues: &[String]) -> Result<Vec<QueueDepth>, DlqError> {
    let connection = connect(url, "mfe migrate dashboard").await?;
    let mut depths = Vec::new();
    for queue in queues {
        let Some((messages, consumers)) = peek(&connection, queue).await? else {
            continue;
        };
        let dead_letters = peek(&connection, &dead_letter_queue(queue))
            .await?
            .map_or(0, |(m, _)| m);
        depths.push(QueueDepth {
            queue: queue.clone(),
            messages,
            consumers,
            dead_letters,
        });
    }
    let _ = connection.close(200, "looked".into()).await;
    Ok(depths)
}

/// Messages and consumers of `queue`, or `None` when it does not exist. A channel per queue: the
/// broker closes the channel of a passive declare that fails.
async fn peek(connection: &Connection, queue: &str) -> Result<Option<(u32, u32)>, DlqError> {
    let channel = connection.create_channel().await?;
    let declared = passive_declare(&channel, queue).await;
    if declared.is_some() {
        let _ = channel.close(200, "looked".into()).await;
    }
    Ok(declared.map(|d| (d.message_count(), d.consumer_count())))
}

/// Up to `limit` messages of the dead-letter queue of `queue`, oldest first, left in place.
pub async fn list(url: &str, queue: &str, limit: usize) -> Result<Vec<DeadLetter>, DlqError> {
    let dlq = dead_letter_queue(queue);
    let (connection, channel, _) = open(url, &dlq).await?;
    let mut letters = Vec::new();
    while letters.len() < limit {
        let Some(message) = channel
            .basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: false })
            .await?
        else {
            break;
        };
        letters.push(describe(
            &message.delivery.properties,
            &message.delivery.data,
        ));
    }
    // Closing without acknowledging returns every message to the queue, in order.
    let _ = channel.close(200, "listed".into()).await;
    let _ = connection.close(200, "done".into()).await;
    Ok(letters)
}

/// Moves the selected messages of `queue`'s dead-letter queue back into `queue`, with their retry
/// count reset. Each is removed from the dead-letter queue only after the broker confirmed the copy.
pub async fn replay(
    url: &str,
    queue: &str,
    selection: &Selection,
    limit: usize,
) -> Result<ReplayReport, DlqError> {
    let dlq = dead_letter_queue(queue);
    // The service's queue must exist: a copy published to a missing queue would be dropped.
    let (target, _, _) = open(url, queue).await?;
    let _ = target.close(200, "checked".into()).await;
    let (connection, channel, waiting) = open(url, &dlq).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut report = ReplayReport::default();
    // Look at most at what was there when we started: a replayed event that fails again comes
    // back to the end of the dead-letter queue and must not be replayed twice by this run.
    let mut looked_at = 0u32;
    while report.replayed.len() < limit && looked_at < waiting {
        looked_at += 1;
        let Some(message) = channel
            .basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: false })
            .await?
        else {
            break;
        };
        let delivery = message.delivery;
        let letter = describe(&delivery.properties, &delivery.data);
        let selected = match selection {
            Selection::All => true,
            Selection::Ids(ids) => letter
                .id
                .as_deref()
                .and_then(|id| id.parse::<Uuid>().ok())
                .is_some_and(|id| ids.contains(&id)),
        };
        if !selected {
            report.kept += 1;
            continue;
        }
        let pending = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &delivery.data,
                fresh_properties(&delivery.properties),
            )
            .await?;
        let confirm = crate::consumer::confirmed(pending).await?;
        if confirm.is_nack() || confirm.take_message().is_some() {
            return Err(DlqError::Nacked);
        }
        delivery.ack(BasicAckOptions::default()).await?;
        report
            .replayed
            .push(letter.id.unwrap_or_else(|| "(no id)".into()));
    }
    let _ = channel.close(200, "replayed".into()).await;
    let _ = connection.close(200, "done".into()).await;
    Ok(report)
}

fn describe(properties: &BasicProperties, body: &[u8]) -> DeadLetter {
    let envelope = serde_json::from_slice::<Envelope>(body).ok();
    DeadLetter {
        id: properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string())
            .or_else(|| envelope.as_ref().map(|e| e.id.to_string())),
        routing_key: header_string(properties, ROUTING_KEY_HEADER),
        event_type: envelope.as_ref().map(|e| e.event_type.clone()),
        source: envelope.as_ref().map(|e| e.source.clone()),
        retries: retries_of(properties),
        error: header_string(properties, ERROR_HEADER),
        body: String::from_utf8_lossy(body).into_owned(),
    }
}

/// The message's properties with the failure bookkeeping cleared, so the replayed event gets the
/// full number of retries again; the original routing key is kept for its type.
fn fresh_properties(properties: &BasicProperties) -> BasicProperties {
    let mut headers = FieldTable::default();
    if let Some(old) = properties.headers() {
        for (key, value) in old.inner() {
            let key_str = key.as_str();
            if key_str == RETRIES_HEADER
                || key_str == ERROR_HEADER
                || key_str.starts_with("x-death")
                || key_str.starts_with("x-first-death")
                || key_str.starts_with("x-last-death")
            {
                continue;
            }
            headers.insert(key.clone(), value.clone());
        }
    }
    headers.insert(RETRIES_HEADER.into(), AMQPValue::LongLongInt(0));
    rebuilt(properties, headers)
}
