//! `/health` (the process answers) and `/openapi.json` (what it answers to).

use platform::Json;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// This document: every route, its bodies and the outcome table.
#[utoipa::path(get, path = "/openapi.json", tag = "system", responses(
    (status = 200, content_type = "application/json", body = Object, description = "OpenAPI 3.1")))]
pub async fn openapi_json() -> axum::Json<&'static utoipa::openapi::OpenApi> {
    axum::Json(crate::routes::openapi())
}
