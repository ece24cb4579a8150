use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_client::{AuthClient, ClientError, ServiceCredentials};
use axum::http::StatusCode;
use platform::ApiError;
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

const SECRET: &str = "s3cret-never-shown";

fn client(server: &MockServer) -> AuthClient {
    AuthClient::new(&server.uri())
        .unwrap()
        .with_credentials(ServiceCredentials::new("payments", SECRET))
}

/// `POST /auth/service-token` answers the given tokens in turn (the last one forever after).
async fn issue_service_tokens(server: &MockServer, tokens: &[&str]) {
    for (i, token) in tokens.iter().enumerate() {
        let mock = Mock::given(method("POST"))
            .and(path("/auth/service-token"))
            .and(body_json(
                json!({"clientId": "payments", "clientSecret": SECRET}),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({"accessToken": token, "tokenType": "Bearer", "expiresIn": 900}),
            ));
        let mock = if i + 1 < tokens.len() {
            mock.up_to_n_times(1).expect(1)
        } else {
            mock.expect(1)
        };
        mock.mount(server).await;
    }
}

async fn serve_user(server: &MockServer, token: &str, id: &str, times: u64) {
    Mock::given(method("GET"))
        .and(path(format!("/users/{id}")))
        .and(header("authorization", format!("Bearer {token}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(user(id)))
        .expect(times)
        .mount(server)
        .await;
}

async fn no_such_user(server: &MockServer, token: &str, id: &str, times: u64) {
    Mock::given(method("GET"))
        .and(path(format!("/users/{id}")))
        .and(header("authorization", format!("Bearer {token}")))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(error_body("not_found", "user not found")),
        )
        .expect(times)
        .mount(server)
        .await;
}

#[tokio::test]
async fn me_returns_the_user_of_the_callers_own_token() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/auth/me"))
        .and(header("authorization", "Bearer users-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(user("u1")))
        .expect(1)
        .mount(&server)
        .await;

    let me = AuthClient::new(&server.uri())
        .unwrap()
        .me("users-token")
        .await;

    assert_eq!(me.unwrap(), Some(user("u1")));
}

#[tokio::test]
async fn me_is_none_when_auth_refuses_the_token_or_the_user_is_gone() {
    let server = MockServer::start().await;
    for (token, status) in [("refused", 401), ("deleted", 404)] {
        Mock::given(method("GET"))
            .and(path("/auth/me"))
            .and(header("authorization", format!("Bearer {token}")))
            .respond_with(ResponseTemplate::new(status).set_body_json(error_body("x", "y")))
            .expect(1)
            .mount(&server)
            .await;
    }
    let client = AuthClient::new(&server.uri()).unwrap();

    assert_eq!(client.me("refused").await.unwrap(), None);
    assert_eq!(client.me("deleted").await.unwrap(), None);
}

#[tokio::test]
async fn an_unexpected_answer_names_the_call_and_carries_auths_message() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/auth/me"))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(error_body("forbidden", "a service credential has no user")),
        )
        .mount(&server)
        .await;

    let error = AuthClient::new(&server.uri())
        .unwrap()
        .me("svc")
        .await
        .unwrap_err();

    match &error {
        ClientError::Status {
            call,
            status,
            code,
            message,
        } => {
            assert_eq!((*call, *status), ("GET /auth/me", 403));
            assert_eq!(code.as_deref(), Some("forbidden"));
            assert_eq!(message, "a service credential has no user");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!error.is_unavailable());
}

#[tokio::test]
async fn a_user_is_fetched_once_with_one_service_token_and_then_served_from_the_cache() {
    let server = MockServer::start().await;
    issue_service_tokens(&server, &["svc-1"]).await;
    serve_user(&server, "svc-1", "u1", 1).await;
    serve_user(&server, "svc-1", "u2", 1).await;
    let client = client(&server);

    assert_eq!(client.user("u1").await.unwrap(), Some(user("u1")));
    assert_eq!(client.user("u1").await.unwrap(), Some(user("u1")));
    assert_eq!(client.user("u2").await.unwrap(), Some(user("u2")));
}

#[tokio::test]
async fn an_unknown_user_is_none() {
    let server = MockServer::start().await;
    issue_service_tokens(&server, &["svc-1"]).await;
    no_such_user(&server, "svc-1", "ghost", 1).await;
    let client = client(&server);

    assert_eq!(client.user("ghost").await.unwrap(), None);
    assert_eq!(client.user("ghost").await.unwrap(), None);
}

#[tokio::test]
async fn misses_are_not_cached_when_the_negative_ttl_is_zero() {
    let server = MockServer::start().await;
    issue_service_tokens(&server, &["svc-1"]).await;
    no_such_user(&server, "svc-1", "ghost", 2).await;
    let client = client(&server).with_user_ttl(Duration::from_secs(300), Duration::ZERO);

    assert_eq!(client.user("ghost").await.unwrap(), None);
    assert_eq!(client.user("ghost").await.unwrap(), None);
}

#[tokio::test]
async fn an_invalidated_user_is_fetched_again() {
    let server = MockServer::start().await;
    issue_service_tokens(&server, &["svc-1"]).await;
    serve_user(&server, "svc-1", "u1", 2).await;
    let client = client(&server);

    client.user("u1").await.unwrap();
    client.invalidate_user("u1").await;
    client.user("u1").await.unwrap();
}

#[tokio::test]
async fn a_refused_service_token_is_renewed_once() {
    let server = MockServer::start().await;
    issue_service_tokens(&server, &["svc-old", "svc-new"]).await;
    Mock::given(method("GET"))
        .and(path("/users/u1"))
        .and(header("authorization", "Bearer svc-old"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(error_body("unauthorized", "expired")),
        )
        .expect(1)
        .mount(&server)
        .await;
    serve_user(&server, "svc-new", "u1", 1).await;
    serve_user(&server, "svc-new", "u2", 1).await;
    let client = client(&server);

    assert_eq!(client.user("u1").await.unwrap(), Some(user("u1")));
    assert_eq!(client.user("u2").await.unwrap(), Some(user("u2")));
}

#[tokio::test]
async fn a_service_token_refused_twice_is_an_error_not_a_loop() {
    let server = MockServer::start().await;
    issue_service_tokens(&server, &["svc-1", "svc-2"]).await;
    Mock::given(method("GET"))
        .and(path("/users/u1"))
        .respond_with(ResponseTemplate::new(401).set_body_json(error_body("unauthorized", "no")))
        .expect(2)
        .mount(&server)
        .await;

    let error = client(&server).user("u1").await.unwrap_err();

    assert!(
        matches!(error, ClientError::Status { status: 401, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn rejected_credentials_are_named_without_the_secret() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/service-token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(error_body("unauthorized", "no")))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);

    let error = client.user("u1").await.unwrap_err();

    assert!(
        matches!(&error, ClientError::CredentialsRejected { client_id } if client_id == "payments")
    );
    for text in [
        error.to_string(),
        format!("{error:?}"),
        format!("{client:?}"),
    ] {
        assert!(!text.contains(SECRET), "{text}");
    }
    assert!(!format!("{:?}", ServiceCredentials::new("id", SECRET)).contains(SECRET));
}

#[tokio::test]
async fn looking_users_up_needs_credentials() {
    let server = MockServer::start().await;
    let client = AuthClient::new(&server.uri()).unwrap();

    assert!(matches!(
        client.user("u1").await,
        Err(ClientError::NoCredentials)
    ));
}

#[tokio::test]
async fn concurrent_lookups_of_one_user_share_one_request() {
    let server = MockServer::start().await;
    issue_service_tokens(&server, &["svc-1"]).await;
    Mock::given(method("GET"))
        .and(path("/users/u1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(user("u1"))
                .set_delay(Duration::from_millis(100)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = Arc::new(client(&server));

    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.user("u1").await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), Some(user("u1")));
    }
}

#[tokio::test]
async fn an_id_cannot_change_the_route_called() {
    let server = MockServer::start().await;
    issue_service_tokens(&server, &["svc-1"]).await;
    no_such_user(&server, "svc-1", "a%2F..%2Fauth%2Fme", 1).await;
    let client = client(&server);

    assert_eq!(client.user("a/../auth/me").await.unwrap(), None);
    assert_eq!(client.user("..").await.unwrap(), None);
}

#[tokio::test]
async fn an_unreachable_auth_is_an_unavailability() {
    let client = AuthClient::new(&dead_url())
        .unwrap()
        .with_credentials(ServiceCredentials::new("payments", SECRET));

    let error = client.user("u1").await.unwrap_err();

    assert!(
        matches!(
            &error,
            ClientError::Unreachable {
                call: "POST /auth/service-token",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_unavailable());
    let api = ApiError::from(error);
    assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(api.code, auth_client::AUTH_UNAVAILABLE);
    assert!(matches!(
        client.me("t").await,
        Err(ClientError::Unreachable { .. })
    ));
}

#[tokio::test]
async fn a_slow_auth_times_out() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/auth/me"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(user("u1"))
                .set_delay(Duration::from_secs(5)),
        )
        .mount(&server)
        .await;
    let client = AuthClient::new(&server.uri()).unwrap().with_timeout(SHORT);
    let started = Instant::now();

    let error = client.me("t").await.unwrap_err();

    assert!(
        matches!(error, ClientError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

async fn serve_email(server: &MockServer, email: &str, answer: ResponseTemplate, times: u64) {
    Mock::given(method("GET"))
        .and(path("/users"))
        .and(query_param("email", email))
        .and(header("authorization", "Bearer svc-1"))
        .respond_with(answer)
        .expect(times)
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_user_found_by_email_is_cached_by_email_as_written_and_by_id() {
    let server = MockServer::start().await;
    issue_service_tokens(&server, &["svc-1"]).await;
    let found = ResponseTemplate::new(200).set_body_json(user("u1"));
    serve_email(&server, "u1@example.com", found, 1).await;
    // Legacy emails may differ only by case and belong to two users: another case is asked
    // again, never answered from the first one's entry.
    let other = ResponseTemplate::new(200).set_body_json(user("U1"));
    serve_email(&server, "U1@example.com", other, 1).await;
    let client = client(&server);

    let by_email = client.user_by_email(" u1@example.com ").await.unwrap();
    assert_eq!(by_email, Some(user("u1")));
    assert_eq!(
        client.user_by_email("u1@example.com").await.unwrap(),
        Some(user("u1"))
    );
    assert_eq!(client.user("u1").await.unwrap(), Some(user("u1")));
    assert_eq!(
        client.user_by_email("U1@example.com").await.unwrap(),
        Some(user("U1"))
    );
}

#[tokio::test]
async fn an_unknown_email_is_none_and_an_invalidated_user_is_asked_again() {
    let server = MockServer::start().await;
    issue_service_tokens(&server, &["svc-1"]).await;
    let missing =
        ResponseTemplate::new(404).set_body_json(error_body("not_found", "user not found"));
    serve_email(&server, "nobody@example.com", missing, 1).await;
    let found = ResponseTemplate::new(200).set_body_json(user("u2"));
    serve_email(&server, "u2@example.com", found, 2).await;
    let client = client(&server);

    assert_eq!(
        client.user_by_email("nobody@example.com").await.unwrap(),
        None
    );
    assert_eq!(
        client.user_by_email("nobody@example.com").await.unwrap(),
        None
    );
    client.user_by_email("u2@example.com").await.unwrap();
    client.invalidate_user("u2").await;
    client.user_by_email("u2@example.com").await.unwrap();
}

#[tokio::test]
async fn a_cached_user_outlives_an_auth_outage_and_an_uncached_one_is_unavailable() {
    let server = MockServer::start().await;
    issue_service_tokens(&server, &["svc-1"]).await;
    let found = ResponseTemplate::new(200).set_body_json(user("u3"));
    serve_email(&server, "u3@example.com", found, 1).await;
    let client = client(&server);
    client.user_by_email("u3@example.com").await.unwrap();
    server.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;

    assert_eq!(
        client.user_by_email("u3@example.com").await.unwrap(),
        Some(user("u3"))
    );
    assert_eq!(client.user("u3").await.unwrap(), Some(user("u3")));
    let error = client.user_by_email("u4@example.com").await.unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");
}
