//! A test's own corner of the shared RabbitMQ: an exchange and queues named after a random prefix,
//! so tests running side by side never see each other's events, and deleted when the test ends.

use std::sync::Mutex;
use std::time::Duration;

use events::{Envelope, EventsSettings};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use platform::{FromEnv, ServiceConfig};

/// The broker tests use: `TEST_RABBITMQ_URL`, else the local default.
pub fn url() -> String {
    std::env::var("TEST_RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub struct TestBroker {
    pub url: String,
    pub prefix: String,
    pub exchange: String,
    queues: Mutex<Vec<String>>,
}

impl TestBroker {
    pub fn new() -> Self {
        let prefix = format!("test-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        Self {
            url: url(),
            exchange: format!("{prefix}.events"),
            prefix,
            queues: Mutex::new(Vec::new()),
        }
    }

    /// The queue a service uses in this test; it (and its retry and dead-letter queues) are
    /// deleted with the broker.
    pub fn queue_for(&self, service: &str) -> String {
        let queue = format!("{}.{service}.events", self.prefix);
        let mut queues = self.queues.lock().unwrap();
        for name in [
            queue.clone(),
            format!("{queue}.retry"),
            events::settings::dead_letter_queue(&queue),
        ] {
            if !queues.contains(&name) {
                queues.push(name);
            }
        }
        queue
    }

    /// Event settings pointing at this test's exchange and queue, with quick retries.
    pub fn settings(&self, config: &ServiceConfig) -> EventsSettings {
        let env = platform::Env::from_pairs(self.env(config.service.name()));
        let mut config = config.clone();
        config.rabbitmq_url = self.url.clone().into();
        EventsSettings::from_env(&config, &env).expect("test event settings are valid")
    }

    /// The same settings as environment variables, for spawning a service's binary.
    pub fn env(&self, service: &str) -> Vec<(String, String)> {
        vec![
            ("RABBITMQ_URL".into(), self.url.clone()),
            ("EVENTS_EXCHANGE".into(), self.exchange.clone()),
            ("EVENTS_QUEUE".into(), self.queue_for(service)),
            ("EVENTS_RETRY_DELAY_MS".into(), "200".into()),
            ("EVENTS_MAX_RETRIES".into(), "2".into()),
            ("EVENTS_RELAY_POLL_MS".into(), "250".into()),
        ]
    }

    pub async fn connect(&self) -> (Connection, Channel) {
        let connection = events::broker::connect(&self.url, "test")
            .await
            .expect("the test broker is reachable");
        let channel = connection.create_channel().await.expect("a channel");
        events::broker::declare_exchange(&channel, &self.exchange)
            .await
            .expect("declare the test exchange");
        (connection, channel)
    }

    /// Publishes raw bytes to this test's exchange with `routing_key`, as a misbehaving publisher
    /// could.
    pub async fn publish_raw(&self, routing_key: &str, body: &[u8], message_id: Option<&str>) {
        let (connection, channel) = self.connect().await;
        channel
            .confirm_select(Default::default())
            .await
            .expect("confirms");
        let mut properties = BasicProperties::default().with_delivery_mode(2);
        if let Some(id) = message_id {
            properties = properties.with_message_id(id.into());
        }
        let confirm = channel
            .basic_publish(
                self.exchange.as_str().into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(confirm.is_ack(), "the broker refused a test message");
        let _ = connection.close(200, "done".into()).await;
    }

    /// Puts raw bytes straight into `queue` (through the default exchange).
    pub async fn send_to_queue(&self, queue: &str, body: &[u8], message_id: &str) {
        let (connection, channel) = self.connect().await;
        channel
            .confirm_select(Default::default())
            .await
            .expect("confirms");
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(message_id.into()),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(confirm.is_ack());
        let _ = connection.close(200, "done".into()).await;
    }

    /// Declares `settings`' exchange and queues, as a consumer does at start.
    pub async fn declare_consumer(&self, settings: &EventsSettings, routing_keys: &[&str]) {
        let (connection, channel) = self.connect().await;
        let keys: Vec<String> = routing_keys.iter().map(|k| k.to_string()).collect();
        events::broker::declare_consumer_topology(&channel, settings, &keys)
            .await
            .expect("declare the consumer's queues");
        let _ = connection.close(200, "done".into()).await;
    }

    /// Publishes `envelope` to this test's exchange, as a relay does.
    pub async fn publish(&self, envelope: &Envelope) {
        let (connection, channel) = self.connect().await;
        channel
            .confirm_select(Default::default())
            .await
            .expect("confirms");
        let confirm = events::relay::publish(&channel, &self.exchange, envelope)
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(confirm.is_ack());
        let _ = connection.close(200, "done".into()).await;
    }

    /// A private queue bound to this test's exchange, to watch what gets published.
    pub async fn watch(&self, routing_keys: &[&str]) -> Watcher {
        let (connection, channel) = self.connect().await;
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("a watcher queue");
        for key in routing_keys {
            channel
                .queue_bind(
                    queue.name().clone(),
                    self.exchange.as_str().into(),
                    (*key).into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("bind the watcher");
        }
        let consumer = channel
            .basic_consume(
                queue.name().clone(),
                "watcher".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        Watcher {
            _connection: connection,
            consumer,
        }
    }

    /// Messages waiting in `queue`.
    pub async fn depth(&self, queue: &str) -> u32 {
        let (connection, channel) = self.connect().await;
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("the queue exists");
        let _ = connection.close(200, "done".into()).await;
        declared.message_count()
    }
}

impl Default for TestBroker {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let url = self.url.clone();
        let exchange = self.exchange.clone();
        let queues = std::mem::take(&mut *self.queues.lock().unwrap());
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let Ok(connection) = events::broker::connect(&url, "test cleanup").await else {
                    return;
                };
                for queue in queues {
                    if let Ok(channel) = connection.create_channel().await {
                        let _ = channel
                            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                            .await;
                    }
                }
                if let Ok(channel) = connection.create_channel().await {
                    let _ = channel
                        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                        .await;
                }
                let _ = connection.close(200, "done".into()).await;
            });
        })
        .join();
    }
}

/// Receives what a [`TestBroker::watch`] queue gets.
pub struct Watcher {
    _connection: Connection,
    consumer: lapin::Consumer,
}

impl Watcher {
    /// The next event, or `None` after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Envelope> {
        let delivery = self.next_delivery(timeout).await?;
        Some(serde_json::from_slice(&delivery.data).expect("an envelope"))
    }

    /// The next message as delivered (its properties and headers too), acknowledged.
    pub async fn next_delivery(&mut self, timeout: Duration) -> Option<lapin::message::Delivery> {
        let delivery = tokio::time::timeout(timeout, self.consumer.next())
            .await
            .ok()??
            .expect("a delivery");
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
        Some(delivery)
    }

    /// Events until `timeout` passes with nothing new.
    pub async fn drain(&mut self, timeout: Duration) -> Vec<Envelope> {
        let mut seen = Vec::new();
        while let Some(event) = self.next(timeout).await {
            seen.push(event);
        }
        seen
    }
}
