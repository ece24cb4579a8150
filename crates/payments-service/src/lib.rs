//! The payments service: Payments and their transaction history.
//!
//! Owns `payments_db` and nothing else; it reaches users only through auth's HTTP API or events.

use axum::Router;
use platform::app::{Application, open_database};
use platform::http::SystemState;
use platform::{Service, ServiceConfig};
use sqlx::PgPool;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// This service's schema migrations; the migration tool applies the same ones.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

pub const SERVICE: Service = Service::Payments;

#[derive(OpenApi)]
#[openapi(info(
    title = "payments-service",
    description = "Payments and their transaction history."
))]
struct ApiDoc;

/// The service's HTTP API with the platform's system routes and middleware.
pub fn router(pool: PgPool, config: &ServiceConfig) -> Router {
    platform::http::assemble(
        OpenApiRouter::new(),
        ApiDoc::openapi(),
        SystemState::new(SERVICE.name(), pool),
        config.request_timeout,
    )
}

/// Opens the database (creating and migrating it as needed) and binds the configured port.
pub async fn build(config: ServiceConfig) -> anyhow::Result<Application> {
    let pool = open_database(&config, &MIGRATOR).await?;
    Application::bind(&config, router(pool, &config)).await
}
