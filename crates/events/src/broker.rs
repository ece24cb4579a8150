//! Connections to RabbitMQ and what every connection does first. lapin's own recovery has had
//! broker-restart bugs, so each relay and consumer runs its own supervisor loop: connect, declare
//! the topology (idempotent), work until something breaks, back off, start over.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use platform::http::ReadinessCheck;

use crate::settings::EventsSettings;

/// The longest a connection attempt may take. lapin has no limit of its own, and a broker that is
/// still booting can accept the TCP connection and then not answer the handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The broker addresses `url` names: one AMQP URL, or the nodes of a cluster separated by
/// commas (`RABBITMQ_URL=amqp://u:p@node1:5672/%2f,amqp://u:p@node2:5672/%2f`).
pub fn addresses(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect()
}

/// `url`, one address or several, with every password masked: for logs and messages.
pub fn masked(url: &str) -> String {
    addresses(url)
        .into_iter()
        .map(platform::config::mask_url)
        .collect::<Vec<_>>()
        .join(",")
}

/// Opens a connection named after its purpose (shown by `rabbitmqctl list_connections`) to the
/// first of `url`'s addresses that answers, tried in order: a relay or consumer whose node went
/// away reconnects (its supervisor loop calls this again) to the next one alive.
pub async fn connect(url: &str, name: &str) -> Result<Connection, lapin::Error> {
    let addresses = addresses(url);
    let mut last = None;
    for address in &addresses {
        match connect_to(address, name).await {
            Ok(connection) => return Ok(connection),
            Err(e) => {
                if addresses.len() > 1 {
                    tracing::warn!(
                        broker = %platform::config::mask_url(address),
                        error = %e,
                        "a broker did not answer; trying the next"
                    );
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        lapin::Error::from(lapin::ErrorKind::IOError(Arc::new(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the broker URL names no address",
        ))))
    }))
}

async fn connect_to(address: &str, name: &str) -> Result<Connection, lapin::Error> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(address, properties)).await {
        Ok(result) => result,
        Err(_) => Err(timed_out("the broker did not complete the AMQP handshake")),
    }
}

/// A lapin error for an operation that took too long.
pub fn timed_out(what: &str) -> lapin::Error {
    lapin::Error::from(lapin::ErrorKind::IOError(Arc::new(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what} within the time limit"),
    ))))
}

/// Declares the durable topic exchange events are published to.
pub async fn declare_exchange(channel: &Channel, exchange: &str) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
}

/// Declares a consuming service's queues: the main queue bound to `routing_keys`, the retry queue
/// whose expired messages flow back into the main queue, and the dead-letter queue.
pub async fn declare_consumer_topology(
    channel: &Channel,
    settings: &EventsSettings,
    routing_keys: &[String],
) -> Result<(), lapin::Error> {
    declare_exchange(channel, &settings.exchange).await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    // Every queue of the service gets the configured type: a quorum main queue whose retries or
    // dead letters sat on one node would lose them with that node.
    let typed = || {
        let mut args = FieldTable::default();
        if settings.queue_type == crate::settings::QueueType::Quorum {
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        args
    };
    channel
        .queue_declare(settings.queue.as_str().into(), durable, typed())
        .await?;
    let mut retry_args = typed();
    retry_args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    retry_args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(settings.queue.as_str().into()),
    );
    channel
        .queue_declare(settings.retry_queue().into(), durable, retry_args)
        .await?;
    channel
        .queue_declare(settings.dead_letter_queue().into(), durable, typed())
        .await?;
    for key in routing_keys {
        channel
            .queue_bind(
                settings.queue.as_str().into(),
                settings.exchange.as_str().into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// Exponential backoff with jitter, from 100 ms up to 10 s, for reconnecting.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);

    pub fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// The wait before the next attempt; each call doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        let jitter = rand::random_range(0..=base.as_millis() as u64 / 4);
        base + Duration::from_millis(jitter)
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether each of a service's broker connections (relay, consumer) is up, for `/ready`.
#[derive(Default)]
pub struct BrokerHealth {
    links: Mutex<Vec<(String, Arc<AtomicBool>)>>,
}

/// One connection's flag in [`BrokerHealth`].
#[derive(Clone)]
pub struct Link(Arc<AtomicBool>);

impl Link {
    pub fn set(&self, connected: bool) {
        self.0.store(connected, Ordering::Relaxed);
    }

    pub fn is_connected(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl BrokerHealth {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn link(&self, name: impl Into<String>) -> Link {
        let flag = Arc::new(AtomicBool::new(false));
        self.links
            .lock()
            .expect("broker health lock")
            .push((name.into(), flag.clone()));
        Link(flag)
    }

    /// The names of the connections that are down.
    pub fn down(&self) -> Vec<String> {
        self.links
            .lock()
            .expect("broker health lock")
            .iter()
            .filter(|(_, flag)| !flag.load(Ordering::Relaxed))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

impl ReadinessCheck for BrokerHealth {
    fn name(&self) -> &'static str {
        "broker"
    }

    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        let down = self.down();
        Box::pin(async move {
            if down.is_empty() {
                Ok(())
            } else {
                Err(format!("not connected: {}", down.join(", ")))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_url_may_list_the_nodes_of_a_cluster() {
        assert_eq!(
            addresses("amqp://u:p@a:5672/%2f"),
            ["amqp://u:p@a:5672/%2f"]
        );
        assert_eq!(
            addresses(" amqp://u:p@a:5672/%2f , amqp://u:q@b:5673/%2f,"),
            ["amqp://u:p@a:5672/%2f", "amqp://u:q@b:5673/%2f"]
        );
        assert!(addresses(" , ").is_empty());
        assert_eq!(
            masked("amqp://u:p@a:5672/%2f,amqp://u:q@b:5673/%2f"),
            "amqp://u:***@a:5672/%2f,amqp://u:***@b:5673/%2f"
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_ceiling_and_resets() {
        let mut backoff = Backoff::new();
        let first = backoff.next_delay();
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(125));
        for _ in 0..20 {
            assert!(backoff.next_delay() <= Duration::from_millis(12_500));
        }
        assert!(backoff.next_delay() >= Duration::from_secs(10));
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(125));
    }

    #[tokio::test]
    async fn readiness_names_the_connections_that_are_down() {
        let health = BrokerHealth::new();
        let relay = health.link("relay");
        let consumer = health.link("consumer");
        relay.set(true);
        assert_eq!(health.check().await, Err("not connected: consumer".into()));
        consumer.set(true);
        assert_eq!(health.check().await, Ok(()));
    }
}
