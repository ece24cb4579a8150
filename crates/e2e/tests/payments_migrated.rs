//! A migrated legacy user's legacy payments, listed through the real payments service: the
//! legacy database seeded and migrated by the real `mfe`, auth and payments running on the
//! migrated databases, a legacy user signed in with their POC-2 password.

use std::time::Duration;

use e2e::{Platform, ServiceProcess};
use serde_json::json;
use test_support::Api;

const CLIENT_SECRET: &str = "e2e-payments-secret-0123";

#[tokio::test]
async fn a_migrated_users_legacy_payments_are_listed_with_names() {
    let platform = Platform::new();
    let migrated = platform.migrate_legacy(5);
    let payments_db = &migrated.payments_db;

    let mut auth_env = platform.auth_env();
    auth_env.push((
        "AUTH_SERVICE_CLIENTS".into(),
        format!("payments-service={CLIENT_SECRET}"),
    ));
    let auth = ServiceProcess::start("auth-service", &auth_env);
    let psp_port = e2e::free_port();
    let _sandbox = e2e::start_sandbox(psp_port, None, &[("PSP_SANDBOX_LATENCY_MS", "0")]);
    let mut payments_env = platform.broker.env("payments-service");
    payments_env.extend([
        ("PAYMENTS_DATABASE_URL".to_string(), payments_db.url.clone()),
        ("AUTH_SERVICE_URL".into(), auth.base.clone()),
        ("PAYMENTS_AUTH_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
        ("PSP_WEBHOOK_SECRET".into(), e2e::WEBHOOK_SECRET.into()),
        ("PSP_URL".into(), format!("http://127.0.0.1:{psp_port}")),
    ]);
    let payments = ServiceProcess::start("payments-service", &payments_env);
    auth.wait_ready(Duration::from_secs(10)).await;

    let login = Api::new(auth.base.clone())
        .post(
            "/auth/login",
            None,
            &json!({"email": "alice@legacy.test", "password": "alice-legacy-2024"}),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let token = login.body["accessToken"].as_str().unwrap();
    let alice = login.body["user"]["id"].as_str().unwrap();

    let api = Api::new(payments.base.clone());
    let listed = api.get("/payments?limit=100", Some(token)).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let items = listed.body["items"].as_array().unwrap();
    assert!(
        !items.is_empty(),
        "alice has legacy payments: {}",
        listed.body
    );
    for payment in items {
        let sent = payment["senderId"] == alice;
        assert!(sent || payment["recipientId"] == alice, "{payment}");
        let own_name = if sent {
            &payment["senderName"]
        } else {
            &payment["recipientName"]
        };
        assert_eq!(own_name, "Alice Customer", "{payment}");
        assert!(
            payment["amount"].as_str().unwrap().contains('.'),
            "{payment}"
        );
    }
    let counterpart_named = items
        .iter()
        .any(|p| p["recipientName"] == "Bob Vendor" || p["senderName"] == "Bob Vendor");
    assert!(
        counterpart_named,
        "bob's name comes from auth: {}",
        listed.body
    );

    // Legacy emails that differ only by case are two users: each is paid as written.
    for (email, name) in [
        ("Case@legacy.test", "Casey Upper"),
        ("case@legacy.test", "casey lower"),
    ] {
        let paid = api
            .post(
                "/payments",
                Some(token),
                &json!({"recipientEmail": email, "amount": "1.00", "type": "instant"}),
            )
            .await;
        assert_eq!(paid.status, 201, "{}", paid.body);
        assert_eq!(paid.body["recipientName"], name, "{}", paid.body);
    }

    let first = items[0]["id"].as_str().unwrap();
    let history = api
        .get(&format!("/payments/{first}/transactions"), Some(token))
        .await;
    assert_eq!(history.status, 200, "{}", history.body);
}
