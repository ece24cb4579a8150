//! The profile service: user profiles (seed section 3.4).
//!
//! Owns `profile_db` and nothing else; it reaches users only through auth's HTTP API (whether a
//! user exists) or auth's events (`user.registered` creates the default profile, `user.deleted`
//! removes it). Access tokens are verified locally with auth's published keys.

pub mod error;
pub mod outbox;
pub mod profiles;
pub mod routes;
pub mod settings;
pub mod store;
pub mod subscriptions;
pub mod validate;

use std::sync::Arc;

use auth_client::{AuthClient, Verifier};
use axum::Router;
use axum::extract::FromRef;
use events::{BrokerHealth, EventsSettings, Member, Subscription};
use platform::app::{Application, open_database};
use platform::http::{BearerAuth, SystemState};
use platform::readers::ReadPool;
use platform::{Service, ServiceConfig};
use settings::ProfileSettings;
use sqlx::PgPool;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// This service's schema migrations, then the event hub's tables it uses (owned by the `schema`
/// crate, which the migration tool applies too).
pub use schema::migrations::PROFILE as MIGRATOR;

pub const SERVICE: Service = Service::Profile;

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// The hot one-statement reads (`GET /profile/me`), without sqlx's ping per release.
    pub readers: ReadPool,
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
    pub fn new(pool: PgPool, settings: &ProfileSettings) -> anyhow::Result<Self> {
        Ok(Self {
            readers: ReadPool::beside(&pool),
            pool,
            verifier: Arc::new(settings.auth.verifier()?),
            auth: Arc::new(settings.auth.client()?),
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
    use routes::profile;
    let mut api = OpenApiRouter::new()
        .routes(routes!(profile::get_me, profile::put_me, profile::patch_me))
        .routes(routes!(profile::get_by_user))
        .routes(routes!(profile::list_profiles))
        .with_state(state.clone());
    platform::openapi::document_json_bodies(api.get_openapi_mut());
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
    settings: ProfileSettings,
    events: EventsSettings,
) -> anyhow::Result<Application> {
    let pool = open_database(&config, &MIGRATOR).await?;
    let state = AppState::new(pool, &settings)?;
    Member {
        pool: &state.pool,
        settings: events,
        outbox: outbox::OUTBOX.clone(),
        broker: &state.broker,
    }
    .start(Some(Subscription {
        routing_keys: contracts::events::subscriptions::PROFILE,
        handler: Arc::new(subscriptions::UserEvents),
    }));
    Application::bind(&config, router(state, &config)).await
}

/// `main`'s entry: settings from the process environment.
pub async fn build(config: ServiceConfig) -> anyhow::Result<Application> {
    events::build_from_process(config, build_with).await
}
