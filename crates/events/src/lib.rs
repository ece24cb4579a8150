//! The event hub on RabbitMQ: services publish what happened through a transactional outbox and
//! react to each other's events through idempotent consumers. Events are never lost (outbox,
//! publisher confirms, acks after commit) and never applied twice (the consumer's inbox of event
//! ids). Each relay and consumer owns a reconnect loop, and `/ready` reports their connections.

pub mod broker;
pub mod consumer;
pub mod dlq;
pub mod envelope;
pub mod member;
pub mod outbox;
pub mod relay;
pub mod settings;
pub mod transient;

pub use broker::{BrokerHealth, Link};
pub use consumer::{Consumer, Handler, HandlerError, HandlerFuture};
pub use envelope::Envelope;
pub use member::{Member, Subscription, build_from_process};
pub use outbox::Outbox;
pub use relay::Relay;
pub use settings::EventsSettings;
