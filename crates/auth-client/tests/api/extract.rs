use std::sync::Arc;

use auth_client::{Caller, Verifier};
use axum::Router;
use axum::body::Body;
use axum::extract::FromRef;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use contracts::users::Role;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use wiremock::MockServer;

use crate::support::*;

#[derive(Clone, FromRef)]
struct AppState {
    verifier: Arc<Verifier>,
    name: &'static str,
}

async fn whoami(caller: Caller) -> axum::Json<Value> {
    axum::Json(json!({
        "sub": caller.subject(),
        "userId": caller.user_id(),
        "bearer": caller.bearer(),
        "admin": caller.is_admin(),
        "service": caller.is_service(),
    }))
}

async fn maybe(caller: Option<Caller>) -> String {
    caller.map_or("anonymous".into(), |c| c.subject().to_string())
}

fn app(auth_url: &str) -> Router {
    let state = AppState {
        verifier: Arc::new(Verifier::new(auth_url).unwrap()),
        name: "test",
    };
    Router::new()
        .route("/whoami", get(whoami))
        .route("/maybe", get(maybe))
        .with_state(state)
}

async fn call(
    app: Router,
    uri: &str,
    authorization: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut request = Request::get(uri);
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    let response = app
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, body)
}

#[tokio::test]
async fn a_request_without_a_bearer_gets_a_401_in_the_platform_error_shape() {
    let server = MockServer::start().await;
    serve_jwks(&server, &[&TestKey::new("k1")], 0).await;

    for authorization in [
        None,
        Some("Basic dXNlcjpwdw=="),
        Some("Bearer"),
        Some("Bearer   "),
    ] {
        let (status, headers, body) = call(app(&server.uri()), "/whoami", authorization).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert_eq!(body["error"]["code"], "unauthorized", "{authorization:?}");
        assert!(body["error"]["message"].is_string());
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    }
}

#[tokio::test]
async fn an_invalid_token_gets_a_401() {
    let server = MockServer::start().await;
    let key = TestKey::new("k1");
    serve_jwks(&server, &[&key], 1).await;
    let forged = TestKey::new("k1").sign(&user_claims("u1", "ADMIN"));

    let (status, _, body) = call(
        app(&server.uri()),
        "/whoami",
        Some(&format!("Bearer {forged}")),
    )
    .await;

    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn a_valid_token_gives_the_handler_its_claims_and_the_raw_bearer() {
    let server = MockServer::start().await;
    let key = TestKey::new("k1");
    serve_jwks(&server, &[&key], 1).await;
    let token = key.sign(&user_claims("u1", "ADMIN"));

    let (status, _, body) = call(
        app(&server.uri()),
        "/whoami",
        Some(&format!("bearer {token}")),
    )
    .await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"sub": "u1", "userId": "u1", "bearer": token, "admin": true, "service": false})
    );
}

#[tokio::test]
async fn a_service_credential_is_no_user() {
    let server = MockServer::start().await;
    let key = TestKey::new("k1");
    serve_jwks(&server, &[&key], 1).await;
    let mut claims = user_claims("service:payments", "SERVICE");
    claims.email = None;
    let token = key.sign(&claims);

    let (status, _, body) = call(
        app(&server.uri()),
        "/whoami",
        Some(&format!("Bearer {token}")),
    )
    .await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["service"], true);
    assert_eq!(body["admin"], false);
    assert_eq!(body["userId"], Value::Null);
}

#[tokio::test]
async fn unavailable_keys_get_a_503_with_retry_after() {
    let token = TestKey::new("k1").sign(&user_claims("u1", "CUSTOMER"));

    let (status, headers, body) = call(
        app(&dead_url()),
        "/whoami",
        Some(&format!("Bearer {token}")),
    )
    .await;

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(headers.contains_key(header::RETRY_AFTER));
    assert!(!headers.contains_key(header::WWW_AUTHENTICATE));
}

#[tokio::test]
async fn an_optional_caller_is_none_without_a_header_but_a_bad_token_is_still_refused() {
    let server = MockServer::start().await;
    let key = TestKey::new("k1");
    serve_jwks(&server, &[&key], 1).await;
    let token = key.sign(&user_claims("u1", "CUSTOMER"));

    let (status, _, body) = call(app(&server.uri()), "/maybe", None).await;
    assert_eq!((status, body), (StatusCode::OK, json!("anonymous")));
    let (status, _, body) = call(
        app(&server.uri()),
        "/maybe",
        Some(&format!("Bearer {token}")),
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, json!("u1")));
    let (status, _, _) = call(app(&server.uri()), "/maybe", Some("Bearer nope")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[test]
fn caller_helpers_read_the_role_and_hide_the_bearer_from_debug() {
    let customer = Caller::new(user_claims("u1", "CUSTOMER"), "secret-token");
    assert_eq!(customer.role(), Some(Role::Customer));
    assert_eq!(customer.user_id(), Some("u1"));
    assert!(!customer.is_admin() && !customer.is_service());
    assert!(!format!("{customer:?}").contains("secret-token"));

    let service = Caller::new(user_claims("service:payments", "SERVICE"), "t");
    assert_eq!(service.service_id(), Some("payments"));
    assert_eq!((service.role(), service.user_id()), (None, None));

    // A user whose id merely looks like a service's is still a user.
    let lookalike = Caller::new(user_claims("service:payments", "ADMIN"), "t");
    assert!(!lookalike.is_service() && lookalike.is_admin());
    assert_eq!(lookalike.user_id(), Some("service:payments"));
}
