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

// Found by scripts/schemathesis.sh.

#[tokio::test]
async fn the_openapi_document_is_complete_and_states_the_input_rules() {
    let app = spawn_app().await;
    let spec = app.get("/openapi.json").await.body;
    test_support::openapi::assert_complete(&spec);
    let register = &spec["components"]["schemas"]["RegisterRequest"]["properties"];
    assert_eq!(register["password"]["minLength"], 8);
    assert_eq!(register["password"]["maxLength"], 128);
    assert_eq!(register["email"]["maxLength"], 254);
    assert!(register["email"]["pattern"].is_string());
    assert!(register["name"]["pattern"].is_string());
    assert_eq!(
        spec["components"]["schemas"]["SelfRegisteredRole"]["enum"],
        json!(["CUSTOMER", "VENDOR"]),
        "self-registration does not offer ADMIN"
    );
    let update = &spec["components"]["schemas"]["UpdateUserRequest"];
    assert_eq!(update["minProperties"], 1);
    let limit = &spec["paths"]["/users"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap()["schema"];
    assert_eq!(
        (limit["minimum"].clone(), limit["maximum"].clone()),
        (json!(1), json!(100))
    );
}

#[tokio::test]
async fn a_nul_in_credentials_or_keys_is_unknown_not_a_server_error() {
    let app = spawn_app().await;
    // PostgreSQL text cannot hold U+0000: a lookup by such a value was a 500.
    let login = app.login("a\u{0}b@example.com", "some-password").await;
    assert_eq!(login.status, 401);
    assert_eq!(error_code(&login), "invalid_credentials");
    let failed = app.outbox("user.login_failed").await;
    assert_eq!(failed.last().unwrap()["email"], "a\u{FFFD}b@example.com");

    let refresh = app
        .post("/auth/refresh", &json!({"refreshToken": "abc\u{0}def"}))
        .await;
    assert_eq!(refresh.status, 401);
    let logout = app
        .post("/auth/logout", &json!({"refreshToken": "abc\u{0}def"}))
        .await;
    assert_eq!(logout.status, 204);

    let admin = app.admin_token().await;
    for path in ["/users/a%00b", "/users?email=a%00b%40example.com"] {
        let reply = app.get_as(path, &admin).await;
        assert_eq!(reply.status, 404, "{path}");
    }
    // A cursor that decodes to a key holding a NUL ("a\0b") was not one this API returned.
    let reply = app.get_as("/users?cursor=YQBi", &admin).await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.body["error"]["fields"][0]["field"], "cursor");
}

#[tokio::test]
async fn a_json_array_is_not_a_body_filled_by_position() {
    let app = spawn_app().await;
    app.register("array@example.com", "array-password").await;
    // serde fills a struct from an array in field order: this logged in.
    let reply = app
        .post(
            "/auth/login",
            &json!(["array@example.com", "array-password"]),
        )
        .await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.body["error"]["fields"][0]["field"], "body");
}

#[tokio::test]
async fn patching_a_user_field_to_null_is_422_not_unchanged() {
    let app = spawn_app().await;
    let user = app.register("nulls@example.com", "nulls-password").await;
    let id = user["user"]["id"].as_str().unwrap();
    let admin = app.admin_token().await;
    for body in [
        json!({"role": null}),
        json!({"name": null}),
        json!({"emailVerified": null}),
    ] {
        let reply = app
            .http
            .patch(app.url(&format!("/users/{id}")))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        let reply = test_support::Reply::read(reply).await;
        assert_eq!(reply.status, 422, "{body}");
        let field = body.as_object().unwrap().keys().next().unwrap().clone();
        assert_eq!(reply.body["error"]["fields"][0]["field"], field.as_str());
    }
}
