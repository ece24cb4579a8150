//! Bad input gets a clear JSON error and changes nothing; odd but valid input is stored literally.

use serde_json::{Value, json};

use crate::helpers::{error_code, spawn_app};

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(app.url("/auth/register"))
        .header("content-type", "application/json")
        .body(r#"{"email": "a@b.co", "password": "#)
        .send()
        .await
        .unwrap();
    let response = test_support::Reply::read(response).await;
    assert_eq!(response.status, 400);
    assert_eq!(error_code(&response), "malformed_json");
}

#[tokio::test]
async fn a_missing_field_or_a_wrong_type_is_422_naming_the_field() {
    let app = spawn_app().await;
    let missing = app
        .post("/auth/register", &json!({"email": "a@b.co", "name": "A"}))
        .await;
    assert_eq!(missing.status, 422);
    let body: Value = missing.body.clone();
    assert_eq!(body["error"]["fields"][0]["field"], "password");

    let wrong = app
        .post(
            "/auth/register",
            &json!({"email": "a@b.co", "password": 12345678, "name": "A"}),
        )
        .await;
    assert_eq!(wrong.status, 422);
    let body: Value = wrong.body.clone();
    assert_eq!(body["error"]["fields"][0]["field"], "password");

    let role = app
        .post(
            "/auth/register",
            &json!({"email": "a@b.co", "password": "password", "name": "A", "role": "ROOT"}),
        )
        .await;
    assert_eq!(role.status, 422);
    let body: Value = role.body.clone();
    assert_eq!(body["error"]["fields"][0]["field"], "role");
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_413() {
    let app = spawn_app().await;
    let huge = "x".repeat(2 * 1024 * 1024);
    let response = app
        .post(
            "/auth/register",
            &json!({"email": "a@b.co", "password": "password", "name": huge}),
        )
        .await;
    assert_eq!(response.status, 413);
    assert_eq!(error_code(&response), "payload_too_large");
}

#[tokio::test]
async fn a_body_without_json_content_type_is_415() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(app.url("/auth/login"))
        .body("{}")
        .send()
        .await
        .unwrap();
    let response = test_support::Reply::read(response).await;
    assert_eq!(response.status, 415);
    assert_eq!(error_code(&response), "unsupported_media_type");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(app.url("/auth/nothing-here"))
        .send()
        .await
        .unwrap();
    let response = test_support::Reply::read(response).await;
    assert_eq!(response.status, 404);
    assert_eq!(error_code(&response), "not_found");
    let response = app
        .http
        .delete(app.url("/auth/login"))
        .send()
        .await
        .unwrap();
    let response = test_support::Reply::read(response).await;
    assert_eq!(response.status, 405);
    assert_eq!(error_code(&response), "method_not_allowed");
}

#[tokio::test]
async fn sql_metacharacters_and_unicode_are_stored_and_returned_literally() {
    let app = spawn_app().await;
    let name = "Robert'); DROP TABLE users;-- Zoë 日本 🎉 \\ % _ \"";
    let email = "o'brien+ünï@例え.jp";
    let password = "pässwörd'--;🔑";
    let response = app
        .post(
            "/auth/register",
            &json!({"email": email, "password": password, "name": name}),
        )
        .await;
    assert_eq!(response.status, 201);
    let body: Value = response.body.clone();
    assert_eq!(body["user"]["name"], name);
    assert_eq!(body["user"]["email"], email);
    let stored: (String, String) = sqlx::query_as("SELECT email, name FROM users WHERE id = $1")
        .bind(body["user"]["id"].as_str().unwrap())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, (email.to_string(), name.to_string()));
    assert_eq!(app.login(email, password).await.status, 200);
}

#[tokio::test]
async fn system_routes_answer() {
    let app = spawn_app().await;
    test_support::probe::assert_system_routes(&app.base, "auth-service").await;
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let app = spawn_app().await;
    let spec = app.get("/openapi.json").await.body;
    for (path, method) in [
        ("/auth/register", "post"),
        ("/auth/login", "post"),
        ("/auth/refresh", "post"),
        ("/auth/logout", "post"),
        ("/auth/me", "get"),
        ("/auth/service-token", "post"),
        ("/.well-known/jwks.json", "get"),
        ("/users", "get"),
        ("/users/{id}", "get"),
        ("/users/{id}", "patch"),
        ("/users/{id}", "delete"),
        ("/health", "get"),
        ("/ready", "get"),
        ("/metrics", "get"),
    ] {
        assert!(
            spec["paths"][path][method].is_object(),
            "{method} {path} is not documented"
        );
    }
    for schema in [
        "RegisterRequest",
        "Session",
        "User",
        "ErrorBody",
        "UpdateUserRequest",
    ] {
        assert!(
            spec["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
    let register_errors = &spec["paths"]["/auth/register"]["post"]["responses"];
    for status in ["400", "409", "413", "422"] {
        assert!(
            register_errors[status].is_object(),
            "register documents {status}"
        );
    }
}
