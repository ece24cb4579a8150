//! How a service reaches the event hub, from the environment. The exchange and queue names are
//! settings (not constants) so that tests, and several platforms sharing one broker, can keep their
//! traffic apart.

use std::time::Duration;

use platform::config::SecretString;
use platform::{ConfigError, Env, FromEnv, ServiceConfig};

pub const DEFAULT_EXCHANGE: &str = "mfe.events";

#[derive(Debug, Clone)]
pub struct EventsSettings {
    /// AMQP URL (`RABBITMQ_URL`); may hold a password.
    pub url: SecretString,
    /// The publishing service's name, the envelope's `source`.
    pub source: String,
    /// The topic exchange every event goes to (`EVENTS_EXCHANGE`).
    pub exchange: String,
    /// This service's durable queue (`EVENTS_QUEUE`, default `<service>.events`); its retry and
    /// dead-letter queues are named after it.
    pub queue: String,
    /// Unacknowledged deliveries the broker may push ahead (`EVENTS_PREFETCH`).
    pub prefetch: u16,
    /// Handler failures tolerated before an event is dead-lettered (`EVENTS_MAX_RETRIES`).
    pub max_retries: u32,
    /// Wait before a failed event is delivered again (`EVENTS_RETRY_DELAY_MS`).
    pub retry_delay: Duration,
    /// How often the relay looks at the outbox when no notification arrives
    /// (`EVENTS_RELAY_POLL_MS`); notifications make this a safety net, not the latency.
    pub relay_poll: Duration,
    /// Published outbox rows are deleted after this long (`EVENTS_OUTBOX_RETENTION_HOURS`).
    pub outbox_retention: Duration,
    /// How the broker keeps the service's queues (`EVENTS_QUEUE_TYPE`).
    pub queue_type: QueueType,
}

/// `classic` (one node's queue, the default) or `quorum` (replicated by Raft across the nodes of
/// a broker cluster: a node lost loses no event). A queue keeps the type it was declared with:
/// switching means a new queue name, or draining and deleting the old queue first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    #[default]
    Classic,
    Quorum,
}

impl std::str::FromStr for QueueType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "classic" => Ok(QueueType::Classic),
            "quorum" => Ok(QueueType::Quorum),
            _ => Err("expected `classic` or `quorum`".into()),
        }
    }
}

impl QueueType {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }
}

impl FromEnv for EventsSettings {
    fn from_env(config: &ServiceConfig, env: &Env) -> Result<Self, ConfigError> {
        let source = config.service.name().to_string();
        let prefetch: u16 = env.parse_or("EVENTS_PREFETCH", 32)?;
        if prefetch == 0 {
            return Err(ConfigError::new("EVENTS_PREFETCH", "must be at least 1"));
        }
        let exchange = env.string_or("EVENTS_EXCHANGE", DEFAULT_EXCHANGE);
        let queue = env.string_or("EVENTS_QUEUE", &format!("{source}.events"));
        for (var, value) in [("EVENTS_EXCHANGE", &exchange), ("EVENTS_QUEUE", &queue)] {
            if value.is_empty() || value.len() > 200 {
                return Err(ConfigError::new(var, "must be 1 to 200 characters"));
            }
        }
        Ok(Self {
            url: config.rabbitmq_url.clone(),
            source,
            exchange,
            queue,
            prefetch,
            max_retries: env.parse_or("EVENTS_MAX_RETRIES", 5)?,
            retry_delay: Duration::from_millis(env.parse_or("EVENTS_RETRY_DELAY_MS", 2000)?),
            relay_poll: Duration::from_millis(env.parse_or("EVENTS_RELAY_POLL_MS", 1000)?.max(10)),
            outbox_retention: Duration::from_secs(
                3600 * env.parse_or::<u64>("EVENTS_OUTBOX_RETENTION_HOURS", 168)?,
            ),
            queue_type: env.parse_or("EVENTS_QUEUE_TYPE", QueueType::Classic)?,
        })
    }
}

impl EventsSettings {
    pub fn retry_queue(&self) -> String {
        format!("{}.retry", self.queue)
    }

    pub fn dead_letter_queue(&self) -> String {
        dead_letter_queue(&self.queue)
    }
}

/// The dead-letter queue of a service's queue: `<queue>.dlq`.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dlq")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<EventsSettings, ConfigError> {
        let env = Env::from_pairs(pairs.iter().copied());
        let config = ServiceConfig::from_env(platform::Service::Profile, &env).unwrap();
        EventsSettings::from_env(&config, &env)
    }

    #[test]
    fn defaults_follow_the_design() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.exchange, "mfe.events");
        assert_eq!(s.queue, "profile-service.events");
        assert_eq!(s.dead_letter_queue(), "profile-service.events.dlq");
        assert_eq!(s.retry_queue(), "profile-service.events.retry");
        assert_eq!(s.source, "profile-service");
    }

    #[test]
    fn queues_are_classic_unless_told_quorum_and_anything_else_is_refused() {
        assert_eq!(settings(&[]).unwrap().queue_type, QueueType::Classic);
        let quorum = settings(&[("EVENTS_QUEUE_TYPE", "quorum")]).unwrap();
        assert_eq!(quorum.queue_type, QueueType::Quorum);
        let err = settings(&[("EVENTS_QUEUE_TYPE", "mirrored")]).unwrap_err();
        assert!(err.to_string().contains("EVENTS_QUEUE_TYPE"), "{err}");
    }

    #[test]
    fn a_zero_prefetch_is_refused_by_name() {
        let err = settings(&[("EVENTS_PREFETCH", "0")]).unwrap_err();
        assert!(err.to_string().contains("EVENTS_PREFETCH"), "{err}");
    }

    #[test]
    fn the_debug_form_masks_the_broker_password() {
        let s = settings(&[("RABBITMQ_URL", "amqp://user:hunter2@broker:5672/%2f")]).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
