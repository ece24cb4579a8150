//! The audit log of the whole platform, with the real processes: a legacy database seeded and
//! migrated by `mfe`, then auth, profile, payments, the PSP sandbox and admin running. What the
//! users do lands in admin's log, once per event, with the right fields; the migrated legacy rows
//! are anchored and the chain verifies.

use std::time::Duration;

use e2e::{Platform, ServiceProcess};
use serde_json::{Value, json};
use test_support::{Api, eventually};

const PAYMENTS_SECRET: &str = "e2e-payments-secret-0123";
const ADMIN_SECRET: &str = "e2e-admin-secret-0123456";

async fn login(auth: &Api, email: &str, password: &str) -> (String, String) {
    let reply = auth
        .post(
            "/auth/login",
            None,
            &json!({"email": email, "password": password}),
        )
        .await;
    assert_eq!(reply.status, 200, "{email}: {}", reply.body);
    (
        reply.body["accessToken"].as_str().unwrap().to_string(),
        reply.body["user"]["id"].as_str().unwrap().to_string(),
    )
}

/// The audit rows matching `filter`, once there are `n`.
async fn rows(admin: &Api, token: &str, filter: &str, n: usize) -> Vec<Value> {
    let path = format!("/admin/audit-logs?limit=100&{filter}");
    eventually(Duration::from_secs(20), || async {
        let reply = admin.get(&path, Some(token)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let items = reply.body["items"].as_array().cloned().unwrap_or_default();
        (items.len() >= n).then_some(items)
    })
    .await
    .unwrap_or_else(|| panic!("{n} audit rows for {filter}"))
}

#[tokio::test]
async fn what_users_do_on_the_platform_lands_once_in_the_audit_log() {
    let platform = Platform::new();
    let migrated = platform.migrate_legacy(9);
    let (legacy, payments_db, admin_db) =
        (&migrated.legacy, &migrated.payments_db, &migrated.admin_db);
    let legacy_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_logs")
        .fetch_one(&legacy.pool().await)
        .await
        .unwrap();

    let mut auth_env = platform.auth_env();
    auth_env.push((
        "AUTH_SERVICE_CLIENTS".into(),
        format!("payments-service={PAYMENTS_SECRET},admin-service={ADMIN_SECRET}"),
    ));
    let auth = ServiceProcess::start("auth-service", &auth_env);
    // Admin first: its queue must be bound before the others publish.
    let mut admin_env = platform.broker.env("admin-service");
    admin_env.extend([
        ("ADMIN_DATABASE_URL".to_string(), admin_db.url.clone()),
        ("AUTH_SERVICE_URL".into(), auth.base.clone()),
        ("ADMIN_AUTH_CLIENT_SECRET".into(), ADMIN_SECRET.into()),
    ]);
    let admin = ServiceProcess::start("admin-service", &admin_env);
    admin.wait_ready(Duration::from_secs(15)).await;
    let profile = platform.start_profile(&auth);
    let psp_port = e2e::free_port();
    let _sandbox = e2e::start_sandbox(psp_port, None, &[("PSP_SANDBOX_LATENCY_MS", "0")]);
    let mut payments_env = platform.broker.env("payments-service");
    payments_env.extend([
        ("PAYMENTS_DATABASE_URL".to_string(), payments_db.url.clone()),
        ("AUTH_SERVICE_URL".into(), auth.base.clone()),
        ("PAYMENTS_AUTH_CLIENT_SECRET".into(), PAYMENTS_SECRET.into()),
        ("PSP_WEBHOOK_SECRET".into(), e2e::WEBHOOK_SECRET.into()),
        ("PSP_URL".into(), format!("http://127.0.0.1:{psp_port}")),
    ]);
    let payments = ServiceProcess::start("payments-service", &payments_env);
    for service in [&auth, &profile, &payments] {
        service.wait_ready(Duration::from_secs(15)).await;
    }
    let (auth_api, admin_api) = (Api::new(auth.base.clone()), Api::new(admin.base.clone()));
    let (root, _) = login(&auth_api, "admin@legacy.test", "admin-legacy-2024").await;

    // The migrated legacy rows are served as they are, anchored at admin's first start.
    let verified = admin_api.get("/admin/audit-logs/verify", Some(&root)).await;
    assert_eq!(verified.body["valid"], true, "{}", verified.body);
    assert_eq!(verified.body["anchoredRows"], legacy_rows);

    // auth: a new user registers; profile: its default profile, then a change to it.
    let email = format!("dora-{}@example.com", uuid::Uuid::new_v4().simple());
    let registered = auth_api
        .post(
            "/auth/register",
            None,
            &json!({"email": email, "password": "a-long-password", "name": "Dora Explorer"}),
        )
        .await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let dora = registered.body["user"]["id"].as_str().unwrap().to_string();
    let dora_token = registered.body["accessToken"].as_str().unwrap().to_string();
    let profile_api = Api::new(profile.base.clone());
    let changed = eventually(Duration::from_secs(15), || async {
        let reply = profile_api
            .call(
                reqwest::Method::PATCH,
                "/profile/me",
                Some(&dora_token),
                Some(&json!({"bio": "Maps"})),
            )
            .await;
        (reply.status == 200).then_some(reply)
    })
    .await;
    assert!(
        changed.is_some(),
        "dora's profile exists by event and can change"
    );
    let joined = rows(
        &admin_api,
        &root,
        &format!("action=user.registered&userId={dora}"),
        1,
    )
    .await;
    assert_eq!(joined[0]["details"]["userName"], "Dora Explorer");
    assert_eq!(joined[0]["details"]["email"], email);
    let profile_rows = rows(
        &admin_api,
        &root,
        &format!("action=profile.updated&userId={dora}"),
        1,
    )
    .await;
    assert_eq!(profile_rows[0]["resourceType"], "user_profile");
    assert_eq!(profile_rows[0]["details"]["userName"], "Dora Explorer");

    // payments: alice pays bob; the payment's trail is created, processing, completed.
    let (alice_token, alice) = login(&auth_api, "alice@legacy.test", "alice-legacy-2024").await;
    let paid = Api::new(payments.base.clone())
        .post(
            "/payments",
            Some(&alice_token),
            &json!({"recipientEmail": "bob@legacy.test", "amount": "5.00", "type": "instant"}),
        )
        .await;
    assert!(paid.status == 201 || paid.status == 202, "{}", paid.body);
    let payment = paid.body["id"].as_str().unwrap();
    let trail = rows(
        &admin_api,
        &root,
        &format!("resourceType=payment&resourceId={payment}"),
        3,
    )
    .await;
    let mut steps: Vec<String> = trail
        .iter()
        .map(|r| match r["action"].as_str().unwrap() {
            "payment.created" => "created".to_string(),
            _ => r["details"]["to"].as_str().unwrap().to_string(),
        })
        .collect();
    steps.reverse();
    assert_eq!(steps, ["created", "processing", "completed"], "{trail:?}");
    for row in &trail {
        assert_eq!(row["userId"], alice);
        assert_eq!(row["details"]["userName"], "Alice Customer");
    }
    let detail = admin_api
        .get(
            &format!("/admin/audit-logs/{}", trail[2]["id"].as_str().unwrap()),
            Some(&root),
        )
        .await;
    assert_eq!(
        detail.body["user"]["email"], "alice@legacy.test",
        "{}",
        detail.body
    );

    // A customer knocking on admin's door is itself in the log.
    let refused = admin_api.get("/admin/config", Some(&alice_token)).await;
    assert_eq!(refused.status, 403);
    let denied = rows(
        &admin_api,
        &root,
        &format!("action=admin.access_denied&userId={alice}"),
        1,
    )
    .await;
    assert_eq!(denied[0]["resourceId"], "/admin/config");

    // Once per event: no event id twice, and the chain holds.
    let admin_pool = admin_db.pool().await;
    let doubled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT resource_id, action, details->>'to' FROM audit_logs \
         WHERE resource_id = $1 GROUP BY 1, 2, 3 HAVING count(*) > 1) d",
    )
    .bind(payment)
    .fetch_one(&admin_pool)
    .await
    .unwrap();
    assert_eq!(doubled, 0);
    let verified = admin_api.get("/admin/audit-logs/verify", Some(&root)).await;
    assert_eq!(verified.body["valid"], true, "{}", verified.body);
    assert!(verified.body["chainedRows"].as_u64().unwrap() >= 6);
}
