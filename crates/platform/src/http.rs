//! The HTTP shell every service shares: system routes (`/health`, `/ready`, `/metrics`,
//! `/openapi.json`), the JSON 404/405 fallbacks and the middleware stack (request id, tracing,
//! panic catching, metrics, timeout, body limit).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sqlx::PgPool;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnRequest, TraceLayer};
use utoipa::ToSchema;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::extract::Json;

/// Adds the `bearer` security scheme (an access JWT in `Authorization: Bearer`) to a service's
/// OpenAPI document: `#[openapi(modifiers(&BearerAuth))]`.
pub struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Largest accepted request body; larger ones get 413.
pub const BODY_LIMIT: usize = 1024 * 1024;
pub const REQUEST_ID_HEADER: &str = "x-request-id";

type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// A dependency `/ready` checks, e.g. the message broker.
pub trait ReadinessCheck: Send + Sync {
    fn name(&self) -> &'static str;
    fn check(&self) -> CheckFuture<'_>;
}

/// What the system routes need to know about the service.
#[derive(Clone)]
pub struct SystemState {
    pub service: &'static str,
    pub pool: PgPool,
    pub checks: Vec<Arc<dyn ReadinessCheck>>,
}

impl SystemState {
    pub fn new(service: &'static str, pool: PgPool) -> Self {
        Self {
            service,
            pool,
            checks: Vec::new(),
        }
    }

    pub fn with_check(mut self, check: Arc<dyn ReadinessCheck>) -> Self {
        self.checks.push(check);
        self
    }
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub service: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// Each dependency with `ok` or the reason it failed.
    pub checks: std::collections::BTreeMap<&'static str, String>,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200, body = Health)))]
async fn health(State(state): State<SystemState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        service: state.service,
    })
}

/// Readiness: the database (and other dependencies) answer.
#[utoipa::path(get, path = "/ready", tag = "system", responses(
    (status = 200, body = Readiness), (status = 503, body = Readiness, description = "a dependency is down")))]
async fn ready(State(state): State<SystemState>) -> Response {
    let mut checks = std::collections::BTreeMap::new();
    let db = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query("SELECT 1").execute(&state.pool),
    )
    .await;
    let db = match db {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_string()),
    };
    checks.insert("database", db.err().unwrap_or_else(|| "ok".into()));
    for check in &state.checks {
        let outcome = match tokio::time::timeout(Duration::from_secs(2), check.check()).await {
            Ok(Ok(())) => "ok".to_string(),
            Ok(Err(e)) => e,
            Err(_) => "timed out".to_string(),
        };
        checks.insert(check.name(), outcome);
    }
    let all_ok = checks.values().all(|v| v == "ok");
    let status = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            status: if all_ok { "ready" } else { "not_ready" },
            checks,
        }),
    )
        .into_response()
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "system", responses((status = 200, content_type = "text/plain", body = String)))]
async fn metrics_text(State(state): State<SystemState>) -> Response {
    crate::metrics::record_pool(state.service, &state.pool);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::handle().render(),
    )
        .into_response()
}

/// Assembles a service: its API routes, the system routes, the OpenAPI document and the shared
/// middleware. `api` must already carry its state.
pub fn assemble(
    api: OpenApiRouter,
    mut openapi: OpenApi,
    system: SystemState,
    request_timeout: Duration,
) -> Router {
    // Install the recorder before the first request so early requests are counted too.
    let _ = crate::metrics::handle();
    let system_routes: OpenApiRouter = OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics_text))
        .with_state(system);
    let (router, spec) = api.merge(system_routes).split_for_parts();
    openapi.merge(spec);
    let components = openapi.components.get_or_insert_with(Default::default);
    for (name, schema) in [
        (
            "ErrorBody",
            <crate::error::ErrorBody as utoipa::PartialSchema>::schema(),
        ),
        (
            "ErrorDetail",
            <crate::error::ErrorDetail as utoipa::PartialSchema>::schema(),
        ),
        (
            "FieldError",
            <crate::error::FieldError as utoipa::PartialSchema>::schema(),
        ),
    ] {
        components.schemas.entry(name.to_string()).or_insert(schema);
    }
    let spec = Arc::new(openapi);
    let router = router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let spec = spec.clone();
                async move { axum::Json(spec.as_ref().clone()) }
            }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    with_middleware(router, request_timeout)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        crate::error::code::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    )
}

fn with_middleware(router: Router, request_timeout: Duration) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    let trace = request_trace();
    router
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(request_timeout, timeout))
        .layer(middleware::from_fn(crate::metrics::track))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(trace)
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(CatchPanicLayer::custom(panic_response)),
        )
}

/// The layer that gives each request its span ([`request_span`]) and records its status there.
#[allow(clippy::type_complexity)]
pub fn request_trace<B>() -> TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    fn(&Request) -> tracing::Span,
    DefaultOnRequest,
    fn(&axum::http::Response<B>, Duration, &tracing::Span),
> {
    TraceLayer::new_for_http()
        .make_span_with(request_span as fn(&Request) -> tracing::Span)
        .on_response(record_status::<B> as fn(&axum::http::Response<B>, Duration, &tracing::Span))
}

/// The span of a request: a server span in OpenTelemetry's terms, named by its route, continuing
/// the trace of a `traceparent` header.
fn request_span(req: &Request) -> tracing::Span {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| req.uri().path(), |p| p.as_str());
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        request_id = %id,
        otel.name = %format_args!("{} {route}", req.method()),
        otel.kind = "server",
        http.request.method = %req.method(),
        http.route = route,
        http.response.status_code = tracing::field::Empty,
    );
    crate::otel::continue_from_headers(&span, req.headers());
    span
}

fn record_status<B>(response: &axum::http::Response<B>, _: Duration, span: &tracing::Span) {
    span.record("http.response.status_code", response.status().as_u16());
}

/// Ends a request that runs longer than the configured timeout with a JSON 503; the handler's
/// future is dropped, which rolls back any open transaction.
async fn timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(timeout_secs = limit.as_secs_f64(), "request timed out");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                crate::error::code::TIMEOUT,
                "the request took too long",
            )
            .into_response()
        }
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("handler panicked").into_response()
}
