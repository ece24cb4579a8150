use serde_json::{Value, json};

use crate::helpers::{error_code, spawn_app, spawn_app_with};

#[tokio::test]
async fn login_returns_a_token_pair() {
    let app = spawn_app().await;
    let registered = app.register("lee@example.com", "lee-password").await;
    let response = app.login("LEE@example.com", "lee-password").await;
    assert_eq!(response.status, 200);
    let body: Value = response.body.clone();
    assert_eq!(body["user"]["id"], registered["user"]["id"]);
    assert_ne!(body["refreshToken"], registered["refreshToken"]);
}

#[tokio::test]
async fn an_unknown_email_and_a_wrong_password_get_the_same_answer() {
    let app = spawn_app().await;
    app.register("known@example.com", "right-password").await;
    let wrong = app.login("known@example.com", "wrong-password").await;
    let unknown = app.login("nobody@example.com", "wrong-password").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    let (wrong, unknown): (Value, Value) = (wrong.body.clone(), unknown.body.clone());
    assert_eq!(wrong, unknown);
    assert_eq!(wrong["error"]["code"], "invalid_credentials");
}

#[tokio::test]
async fn a_legacy_bcrypt_user_logs_in_and_is_rehashed_to_argon2id() {
    let app = spawn_app().await;
    let id = app
        .insert_legacy_user("legacy@example.com", "poc2-password")
        .await;
    assert_eq!(app.login("legacy@example.com", "wrong").await.status, 401);
    let response = app.login("legacy@example.com", "poc2-password").await;
    assert_eq!(response.status, 200);
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "rehashed: {hash}");
    assert_eq!(
        app.login("legacy@example.com", "poc2-password")
            .await
            .status,
        200,
        "the new hash works"
    );
}

#[tokio::test]
async fn legacy_emails_differing_only_by_case_each_log_in_with_their_own_password() {
    let app = spawn_app().await;
    let upper = app
        .insert_legacy_user("Twin@example.com", "upper-password")
        .await;
    let lower = app
        .insert_legacy_user("twin@example.com", "lower-password")
        .await;
    let id_of = |v: Value| v["user"]["id"].as_str().unwrap().to_string();
    let r = app.login("twin@example.com", "lower-password").await;
    assert_eq!(id_of(r.body.clone()), lower);
    let r = app.login("Twin@example.com", "upper-password").await;
    assert_eq!(id_of(r.body.clone()), upper);
    // No exact match: each case variant is tried.
    let r = app.login("TWIN@example.com", "upper-password").await;
    assert_eq!(id_of(r.body.clone()), upper);
    // An exact match is never bypassed by another variant's password.
    assert_eq!(
        app.login("twin@example.com", "upper-password").await.status,
        401
    );
}

#[tokio::test]
async fn repeated_failures_for_one_email_get_429_with_retry_after() {
    let app = spawn_app().await;
    app.register("target@example.com", "the-real-password")
        .await;
    for _ in 0..5 {
        assert_eq!(app.login("target@example.com", "guess").await.status, 401);
    }
    let blocked = app.login("Target@example.com", "the-real-password").await;
    assert_eq!(blocked.status, 429);
    let retry: u64 = blocked.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 900);
    assert_eq!(error_code(&blocked), "too_many_requests");
    assert_eq!(
        app.login("other@example.com", "guess").await.status,
        401,
        "other emails are not blocked"
    );
}

#[tokio::test]
async fn repeated_failures_from_one_client_ip_get_429() {
    let app = spawn_app_with(|s| {
        s.trust_forwarded_for = true;
        s.throttle.max_failures_per_ip = 3;
    })
    .await;
    let from = |ip: &'static str, email: String| {
        app.http
            .post(app.url("/auth/login"))
            .header("x-forwarded-for", ip)
            .json(&json!({"email": email, "password": "guess-guess"}))
            .send()
    };
    for i in 0..3 {
        assert_eq!(
            from("203.0.113.7", format!("u{i}@example.com"))
                .await
                .unwrap()
                .status(),
            401
        );
    }
    let blocked = from("203.0.113.7", "fresh@example.com".into())
        .await
        .unwrap();
    assert_eq!(blocked.status(), 429);
    assert!(blocked.headers().contains_key("retry-after"));
    assert_eq!(
        from("198.51.100.1", "fresh@example.com".into())
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn logins_are_recorded_for_the_audit_log_without_the_password() {
    let app = spawn_app().await;
    let body = app.register("audit@example.com", "audit-password").await;
    app.http
        .post(app.url("/auth/login"))
        .header("user-agent", "audit-test/1.0")
        .json(&json!({"email": "audit@example.com", "password": "audit-password"}))
        .send()
        .await
        .unwrap();
    app.login("audit@example.com", "not-the-password").await;
    let ok = app.outbox("user.logged_in").await;
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0]["userId"], body["user"]["id"]);
    assert_eq!(ok[0]["userAgent"], "audit-test/1.0");
    assert_eq!(ok[0]["ipAddress"], "127.0.0.1");
    let failed = app.outbox("user.login_failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["email"], "audit@example.com");
    let all: Vec<Value> = sqlx::query_scalar("SELECT payload FROM auth.outbox")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    for event in all {
        let text = event.to_string();
        assert!(
            !text.contains("audit-password") && !text.contains("not-the-password"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn the_bootstrap_admin_is_created_once_even_beside_existing_admins() {
    let app = spawn_app().await;
    assert_eq!(
        app.login(crate::helpers::ADMIN_EMAIL, crate::helpers::ADMIN_PASSWORD)
            .await
            .status,
        200
    );
    let config = test_support::spawn::config(platform::Service::Auth, &app.db.url);
    let events = app.broker.settings(&config);
    let second = auth_service::build_with(config, crate::helpers::settings(&app.key_pem), events)
        .await
        .unwrap();
    drop(second);
    let admins: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE role = 'ADMIN'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(admins, 1);

    // A database that has an admin already (a migrated one) still gets the operator's own.
    let mut settings = crate::helpers::settings(&app.key_pem);
    settings.bootstrap_admin = Some(auth_service::settings::BootstrapAdmin {
        email: "operator@example.com".into(),
        password: "operator-password-1".to_string().into(),
    });
    let config = test_support::spawn::config(platform::Service::Auth, &app.db.url);
    let events = app.broker.settings(&config);
    drop(
        auth_service::build_with(config, settings, events)
            .await
            .unwrap(),
    );
    let operator: Option<String> =
        sqlx::query_scalar("SELECT role::text FROM users WHERE email = 'operator@example.com'")
            .fetch_optional(&app.pool)
            .await
            .unwrap();
    assert_eq!(operator.as_deref(), Some("ADMIN"));
}
