use serde_json::{Value, json};

use crate::helpers::{error_code, spawn_app};

#[tokio::test]
async fn registering_returns_the_user_and_a_token_pair() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/auth/register",
            &json!({"email": "ana@example.com", "password": "s3cure-pass", "name": "Ana"}),
        )
        .await;
    assert_eq!(response.status, 201);
    let body: Value = response.body.clone();
    assert_eq!(body["user"]["email"], "ana@example.com");
    assert_eq!(body["user"]["role"], "CUSTOMER");
    assert_eq!(body["user"]["emailVerified"], false);
    assert!(body["user"].get("passwordHash").is_none(), "never the hash");
    assert!(body["accessToken"].as_str().unwrap().split('.').count() == 3);
    assert!(body["refreshToken"].as_str().unwrap().len() >= 43);
    assert_eq!(body["expiresIn"], 900);

    let me: Value = app
        .get_as("/auth/me", body["accessToken"].as_str().unwrap())
        .await
        .body;
    assert_eq!(me, body["user"]);
}

#[tokio::test]
async fn passwords_are_stored_as_argon2id() {
    let app = spawn_app().await;
    app.register("hash@example.com", "plain-text-pw").await;
    let hash: String =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE email = 'hash@example.com'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
}

#[tokio::test]
async fn a_vendor_may_register_but_an_admin_may_not() {
    let app = spawn_app().await;
    let vendor = app.post("/auth/register", &json!({"email": "v@example.com", "password": "vendor-pass", "name": "V", "role": "VENDOR"})).await;
    assert_eq!(vendor.status, 201);
    let body: Value = vendor.body.clone();
    assert_eq!(body["user"]["role"], "VENDOR");

    let admin = app.post("/auth/register", &json!({"email": "a@example.com", "password": "admin-pass", "name": "A", "role": "ADMIN"})).await;
    assert_eq!(admin.status, 422);
    let body: Value = admin.body.clone();
    assert_eq!(body["error"]["fields"][0]["field"], "role");
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE email = 'a@example.com'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn emails_are_trimmed_kept_as_given_and_unique_regardless_of_case() {
    let app = spawn_app().await;
    let body = app
        .register("  Mixed.Case@Example.com ", "password-1")
        .await;
    assert_eq!(body["user"]["email"], "Mixed.Case@Example.com");
    let again = app
        .post(
            "/auth/register",
            &json!({"email": "mixed.case@example.COM", "password": "password-2", "name": "B"}),
        )
        .await;
    assert_eq!(again.status, 409);
    assert_eq!(error_code(&again), "email_taken");
}

#[tokio::test]
async fn concurrent_registrations_of_one_email_in_two_cases_create_one_user() {
    let app = spawn_app().await;
    let (body_a, body_b) = (
        json!({"email": "race@example.com", "password": "password-1", "name": "A"}),
        json!({"email": "RACE@example.com", "password": "password-2", "name": "B"}),
    );
    let (a, b) = (
        app.post("/auth/register", &body_a),
        app.post("/auth/register", &body_b),
    );
    let (a, b) = tokio::join!(a, b);
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [201, 409]);
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE lower(email) = 'race@example.com'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn invalid_fields_are_all_named_in_one_422() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/auth/register",
            &json!({"email": "not-an-email", "password": "short", "name": ""}),
        )
        .await;
    assert_eq!(response.status, 422);
    let body: Value = response.body.clone();
    let fields: Vec<&str> = body["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "password", "name"]);

    for (password, name, field) in [
        ("x".repeat(129), "ok".to_string(), "password"),
        ("long-enough".to_string(), "n".repeat(101), "name"),
        ("long-enough".to_string(), "   ".to_string(), "name"),
    ] {
        let response = app
            .post(
                "/auth/register",
                &json!({"email": "f@example.com", "password": password, "name": name}),
            )
            .await;
        assert_eq!(response.status, 422, "{field}");
        let body: Value = response.body.clone();
        assert_eq!(body["error"]["fields"][0]["field"], field);
    }
    let ok = app.post("/auth/register", &json!({"email": "f@example.com", "password": "x".repeat(128), "name": "n".repeat(100)})).await;
    assert_eq!(ok.status, 201, "the limits themselves are allowed");
}

#[tokio::test]
async fn registration_records_a_user_registered_event_without_secrets() {
    let app = spawn_app().await;
    let body = app.register("evt@example.com", "event-pass-1").await;
    let events = app.outbox("user.registered").await;
    let event = events
        .iter()
        .find(|e| e["email"] == "evt@example.com")
        .expect("event recorded");
    assert_eq!(event["userId"], body["user"]["id"]);
    assert_eq!(event["role"], "CUSTOMER");
    assert_eq!(event["name"], "Test User");
    assert!(!event.to_string().contains("event-pass-1"));
}
