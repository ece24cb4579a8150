//! The shared HTTP shell on a tiny router: timeouts, panics, request ids, graceful shutdown.

use std::time::Duration;

use axum::routing::get;
use platform::http::{SystemState, assemble};
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

#[derive(OpenApi)]
struct Doc;

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_millis(400)).await;
    "done"
}

async fn boom() -> &'static str {
    panic!("handler bug")
}

fn app(timeout: Duration) -> axum::Router {
    // Lazy: these tests never touch the database.
    let pool = PgPoolOptions::new()
        .connect_lazy("postgresql://postgres@127.0.0.1:5432/postgres")
        .unwrap();
    let api = OpenApiRouter::new()
        .route("/slow", get(slow))
        .route("/boom", get(boom));
    assemble(
        api,
        Doc::openapi(),
        SystemState::new("test-service", pool),
        timeout,
    )
}

async fn start(
    router: axum::Router,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        platform::server::serve(listener, router, async move {
            let _ = stop_rx.await;
        })
        .await
        .unwrap();
    });
    (base, stop_tx, server)
}

#[tokio::test]
async fn a_request_over_the_timeout_gets_a_json_503() {
    let (base, _stop, _server) = start(app(Duration::from_millis(100))).await;
    let response = reqwest::get(format!("{base}/slow")).await.unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "timeout");
}

#[tokio::test]
async fn a_panicking_handler_gets_a_json_500_without_the_cause() {
    let (base, _stop, _server) = start(app(Duration::from_secs(5))).await;
    let response = reqwest::get(format!("{base}/boom")).await.unwrap();
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "internal");
    assert!(!body.to_string().contains("handler bug"));
}

#[tokio::test]
async fn a_given_request_id_is_echoed_and_a_missing_one_is_made() {
    let (base, _stop, _server) = start(app(Duration::from_secs(5))).await;
    let http = reqwest::Client::new();
    let given = http
        .get(format!("{base}/health"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "abc-123");
    let made = http.get(format!("{base}/health")).send().await.unwrap();
    let id = made.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let (base, stop, server) = start(app(Duration::from_secs(5))).await;
    let in_flight = tokio::spawn(async move { reqwest::get(format!("{base}/slow")).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "done");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops")
        .unwrap();
}

#[tokio::test]
async fn ready_reports_an_unreachable_database_as_503() {
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy("postgresql://postgres@127.0.0.1:1/nothing")
        .unwrap();
    let router = assemble(
        OpenApiRouter::new(),
        Doc::openapi(),
        SystemState::new("t", pool),
        Duration::from_secs(5),
    );
    let (base, _stop, _server) = start(router).await;
    let response = reqwest::get(format!("{base}/ready")).await.unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert_ne!(body["checks"]["database"], "ok");
}
