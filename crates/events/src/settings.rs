//! How a service reaches the event hub, from the environment. The exchange and queue names are
//! settings (not constants) so that tests, and several platforms sharing one broker, can keep their
//! traffic apart.

use std::time::Duration;

use platform::config::SecretString;
use platform::{ConfigError, Env, ServiceConfig};

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
}

impl EventsSettings {
    pub fn from_env(config: &ServiceConfig, env: &Env) -> Result<Self, ConfigError> {
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
        })
    }

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
