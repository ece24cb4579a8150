//! The HTTP API: the routes, their OpenAPI document and the middleware around them.
//!
//! The platform's `http::assemble` expects a database for `/ready`; the sandbox has none, so it
//! assembles its own, smaller shell with the same error bodies for unknown routes and methods.

pub mod charges;
pub mod system;

use std::sync::LazyLock;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use platform::ApiError;
use platform::error::code;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::psp::Psp;

/// Largest accepted request body; a charge request is a few hundred bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "psp-sandbox",
        description = "A sandbox payment service provider: charges whose outcome is decided by \
            their amount, idempotent by the caller's reference, announced by signed webhooks \
            (`PSP-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, \"<t>.<body>\")>`)."
    ),
    tags(
        (name = "charges", description = "Charges, idempotent by the caller's reference"),
        (name = "system", description = "Liveness and this document")
    ),
    components(schemas(crate::webhooks::Event, platform::ErrorBody, platform::ErrorDetail, platform::FieldError))
)]
struct ApiDoc;

/// The OpenAPI document of every route, the outcome table in `POST /charges`'s description.
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOC: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(|| split().1);
    &DOC
}

fn split() -> (Router<Psp>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(charges::create_charge, charges::list_charges))
        .routes(routes!(charges::get_charge))
        .routes(routes!(system::health))
        .routes(routes!(system::openapi_json))
        .split_for_parts();
    platform::openapi::document_json_bodies(&mut doc);
    let post = doc
        .paths
        .paths
        .get_mut("/charges")
        .and_then(|item| item.post.as_mut());
    if let Some(post) = post {
        let intro = post.description.take().unwrap_or_default();
        post.description = Some(format!("{intro}\n\n{}", crate::outcomes::TABLE));
    }
    (router, doc)
}

/// The sandbox's HTTP API.
pub fn router(psp: Psp) -> Router {
    split()
        .0
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(psp)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(platform::http::request_trace())
        .layer(CatchPanicLayer::custom(panic_response))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        code::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("handler panicked").into_response()
}
