//! The admin service: the audit log and the system configuration (seed section 3.3).
//!
//! Owns `admin_db` and nothing else. It consumes every event on the hub (`#`) into `audit_logs`,
//! one row per event, chained for tamper evidence ([`audit::chain`]); users' names and details
//! come only from auth's HTTP API, cached. Configuration changes publish `config.updated` and
//! refused requests `admin.access_denied` through its own outbox, so they are audited like
//! everything else.

pub mod access;
pub mod audit;
pub mod configuration;
pub mod error;
pub mod outbox;
pub mod routes;
pub mod settings;
pub mod store;
pub mod views;

use std::sync::Arc;
use std::time::Duration;

use access::DenialLimiter;
use audit::names::Names;
use auth_client::{AuthClient, Verifier};
use axum::Router;
use axum::extract::FromRef;
use events::{BrokerHealth, EventsSettings, Member, Subscription};
use platform::app::{Application, open_database};
use platform::http::{BearerAuth, ReadinessCheck, SystemState};
use platform::readers::ReadPool;
use platform::{Service, ServiceConfig};
use settings::AdminSettings;
use sqlx::PgPool;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// This service's schema migrations, then the event hub's tables it uses (owned by the `schema`
/// crate, which the migration tool applies too).
pub use schema::migrations::ADMIN as MIGRATOR;

pub const SERVICE: Service = Service::Admin;

/// Shared by every request and by the audit consumer.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// The hot one-statement reads (`GET /admin/audit-logs`), without sqlx's ping per release.
    pub readers: ReadPool,
    pub verifier: Arc<Verifier>,
    pub auth: Arc<AuthClient>,
    pub names: Arc<Names>,
    pub denials: Arc<DenialLimiter>,
    pub settings: Arc<AdminSettings>,
    /// The relay's and the consumer's broker connections, for `/ready`.
    pub broker: Arc<BrokerHealth>,
    /// Exports running at once (each holds a connection: `audit::export`).
    pub exports: Arc<tokio::sync::Semaphore>,
}

impl FromRef<AppState> for Arc<Verifier> {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

impl AppState {
    pub fn new(pool: PgPool, settings: AdminSettings) -> anyhow::Result<Self> {
        let auth = Arc::new(
            settings
                .auth
                .client()?
                .with_credentials(settings.credentials.clone()),
        );
        let names = Names::new(
            auth.clone(),
            settings.name_lookup_timeout,
            settings.name_lookup_pause,
        );
        Ok(Self {
            readers: ReadPool::beside(&pool),
            pool,
            verifier: Arc::new(settings.auth.verifier()?),
            auth,
            names: Arc::new(names),
            denials: Arc::new(DenialLimiter::new(settings.denied_audit_per_minute)),
            exports: Arc::new(tokio::sync::Semaphore::new(settings.exports_at_once.max(1))),
            settings: Arc::new(settings),
            broker: BrokerHealth::new(),
        })
    }
}

/// `/ready` fails while the audit chain has no head: no event can be audited then.
struct ChainReady(PgPool);

impl ReadinessCheck for ChainReady {
    fn name(&self) -> &'static str {
        "audit chain"
    }

    fn check(&self) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            let head = audit::chain::head_seq(&self.0)
                .await
                .map_err(|e| e.to_string())?;
            head.map(|_| ())
                .ok_or_else(|| audit::chain::ChainError::NoHead.to_string())
        })
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "admin-service", description = "Audit logs and system configuration. Every route is for ADMIN users."),
    modifiers(&BearerAuth),
    tags(
        (name = "audit", description = "The audit log of every event on the platform"),
        (name = "config", description = "The system configuration")
    )
)]
struct ApiDoc;

/// The service's HTTP API with the platform's system routes and middleware.
pub fn router(state: AppState, config: &ServiceConfig) -> Router {
    use routes::{audit, config as cfg};
    let mut api = OpenApiRouter::new()
        .routes(routes!(audit::list))
        .routes(routes!(audit::export))
        .routes(routes!(audit::verify))
        .routes(routes!(audit::get))
        .routes(routes!(cfg::list))
        .routes(routes!(cfg::get, cfg::put, cfg::delete))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::require_admin,
        ))
        .with_state(state.clone());
    platform::openapi::document_json_bodies(api.get_openapi_mut());
    // Admin serves without auth (names are then null), so auth is not part of readiness.
    let system = SystemState::new(SERVICE.name(), state.pool.clone())
        .with_check(state.broker.clone())
        .with_check(Arc::new(ChainReady(state.pool.clone())));
    platform::http::assemble(api, ApiDoc::openapi(), system, config.request_timeout)
}

/// The chain's length, for `/metrics`, every 15 seconds.
fn spawn_gauges(pool: PgPool) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(15));
        loop {
            tick.tick().await;
            let head = audit::chain::head_seq(&pool).await;
            if let Ok(Some(seq)) = head {
                metrics::gauge!("admin_audit_chain_entries").set(seq as f64);
            }
            if let Ok(backlog) = outbox::OUTBOX.backlog(&pool).await {
                metrics::gauge!("admin_outbox_backlog").set(backlog as f64);
            }
        }
    });
}

/// Opens the database (creating and migrating it as needed), anchors the rows already in the
/// audit log (once, at the first start), starts the outbox relay and the audit consumer, and
/// binds the configured port.
pub async fn build_with(
    config: ServiceConfig,
    settings: AdminSettings,
    events: EventsSettings,
) -> anyhow::Result<Application> {
    let pool = open_database(&config, &MIGRATOR).await?;
    match audit::chain::anchor(&pool, audit::chain::Anchoring::FirstStart).await {
        Ok(Some(rows)) => tracing::info!(
            rows,
            "audit log anchored: the rows already there are now covered by the chain"
        ),
        Ok(None) => {}
        // Served anyway (reading, verifying, configuration); events wait in the queue and
        // `/ready` says why until an operator anchors the log again.
        Err(e @ audit::chain::ChainError::Wiped(_)) => tracing::error!(error = %e, "audit chain"),
        Err(e) => return Err(e.into()),
    }
    let state = AppState::new(pool, settings)?;
    Member {
        pool: &state.pool,
        settings: events,
        outbox: outbox::OUTBOX.clone(),
        broker: &state.broker,
    }
    .start(Some(Subscription {
        routing_keys: contracts::events::subscriptions::ADMIN,
        handler: Arc::new(audit::writer::AuditWriter {
            names: state.names.clone(),
            topology: config.topology,
        }),
    }));
    spawn_gauges(state.pool.clone());
    Application::bind(&config, router(state, &config)).await
}

/// `main`'s entry: settings from the process environment.
pub async fn build(config: ServiceConfig) -> anyhow::Result<Application> {
    events::build_from_process(config, build_with).await
}
