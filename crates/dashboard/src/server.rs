//! The HTTP side: the page and its assets (embedded: no internet needed), the snapshot as JSON,
//! its stream (server-sent events), and Prometheus gauges. Read-only; every route needs the token
//! when one is set.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use futures_util::StreamExt;
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;

use crate::snapshot::Snapshot;

/// What the routes serve: the latest snapshot and its JSON, made once per refresh.
#[derive(Clone)]
pub struct Published {
    pub snapshot: Arc<Snapshot>,
    pub json: Arc<str>,
}

#[derive(Clone)]
pub struct AppState {
    pub latest: watch::Receiver<Published>,
    pub token: Option<Arc<str>>,
    pub hosts: Arc<crate::hosts::AllowedHosts>,
}

const INDEX: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/style.css");

/// Nothing but the page's own files: no inline script, no other origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/app.js", get(app_js))
        .route("/assets/style.css", get(style))
        .route("/api/snapshot", get(snapshot))
        .route("/api/stream", get(stream))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// The token (when set), from `Authorization: Bearer` or `?token=` (an EventSource cannot send
/// headers); and headers that keep the page's data out of caches and frames.
async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(refused) = foreign(&state, req.headers()) {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({"error": {
                "code": "forbidden",
                "message": refused,
            }})),
        )
            .into_response();
    }
    if let Some(expected) = &state.token {
        let given = bearer(req.headers()).or_else(|| query_token(req.uri().query()));
        let ok = given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(expected.as_bytes())));
        if !ok {
            let mut r = (
                StatusCode::UNAUTHORIZED,
                axum::Json(serde_json::json!({"error": {
                    "code": "unauthorized",
                    "message": "this dashboard needs its token: ?token=... or Authorization: Bearer ..."
                }})),
            )
                .into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Why a request from another host or origin is refused (see [`crate::hosts`]); `None` when it
/// is the view's own.
fn foreign(state: &AppState, headers: &HeaderMap) -> Option<String> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    match text(header::HOST) {
        Some(host) if state.hosts.host(host) => {}
        other => {
            return Some(format!(
                "this view does not answer for Host {:?}: use its address, or name it with --ui-host",
                other.unwrap_or("")
            ));
        }
    }
    if let Some(origin) = text(header::ORIGIN)
        && !state.hosts.origin(origin)
    {
        return Some(format!(
            "this view does not answer requests from another origin ({origin})"
        ));
    }
    if text(header::HeaderName::from_static("sec-fetch-site")) == Some("cross-site") {
        return Some("this view does not answer requests from another site".into());
    }
    None
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ").map(|t| t.trim().to_string())
}

fn query_token(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "token").then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn with_type(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn index() -> Response {
    with_type(INDEX, "text/html; charset=utf-8")
}

async fn app_js() -> Response {
    with_type(APP_JS, "text/javascript; charset=utf-8")
}

async fn style() -> Response {
    with_type(STYLE, "text/css; charset=utf-8")
}

async fn snapshot(State(state): State<AppState>) -> Response {
    let json = state.latest.borrow().json.clone();
    (
        [(header::CONTENT_TYPE, "application/json")],
        json.to_string(),
    )
        .into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let snapshot = state.latest.borrow().snapshot.clone();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::prometheus::render(&snapshot),
    )
        .into_response()
}

/// Every new snapshot as an event `snapshot` (the current one first); a comment every 15 s keeps
/// proxies from closing an idle stream.
async fn stream(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let events = WatchStream::new(state.latest.clone())
        .map(|p| Ok(Event::default().event("snapshot").data(p.json.as_ref())));
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_read_from_the_query_decoded() {
        assert_eq!(query_token(Some("token=a%2Bb%3D")), Some("a+b=".into()));
        assert_eq!(query_token(Some("x=1&token=abc")), Some("abc".into()));
        assert_eq!(query_token(Some("tokens=abc")), None);
        assert_eq!(query_token(None), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%é"), "%é");
    }
}
