//! The way there and back with the real processes: the platform runs under `mfe dev` on a seeded
//! legacy database (shared topology) while the live POC-2 writes to it; the migration copies,
//! syncs and verifies with the writer running; cutover switches `mfe dev`'s services to their own
//! databases; the test then writes through every service (a registration, a payment through the
//! PSP sandbox, a profile edit, config changes, deletes) and rolls back. Afterwards the legacy
//! database holds every write, the services (restarted by `mfe dev` on the shared topology) serve
//! it, `verify` is exact, and a second rollback writes nothing.

use std::process::Stdio;
use std::time::{Duration, Instant};

use e2e::dev::{ADMIN_EMAIL, ADMIN_PASSWORD, Stage, all_ready, terminate};
use reqwest::Method;
use serde_json::{Value, json};
use test_support::{Api, eventually};

async fn login(api: &Api, email: &str, password: &str) -> Value {
    let reply = api
        .post(
            "/auth/login",
            None,
            &json!({"email": email, "password": password}),
        )
        .await;
    assert_eq!(reply.status, 200, "login {email}: {}", reply.body);
    reply.body
}

async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Nothing in flight: every outbox published and the audit log (which records every event) still
/// for a moment.
async fn settled(pools: &[sqlx::PgPool; 4]) {
    let mut last = -1;
    let mut still_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let mut pending = 0;
        for (pool, schema) in pools.iter().zip(["auth", "payments", "admin", "profile"]) {
            pending += sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL"
            )))
            .fetch_one(pool)
            .await
            .unwrap_or(0);
        }
        let audit = count(&pools[2], "SELECT count(*) FROM audit_logs").await;
        if pending > 0 || audit != last {
            last = audit;
            still_since = Instant::now();
        } else if still_since.elapsed() > Duration::from_secs(2) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the platform did not settle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn there_and_back_with_the_platform_running_all_along_loses_no_write() {
    there_and_back(true).await;
}

/// As the main job does it: the platform first starts after cutover (so admin's audit chain
/// exists only in admin_db, and goes back to legacy with its rows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn there_and_back_with_the_platform_started_after_cutover_loses_no_write() {
    there_and_back(false).await;
}

