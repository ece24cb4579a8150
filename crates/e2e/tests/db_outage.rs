//! payments_db's whole PostgreSQL cluster stopped (the seed's fault isolation): payments answers
//! 503 on `/ready` and on its routes, while auth, profile and admin, on other databases, keep
//! working; once the cluster is back, payments serves again without a restart. This stops a
//! shared server, so it runs alone (nextest profile `outages`, after every other test; see
//! scripts/test.sh) and always starts the cluster again, even when it fails.

use std::process::Command;
use std::time::Duration;

use e2e::{Platform, ServiceProcess, free_port};
use serde_json::json;
use test_support::{Api, TestDb, eventually};

fn cluster(action: &str) -> bool {
    Command::new("pg_ctlcluster")
        .args(["15", "payments", action, "-m", "fast"])
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts the payments cluster again when dropped, so a failing test never leaves it stopped.
struct StartOnDrop;

impl Drop for StartOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("pg_ctlcluster")
            .args(["15", "payments", "start"])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_payments_database_down_payments_is_503_and_the_other_services_work() {
    let platform = Platform::new();
    let mut auth_env = platform.auth_env_with_clients();
    auth_env.extend([
        (
            "AUTH_BOOTSTRAP_ADMIN_EMAIL".to_string(),
            "ops@outage.test".to_string(),
        ),
        (
            "AUTH_BOOTSTRAP_ADMIN_PASSWORD".into(),
            "a-long-admin-password".into(),
        ),
    ]);
    let auth = ServiceProcess::start("auth-service", &auth_env);
    auth.wait_ready(Duration::from_secs(15)).await;
    let profile = platform.start_profile(&auth);
    let admin_db = TestDb::unborn();
    let admin = ServiceProcess::start("admin-service", &platform.admin_env(&admin_db.url, &auth));
    let payments_port = free_port();
    let psp_port = free_port();
    let _psp = e2e::start_sandbox(psp_port, Some(payments_port), &[]);
    // On the cluster this test stops (every other test database is on the main cluster).
    let payments_db = TestDb::unborn_at("postgresql://postgres@127.0.0.1:5433/postgres");
    let payments_env = platform.payments_env(&payments_db.url, payments_port, &auth, psp_port);
    let payments = ServiceProcess::start("payments-service", &payments_env);
    for service in [&profile, &admin, &payments] {
        service.wait_ready(Duration::from_secs(20)).await;
    }
    let auth_api = Api::new(auth.base.clone());
    let register = |email: &'static str| {
        let auth_api = auth_api.clone();
        async move {
            let reply = auth_api
                .post(
                    "/auth/register",
                    None,
                    &json!({"email": email, "password": "a-long-password", "name": "Outage"}),
                )
                .await;
            assert_eq!(reply.status, 201, "{}", reply.body);
            reply.body["accessToken"].as_str().unwrap().to_string()
        }
    };
    let alice = register("alice-dbdown@example.com").await;
    register("bob-dbdown@example.com").await;
    let payments_api = Api::new(payments.base.clone());
    let body =
        json!({"recipientEmail": "bob-dbdown@example.com", "amount": "10.00", "type": "instant"});
    let before = payments_api.post("/payments", Some(&alice), &body).await;
    assert!(before.status.is_success(), "{}", before.body);

    // The whole cluster of payments_db goes away.
    let _restart = StartOnDrop;
    assert!(cluster("stop"), "pg_ctlcluster 15 payments stop");
    let http = reqwest::Client::new();
    let not_ready = eventually(Duration::from_secs(30), || async {
        let r = http
            .get(format!("{}/ready", payments.base))
            .send()
            .await
            .ok()?;
        (r.status() == 503).then_some(())
    })
    .await;
    assert!(not_ready.is_some(), "payments says it is not ready");
    let listed = payments_api.get("/payments", Some(&alice)).await;
    assert_eq!(listed.status, 503, "{}", listed.body);
    assert!(listed.body["error"]["code"].is_string(), "{}", listed.body);
    let paid = payments_api.post("/payments", Some(&alice), &body).await;
    assert_eq!(paid.status, 503, "{}", paid.body);

    // The others go on: a registration, a login, a profile read, the audit log.
    let carol = register("carol-dbdown@example.com").await;
    let me = eventually(Duration::from_secs(20), || async {
        let reply = Api::new(profile.base.clone())
            .get("/profile/me", Some(&carol))
            .await;
        (reply.status == 200).then_some(reply)
    })
    .await;
    assert!(me.is_some(), "profile serves while payments_db is down");
    let login = auth_api
        .post(
            "/auth/login",
            None,
            &json!({"email": "ops@outage.test", "password": "a-long-admin-password"}),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let ops = login.body["accessToken"].as_str().unwrap().to_string();
    let audit = Api::new(admin.base.clone())
        .get("/admin/audit-logs?limit=5", Some(&ops))
        .await;
    assert_eq!(audit.status, 200, "{}", audit.body);
    for service in [&auth, &profile, &admin] {
        let r = http
            .get(format!("{}/ready", service.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{} stays ready", service.base);
    }

    // Back: payments serves again, without a restart.
    assert!(cluster("start"), "pg_ctlcluster 15 payments start");
    let again = eventually(Duration::from_secs(60), || async {
        let reply = payments_api.post("/payments", Some(&alice), &body).await;
        reply.status.is_success().then_some(reply)
    })
    .await;
    assert!(
        again.is_some(),
        "payments serves again:\n{}",
        payments.logs()
    );
}
