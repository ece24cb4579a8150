//! The payments service: payments and their history (seed section 3.2).
//!
//! Owns `payments_db` and nothing else. Users are found only through auth's HTTP API, cached
//! (seed 4.1, 4.3); charges go through a payment provider behind [`psp::PaymentProvider`]. Every
//! change records its event in the same transaction (`payment.created`,
//! `payment.status_changed`); auth's `user.updated` and `user.deleted` drop cached users.

pub mod charging;
pub mod error;
pub mod idempotency;
pub mod lifecycle;
pub mod money;
pub mod outbox;
pub mod payments;
pub mod psp;
pub mod routes;
pub mod settings;
pub mod status;
pub mod store;
pub mod subscriptions;
pub mod users;
pub mod validate;
pub mod views;
pub mod worker;

use std::sync::Arc;

use auth_client::{AuthClient, Verifier};
use axum::Router;
use axum::extract::FromRef;
use events::{BrokerHealth, EventsSettings, Member, Subscription};
use platform::app::{Application, open_database};
use platform::http::{BearerAuth, ReadinessCheck, SystemState};
use platform::readers::ReadPool;
use platform::{Service, ServiceConfig};
use settings::PaymentsSettings;
use sqlx::PgPool;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// This service's schema migrations, then the event hub's tables it uses (owned by the `schema`
/// crate, which the migration tool applies too).
pub use schema::migrations::PAYMENTS as MIGRATOR;

pub const SERVICE: Service = Service::Payments;

/// Shared by every request and by the background worker.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// The hot one-statement reads (`GET /payments`), without sqlx's ping per release.
    pub readers: ReadPool,
    pub verifier: Arc<Verifier>,
    pub auth: Arc<AuthClient>,
    pub psp: Arc<dyn psp::PaymentProvider>,
    pub settings: Arc<PaymentsSettings>,
    /// The relay's and the consumer's broker connections, for `/ready`.
    pub broker: Arc<BrokerHealth>,
}

impl FromRef<AppState> for Arc<Verifier> {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

impl AppState {
    pub fn new(pool: PgPool, settings: PaymentsSettings) -> anyhow::Result<Self> {
        let auth = settings
            .auth
            .client()?
            .with_credentials(settings.credentials.clone());
        let psp = psp::sandbox::SandboxProvider::new(
            &settings.psp.url,
            settings.psp.webhook_secret.clone(),
            settings.psp.timeout,
            settings.psp.webhook_tolerance,
        )?;
        Ok(Self {
            readers: ReadPool::beside(&pool),
            pool,
            verifier: Arc::new(settings.auth.verifier()?),
            auth: Arc::new(auth),
            psp: Arc::new(psp),
            settings: Arc::new(settings),
            broker: BrokerHealth::new(),
        })
    }
}

/// `/ready` also says whether auth answers: without it, only cached users resolve.
struct AuthReachable(Arc<AuthClient>);

impl ReadinessCheck for AuthReachable {
    fn name(&self) -> &'static str {
        "auth"
    }

    fn check(&self) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move { self.0.health().await.map_err(|e| e.to_string()) })
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "payments-service", description = "Payments and their transaction history."),
    modifiers(&BearerAuth),
    tags(
        (name = "payments", description = "The caller's payments"),
        (name = "psp", description = "The payment provider's webhooks")
    )
)]
struct ApiDoc;

/// The service's HTTP API with the platform's system routes and middleware.
pub fn router(state: AppState, config: &ServiceConfig) -> Router {
    use routes::{payments, webhooks};
    let mut api = OpenApiRouter::new()
        .routes(routes!(payments::create, payments::list))
        .routes(routes!(payments::get))
        .routes(routes!(payments::cancel))
        .routes(routes!(payments::transactions))
        .routes(routes!(webhooks::receive))
        .with_state(state.clone());
    platform::openapi::document_json_bodies(api.get_openapi_mut());
    let system = SystemState::new(SERVICE.name(), state.pool.clone())
        .with_check(state.broker.clone())
        .with_check(Arc::new(AuthReachable(state.auth.clone())));
    platform::http::assemble(api, ApiDoc::openapi(), system, config.request_timeout)
}

/// Opens the database (creating and migrating it as needed), starts the outbox relay, the event
/// consumer and the payments worker, and binds the configured port.
pub async fn build_with(
    config: ServiceConfig,
    settings: PaymentsSettings,
    events: EventsSettings,
) -> anyhow::Result<Application> {
    let pool = open_database(&config, &MIGRATOR).await?;
    let state = AppState::new(pool, settings)?;
    Member {
        pool: &state.pool,
        settings: events,
        outbox: outbox::OUTBOX.clone(),
        broker: &state.broker,
    }
    .start(Some(Subscription {
        routing_keys: contracts::events::subscriptions::PAYMENTS,
        handler: Arc::new(subscriptions::UserEvents {
            auth: state.auth.clone(),
        }),
    }));
    worker::spawn(state.clone());
    Application::bind(&config, router(state, &config)).await
}

/// `main`'s entry: settings from the process environment.
pub async fn build(config: ServiceConfig) -> anyhow::Result<Application> {
    events::build_from_process(config, build_with).await
}