async fn there_and_back(platform_before_cutover: bool) {
    let stage = Stage::new();
    stage
        .run_ok(&[
            "legacy",
            "seed",
            "--url",
            &stage.legacy.url,
            "--scale",
            "0.01",
            "--seed",
            "11",
        ])
        .await;
    stage.run_ok(&["events", "declare"]).await;

    // The platform on the legacy database, and the live POC-2 writing beside it.
    let start_dev = || stage.start_dev();
    let mut dev = None;
    if platform_before_cutover {
        dev = Some(start_dev());
        all_ready(&stage).await;
        assert_eq!(stage.dev_topology(), "shared");
    }
    let mut load = stage
        .mfe(&[
            "legacy",
            "write-load",
            "--url",
            &stage.legacy.url,
            "--rate",
            "60",
            "--duration",
            "600",
            "--workers",
            "2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for phase in ["prepare", "copy", "sync", "verify"] {
        stage.run_ok(&["migrate", phase]).await;
    }
    let cutover = stage.run_ok(&["migrate", "cutover", "--json"]).await;
    let cutover: Value = serde_json::from_str(&cutover).unwrap();
    assert!(cutover["freezeSeconds"].as_f64().unwrap() > 0.0);
    terminate(&load);
    load.wait().unwrap();
    assert!(stage.topology().contains("split"));
    // mfe dev restarted its services on their own databases (or starts them there).
    if dev.is_none() {
        dev = Some(start_dev());
    }
    all_ready(&stage).await;
    assert_eq!(stage.dev_topology(), "split");
    let pools: [sqlx::PgPool; 4] = [
        stage.targets[0].pool().await,
        stage.targets[1].pool().await,
        stage.targets[2].pool().await,
        stage.targets[3].pool().await,
    ];

    // Writes through every service.
    let auth = Api::new(stage.url("AUTH"));
    let payments = Api::new(stage.url("PAYMENTS"));
    let profile = Api::new(stage.url("PROFILE"));
    let admin = Api::new(stage.url("ADMIN"));
    let registered = auth
        .post(
            "/auth/register",
            None,
            &json!({"email": "after.cutover@rollback.test", "password": "a-long-password-1", "name": "After Cutover"}),
        )
        .await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let token = registered.body["accessToken"].as_str().unwrap().to_string();
    let user_id = registered.body["user"]["id"].as_str().unwrap().to_string();
    let refresh = registered.body["refreshToken"].as_str().map(str::to_string);
    eventually(Duration::from_secs(20), || async {
        (profile.get("/profile/me", Some(&token)).await.status == 200).then_some(())
    })
    .await
    .expect("the default profile appears by event");
    let edited = profile
        .call(
            Method::PATCH,
            "/profile/me",
            Some(&token),
            Some(&json!({"bio": "written after cutover", "phone": "+4915112345678"})),
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    let paid = payments
        .post(
            "/payments",
            Some(&token),
            &json!({"recipientEmail": "alice@legacy.test", "amount": "23.45", "type": "instant", "description": "after cutover"}),
        )
        .await;
    assert!(paid.status == 201 || paid.status == 202, "{}", paid.body);
    let payment_id = paid.body["id"].as_str().unwrap().to_string();
    eventually(Duration::from_secs(30), || async {
        (payments
            .get(&format!("/payments/{payment_id}"), Some(&token))
            .await
            .body["status"]
            == "completed")
            .then_some(())
    })
    .await
    .expect("the payment completes through the sandbox");
    let ops = login(&auth, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let ops_token = ops["accessToken"].as_str().unwrap().to_string();
    for (key, value) in [
        ("rollback.kept", json!({"on": true})),
        ("rollback.gone", json!(1)),
    ] {
        let put = admin
            .call(
                Method::PUT,
                &format!("/admin/config/{key}"),
                Some(&ops_token),
                Some(&json!({"value": value, "description": "after cutover"})),
            )
            .await;
        assert!(put.status == 200 || put.status == 201, "{}", put.body);
    }
    let deleted = admin
        .call(
            Method::DELETE,
            "/admin/config/rollback.gone",
            Some(&ops_token),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    // The most ordinary admin action: deleting users. One the legacy platform had (its audit
    // rows and payments received point to it: legacy's SET NULL), one registered after cutover
    // (its audit rows reach legacy only through the rollback).
    let senders: Vec<String> = sqlx::query_scalar("SELECT DISTINCT sender_id FROM payments")
        .fetch_all(&pools[1])
        .await
        .unwrap();
    let legacy_users: Vec<String> = sqlx::query_scalar(
        "SELECT u.id FROM users u WHERE u.role = 'CUSTOMER' AND u.email NOT IN \
         ('alice@legacy.test', 'after.cutover@rollback.test') ORDER BY u.id",
    )
    .fetch_all(&pools[0])
    .await
    .unwrap();
    let old_user = legacy_users
        .into_iter()
        .find(|u| !senders.contains(u))
        .expect("a legacy customer who sent no payment");
    let brief = auth
        .post(
            "/auth/register",
            None,
            &json!({"email": "brief@rollback.test", "password": "a-long-password-2", "name": "Brief"}),
        )
        .await;
    assert_eq!(brief.status, 201, "{}", brief.body);
    let brief_id = brief.body["user"]["id"].as_str().unwrap().to_string();
    settled(&pools).await;
    for id in [&old_user, &brief_id] {
        let gone = auth
            .call(
                Method::DELETE,
                &format!("/users/{id}"),
                Some(&ops_token),
                None,
            )
            .await;
        assert_eq!(gone.status, 204, "delete {id}: {}", gone.body);
    }
    if let Some(refresh) = &refresh {
        let out = auth
            .post("/auth/logout", None, &json!({"refreshToken": refresh}))
            .await;
        assert!(out.status.is_success(), "logout: {}", out.body);
    }
    settled(&pools).await;

    // Back.
    let (code, out, err) = stage.run(&["migrate", "rollback", "--json"]).await;
    assert_eq!(code, 0, "{err}\n{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert!(
        report["conflicts"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert!(report["freezeSeconds"].as_f64().unwrap() > 0.0);
    let written: u64 = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t["inserted"].as_u64().unwrap()
                + t["updated"].as_u64().unwrap()
                + t["deleted"].as_u64().unwrap()
        })
        .sum();
    assert!(written >= 8, "{report}");
    let by_rules: u64 = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["cleared"].as_u64().unwrap() + t["cascaded"].as_u64().unwrap())
        .sum();
    assert!(
        by_rules >= 1,
        "legacy's SET NULL acted on the deleted users' rows: {report}"
    );
    assert!(stage.topology().contains("DATABASE_TOPOLOGY=shared"));
    let (code, verify, err) = stage.run(&["migrate", "verify", "--json"]).await;
    assert_eq!(code, 0, "verify after the rollback: {err}\n{verify}");

    // The legacy database holds every write.
    let legacy = stage.legacy.pool().await;
    let l = |sql: String| {
        let legacy = legacy.clone();
        async move { count(&legacy, &sql).await }
    };
    assert_eq!(
        l(format!("SELECT count(*) FROM users WHERE id = '{user_id}'")).await,
        1
    );
    assert_eq!(
        l(format!("SELECT count(*) FROM user_profiles WHERE user_id = '{user_id}' AND bio = 'written after cutover'")).await,
        1
    );
    assert_eq!(
        l(format!(
            "SELECT count(*) FROM payments WHERE id = '{payment_id}' AND status = 'completed'"
        ))
        .await,
        1
    );
    assert_eq!(
        l(format!(
            "SELECT count(*) FROM payment_transactions WHERE payment_id = '{payment_id}'"
        ))
        .await,
        3
    );
    assert!(
        l(format!(
            "SELECT count(*) FROM audit_logs WHERE resource_id = '{payment_id}'"
        ))
        .await
            >= 3
    );
    assert_eq!(
        l("SELECT count(*) FROM system_config WHERE key = 'rollback.kept'".into()).await,
        1
    );
    assert_eq!(
        l("SELECT count(*) FROM system_config WHERE key = 'rollback.gone'".into()).await,
        0
    );
    for id in [&old_user, &brief_id] {
        assert_eq!(
            l(format!(
                "SELECT (SELECT count(*) FROM users WHERE id = '{id}') \
                      + (SELECT count(*) FROM audit_logs WHERE user_id = '{id}')"
            ))
            .await,
            0,
            "{id} is deleted in legacy, by legacy's rules"
        );
    }

    // The services, restarted by mfe dev on the shared topology, serve it.
    all_ready(&stage).await;
    assert_eq!(stage.dev_topology(), "shared");
    let again = login(&auth, "after.cutover@rollback.test", "a-long-password-1").await;
    let token = again["accessToken"].as_str().unwrap().to_string();
    let payment = payments
        .get(&format!("/payments/{payment_id}"), Some(&token))
        .await;
    assert_eq!(payment.status, 200, "{}", payment.body);
    assert_eq!(payment.body["status"], "completed");
    let me = profile.get("/profile/me", Some(&token)).await;
    assert_eq!(me.body["bio"], "written after cutover", "{}", me.body);
    let chain = admin
        .get("/admin/audit-logs/verify", Some(&ops_token))
        .await;
    assert_eq!(chain.body["valid"], true, "{}", chain.body);

    // Twice: nothing written.
    let (code, out, err) = stage.run(&["migrate", "rollback", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let again: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(again["alreadyDone"], true, "{again}");
    drop(dev);
}
