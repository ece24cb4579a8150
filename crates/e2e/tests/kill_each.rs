//! Each process of the platform killed with SIGKILL in turn while users register and pay (auth,
//! payments, admin, profile, the PSP sandbox), `mfe dev` starting each again: every payment
//! answered 2xx exists and settles (none stuck in `processing`), every event recorded by a
//! service reaches the audit log exactly once, and every user gets exactly one profile.

use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::dev::{Stage, all_ready};
use serde_json::json;
use test_support::{Api, eventually};
use tokio::sync::Mutex;

async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_process_killed_in_turn_under_load_loses_and_doubles_nothing() {
    let stage = Stage::new();
    std::fs::write(stage.dir.join("topology.env"), "DATABASE_TOPOLOGY=split\n").unwrap();
    stage.run_ok(&["events", "declare"]).await;
    let _dev = stage.start_dev();
    all_ready(&stage).await;

    let auth = Api::new(stage.url("AUTH"));
    let payments = Api::new(stage.url("PAYMENTS"));
    // A registration; None when auth is down (killed) or refuses.
    let register = move |email: String| {
        let auth = auth.clone();
        async move {
            let response = auth
                .http
                .post(auth.url("/auth/register"))
                .json(&json!({"email": email, "password": "a-long-password", "name": "Kill"}))
                .send()
                .await
                .ok()?;
            if response.status() != 201 {
                return None;
            }
            let body: serde_json::Value = response.json().await.ok()?;
            Some((
                body["user"]["id"].as_str()?.to_string(),
                body["accessToken"].as_str()?.to_string(),
            ))
        }
    };
    let (_, alice) = register("alice-kill@example.com".into()).await.unwrap();
    register("bob-kill@example.com".into()).await.unwrap();

    // The load: a registration and a payment, over and over, until told to stop.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let paid = Arc::new(Mutex::new(Vec::<String>::new()));
    let users = Arc::new(Mutex::new(Vec::<String>::new()));
    let load = {
        let (stop, paid, users, payments) =
            (stop.clone(), paid.clone(), users.clone(), payments.clone());
        let register = register.clone();
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                i += 1;
                if let Some((id, _)) = register(format!("load-{i}@example.com")).await {
                    users.lock().await.push(id);
                }
                let response = payments
                    .http
                    .post(payments.url("/payments"))
                    .bearer_auth(&alice)
                    .header("Idempotency-Key", format!("kill-{i}"))
                    .json(&json!({"recipientEmail": "bob-kill@example.com", "amount": "10.00", "type": "instant"}))
                    .send()
                    .await;
                if let Ok(response) = response
                    && response.status().is_success()
                    && let Ok(body) = response.json::<serde_json::Value>().await
                {
                    paid.lock()
                        .await
                        .push(body["id"].as_str().unwrap().to_string());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // Each process in turn: killed once the load has gone through it, started again by mfe dev.
    for name in ["auth", "payments", "admin", "profile", "psp-sandbox"] {
        let before = paid.lock().await.len();
        eventually(Duration::from_secs(30), || async {
            (paid.lock().await.len() >= before + 3).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("the load goes on before {name} is killed"));
        let pid = stage
            .child_pid(name)
            .expect("mfe dev names the child's pid");
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success(), "kill -KILL {name} ({pid})");
        let back = eventually(Duration::from_secs(60), || async {
            stage.child_pid(name).filter(|p| *p != pid)
        })
        .await;
        assert!(back.is_some(), "mfe dev starts {name} again");
        all_ready(&stage).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    load.await.unwrap();

    let [auth_db, payments_db, admin_db, profile_db] = [0, 1, 2, 3].map(|i| &stage.targets[i]);
    let (auth_db, payments_db, admin_db, profile_db) = (
        auth_db.pool().await,
        payments_db.pool().await,
        admin_db.pool().await,
        profile_db.pool().await,
    );
    // Settled: no payment open, every outbox published, the audit log still.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = -1;
    let mut still_since = Instant::now();
    loop {
        assert!(Instant::now() < deadline, "the platform did not settle");
        let open = count(
            &payments_db,
            "SELECT count(*) FROM payments WHERE status IN ('pending', 'processing')",
        )
        .await;
        let mut unpublished = 0;
        for (pool, schema) in [
            (&auth_db, "auth"),
            (&payments_db, "payments"),
            (&admin_db, "admin"),
            (&profile_db, "profile"),
        ] {
            unpublished += count(
                pool,
                &format!("SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL"),
            )
            .await;
        }
        let audited = count(&admin_db, "SELECT count(*) FROM audit_logs").await;
        if open > 0 || unpublished > 0 || audited != last {
            last = audited;
            still_since = Instant::now();
        } else if still_since.elapsed() > Duration::from_secs(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every payment answered 2xx exists and settled.
    let paid = paid.lock().await.clone();
    assert!(paid.len() >= 15, "the load paid: {}", paid.len());
    for id in &paid {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status::text FROM payments WHERE id = $1")
                .bind(id)
                .fetch_optional(&payments_db)
                .await
                .unwrap();
        assert_eq!(status.as_deref(), Some("completed"), "payment {id}");
    }

    // Every event every service recorded is in the audit log, once (its row id is the event id).
    let mut events: Vec<String> = Vec::new();
    for (pool, schema) in [
        (&auth_db, "auth"),
        (&payments_db, "payments"),
        (&admin_db, "admin"),
        (&profile_db, "profile"),
    ] {
        events.extend(
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
                "SELECT id::text FROM {schema}.outbox"
            )))
            .fetch_all(pool)
            .await
            .unwrap(),
        );
    }
    let audited: Vec<(String, i64)> = sqlx::query_as(
        "SELECT id, count(*) OVER (PARTITION BY id) FROM audit_logs WHERE id = ANY($1)",
    )
    .bind(&events)
    .fetch_all(&admin_db)
    .await
    .unwrap();
    assert!(
        audited.iter().all(|(_, n)| *n == 1),
        "an event audited twice"
    );
    let audited: std::collections::HashSet<&str> =
        audited.iter().map(|(id, _)| id.as_str()).collect();
    let missing: Vec<&String> = events
        .iter()
        .filter(|e| !audited.contains(e.as_str()))
        .collect();
    assert!(missing.is_empty(), "events not audited: {missing:?}");

    // Every user registered has exactly one profile.
    let users = users.lock().await.clone();
    let profiles: i64 =
        sqlx::query_scalar("SELECT count(*) FROM user_profiles WHERE user_id = ANY($1)")
            .bind(&users)
            .fetch_one(&profile_db)
            .await
            .unwrap();
    assert_eq!(profiles, users.len() as i64, "one profile per user");
}
