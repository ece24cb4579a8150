//! The profile service: user profiles (seed section 3.4).
//!
//! Owns `profile_db` and nothing else; it reaches users only through auth's HTTP API (whether a
//! user exists) or auth's events (`user.registered` creates the default profile, `user.deleted`
//! removes it). Access tokens are verified locally with auth's published keys.

pub mod profile;
pub mod routes;
pub mod store;
pub mod subscriptions;
pub mod validate;

use std::sync::{Arc, LazyLock};

use auth_client::{AuthClient, Verifier};
use axum::Router;
use axum::extract::FromRef;
use events::{BrokerHealth, Consumer, EventsSettings, Outbox, Relay};
use platform::app::{Application, open_database};
use platform::http::{BearerAuth, SystemState};
use platform::{Env, Service, ServiceConfig};
use sqlx::PgPool;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// This service's schema migrations; the migration tool applies the same ones.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

pub const SERVICE: Service = Service::Profile;

/// Where the service's events wait for the relay: `profile.outbox`.
pub static OUTBOX: LazyLock<Outbox> = LazyLock::new(|| Outbox::new(SERVICE.schema()));

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub verifier: Arc<Verifier>,
    pub auth: Arc<AuthClient>,
    /// The relay's and the consumer's broker connections, for `/ready`.
    pub broker: Arc<BrokerHealth>,
}

impl FromRef<AppState> for Arc<Verifier> {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

impl AppState {
    /// State for a service whose auth is at `config.auth_service_url`; token issuer and audience
    /// come from `AUTH_JWT_ISSUER` / `AUTH_JWT_AUDIENCE`, as auth's do.
    pub fn new(pool: PgPool, config: &ServiceConfig, env: &Env) -> anyhow::Result<Self> {
        let verifier = Verifier::new(&config.auth_service_url)?
            .with_issuer(&env.string_or("AUTH_JWT_ISSUER", auth_client::DEFAULT_ISSUER))
            .with_audience(&env.string_or("AUTH_JWT_AUDIENCE", auth_client::DEFAULT_AUDIENCE));
        Ok(Self {
            pool,
            verifier: Arc::new(verifier),
            auth: Arc::new(AuthClient::new(&config.auth_service_url)?),
            broker: BrokerHealth::new(),
        })
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "profile-service", description = "User profiles."),
    modifiers(&BearerAuth),
    tags((name = "profile", description = "The caller's profile and profiles by user"))
)]
struct ApiDoc;

/// The service's HTTP API with the platform's system routes and middleware.
pub fn router(state: AppState, config: &ServiceConfig) -> Router {
    let api = OpenApiRouter::new()
        .routes(routes!(routes::get_me, routes::put_me, routes::patch_me))
        .routes(routes!(routes::get_by_user))
        .routes(routes!(routes::list_profiles))
        .with_state(state.clone());
    platform::http::assemble(
        api,
        ApiDoc::openapi(),
        SystemState::new(SERVICE.name(), state.pool).with_check(state.broker),
        config.request_timeout,
    )
}

/// Opens the database (creating and migrating it as needed), starts the outbox relay and the
/// event consumer, and binds the configured port.
pub async fn build_with(
    config: ServiceConfig,
    env: &Env,
    events: EventsSettings,
) -> anyhow::Result<Application> {
    let pool = open_database(&config, &MIGRATOR).await?;
    let state = AppState::new(pool, &config, env)?;
    let events = Arc::new(events);
    Relay::new(
        state.pool.clone(),
        OUTBOX.clone(),
        events.clone(),
        state.broker.link("outbox relay"),
    )
    .spawn();
    Consumer::new(
        state.pool.clone(),
        SERVICE.schema(),
        events,
        subscriptions::ROUTING_KEYS,
        Arc::new(subscriptions::UserEvents),
        state.broker.link("event consumer"),
    )
    .spawn();
    Application::bind(&config, router(state, &config)).await
}

/// `main`'s entry: settings from the process environment.
pub async fn build(config: ServiceConfig) -> anyhow::Result<Application> {
    let env = Env::from_process();
    let events = EventsSettings::from_env(&config, &env)?;
    build_with(config, &env, events).await
}
