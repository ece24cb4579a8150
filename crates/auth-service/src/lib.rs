//! The auth service: users, passwords, refresh tokens and the platform's access tokens (EdDSA
//! JWTs that every service verifies with the public keys at `/.well-known/jwks.json`).
//!
//! Owns `auth_db` (`users`, `refresh_tokens`, and its own `auth` schema); in the shared
//! topology it runs on the legacy database, its own tables still in the `auth` schema.

pub mod accounts;
pub mod bootstrap;
pub mod directory;
pub mod error;
pub mod extract;
pub mod hashing;
pub mod keys;
pub mod outbox;
pub mod password;
pub mod routes;
pub mod sessions;
pub mod settings;
pub mod store;
pub mod throttle;
pub mod tokens;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use events::{BrokerHealth, EventsSettings, Member};
use platform::app::{Application, open_database};
use platform::coalesce::Coalescer;
use platform::http::{BearerAuth, SystemState};
use platform::readers::ReadPool;
use platform::{Service, ServiceConfig, Topology};
use sqlx::PgPool;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::keys::Keys;
use crate::password::Passwords;
use crate::settings::{AuthSettings, TokenPurge};
use crate::store::users::UserRow;
use crate::throttle::LoginThrottle;

/// This service's schema migrations, then the event hub's tables it uses (owned by the `schema`
/// crate, which the migration tool applies too).
pub use schema::migrations::AUTH as MIGRATOR;

pub const SERVICE: Service = Service::Auth;

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// The hot one-statement reads (`GET /users/{id}`), without sqlx's ping per release.
    pub readers: ReadPool,
    /// `GET /users/{id}`'s lookups, batched while others are in flight (on `readers`).
    pub users_by_id: Coalescer<String, UserRow>,
    /// Whether the outbox relay is connected to the broker, for `/ready`.
    pub broker: Arc<BrokerHealth>,
    pub keys: Arc<Keys>,
    pub passwords: Arc<Passwords>,
    /// Where passwords are hashed and checked: a bounded number at once.
    pub hashing: Arc<hashing::HashPool>,
    pub throttle: Arc<LoginThrottle>,
    pub settings: Arc<AuthSettings>,
}

impl AppState {
    pub fn new(pool: PgPool, settings: AuthSettings) -> Result<Self, keys::KeyError> {
        let keys = Keys::load(&settings.key_source, &settings.issuer, &settings.audience)?;
        let readers = ReadPool::beside(&pool);
        Ok(Self {
            users_by_id: directory::users_by_id(
                readers.clone(),
                pool.options().get_max_connections(),
            ),
            readers,
            pool,
            broker: BrokerHealth::new(),
            keys: Arc::new(keys),
            passwords: Arc::new(Passwords::new()),
            hashing: Arc::new(hashing::HashPool::new(
                settings.hash_workers,
                settings.hash_queue,
            )),
            throttle: Arc::new(LoginThrottle::new(settings.throttle)),
            settings: Arc::new(settings),
        })
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "auth-service", description = "Users, login, refresh tokens and the platform's JWTs."),
    modifiers(&BearerAuth),
    tags((name = "auth", description = "Sign-up, sign-in, tokens"), (name = "users", description = "User lookups and administration"))
)]
struct ApiDoc;

/// The service's HTTP API with the platform's system routes and middleware.
pub fn router(state: AppState, config: &ServiceConfig) -> Router {
    use routes::{auth, jwks, users};
    let mut api = OpenApiRouter::new()
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(auth::service_token))
        .routes(routes!(jwks::jwks))
        .routes(routes!(users::find_users))
        .routes(routes!(
            users::get_user,
            users::update_user,
            users::delete_user
        ))
        .with_state(state.clone());
    platform::openapi::document_json_bodies(api.get_openapi_mut());
    platform::http::assemble(
        api,
        ApiDoc::openapi(),
        SystemState::new(SERVICE.name(), state.pool).with_check(state.broker),
        config.request_timeout,
    )
}

/// Everything `main` does before serving: database, keys, bootstrap admin, the outbox relay,
/// housekeeping.
///
/// In the shared topology (the legacy database) auth writes legacy rows at start only when
/// configured to: the bootstrap admin (`AUTH_BOOTSTRAP_ADMIN_*`, when no account has its email)
/// and the purge of expired refresh tokens (`AUTH_PURGE_EXPIRED_TOKENS=on`); both are logged.
pub async fn build_with(
    config: ServiceConfig,
    settings: AuthSettings,
    events: EventsSettings,
) -> anyhow::Result<Application> {
    let pool = open_database(&config, &MIGRATOR).await?;
    let state = AppState::new(pool, settings)?;
    if let Some(admin) = state.settings.bootstrap_admin.clone() {
        bootstrap::ensure_admin(&state, &admin, config.topology).await?;
    }
    let purge = state.settings.purges_expired_tokens(config.topology);
    Member {
        pool: &state.pool,
        settings: events,
        outbox: outbox::OUTBOX.clone(),
        broker: &state.broker,
    }
    .start(None);
    announce(purge, config.topology);
    tokio::spawn(purge_expired_tokens(state.pool.clone(), purge.enabled));
    Application::bind(&config, router(state, &config)).await
}

/// `main`'s entry: the auth and event settings come from the process environment.
pub async fn build(config: ServiceConfig) -> anyhow::Result<Application> {
    events::build_from_process(config, build_with).await
}

/// Says at start what auth will do with expired refresh tokens, and why.
fn announce(purge: TokenPurge, topology: Topology) {
    let why = if purge.explicit {
        "AUTH_PURGE_EXPIRED_TOKENS"
    } else {
        "the topology's default"
    };
    if purge.enabled {
        tracing::info!(
            ?topology,
            setting = why,
            "expired refresh tokens: deleted from refresh_tokens at start and every hour"
        );
    } else {
        tracing::info!(
            ?topology,
            setting = why,
            "expired refresh tokens: left in refresh_tokens (refused at /auth/refresh all the same); \
             set AUTH_PURGE_EXPIRED_TOKENS=on to delete them"
        );
    }
}

/// Housekeeping, at start and every hour: the expired rows of `refresh_tokens` when `legacy`
/// is on, and always the expired hashes of rotated tokens (auth's own schema).
async fn purge_expired_tokens(pool: PgPool, legacy: bool) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        if legacy {
            match store::refresh_tokens::purge_expired_live(&pool).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "purged expired refresh tokens"),
                Err(e) => tracing::warn!(error = %e, "purging expired refresh tokens failed"),
            }
        }
        match store::refresh_tokens::purge_expired_rotated(&pool).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "purged expired rotated token hashes"),
            Err(e) => tracing::warn!(error = %e, "purging rotated token hashes failed"),
        }
    }
}
