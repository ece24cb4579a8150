//! How a service takes part in the hub, written once for all four: its settings and the hub's
//! read from the process environment ([`build_from_process`]), then its outbox relay and, if it
//! subscribes, its consumer started in the background ([`Member::start`]), each reporting its
//! broker connection to the service's `/ready`.

use std::future::Future;
use std::sync::Arc;

use platform::app::Application;
use platform::{Env, FromEnv, ServiceConfig};
use sqlx::PgPool;

use crate::{BrokerHealth, Consumer, EventsSettings, Handler, Outbox, Relay};

/// `main`'s entry of a service whose `build_with` takes its own settings `S` and the hub's: both
/// read from the process environment.
pub async fn build_from_process<S, F, Fut>(
    config: ServiceConfig,
    build_with: F,
) -> anyhow::Result<Application>
where
    S: FromEnv,
    F: FnOnce(ServiceConfig, S, EventsSettings) -> Fut,
    Fut: Future<Output = anyhow::Result<Application>>,
{
    let env = Env::from_process();
    let settings = S::from_env(&config, &env)?;
    let events = EventsSettings::from_env(&config, &env)?;
    build_with(config, settings, events).await
}

/// A service's part in the hub. Its inbox is in its outbox's schema (the service's own).
pub struct Member<'a> {
    pub pool: &'a PgPool,
    pub settings: EventsSettings,
    pub outbox: Outbox,
    pub broker: &'a BrokerHealth,
}

/// What a consuming service subscribes to and what applies it.
pub struct Subscription {
    pub routing_keys: &'static [&'static str],
    pub handler: Arc<dyn Handler>,
}

impl Member<'_> {
    /// Starts the relay of the outbox and, given a subscription, the consumer of its queue.
    pub fn start(self, subscription: Option<Subscription>) {
        let settings = Arc::new(self.settings);
        let schema = self.outbox.schema().to_string();
        Relay::new(
            self.pool.clone(),
            self.outbox,
            settings.clone(),
            self.broker.link("outbox relay"),
        )
        .spawn();
        if let Some(subscription) = subscription {
            Consumer::new(
                self.pool.clone(),
                &schema,
                settings,
                subscription.routing_keys,
                subscription.handler,
                self.broker.link("event consumer"),
            )
            .spawn();
        }
    }
}
