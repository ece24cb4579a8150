//! payments_db on a PostgreSQL primary with a synchronous streaming standby made by
//! pg_basebackup (scripts/cluster.sh pg). While users pay, the primary is stopped at once (a
//! crashed host) and the standby promoted. Payments, given both servers in a libpq URL with
//! `target_session_attrs=read-write`, serves again without a restart; every payment answered 2xx
//! is on the new primary, settled, with one charge and one completion. Runs alone (nextest
//! profile `outages`).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{Platform, ServiceProcess, free_port};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use test_support::{Api, eventually};

const PAYMENTS: usize = 150;
const BOB: &str = "bob-failover@example.com";

fn cluster(args: &[&str]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cluster.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg("pg")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/cluster.sh: {e}"));
    assert!(
        out.status.success(),
        "scripts/cluster.sh pg {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_answered_while_the_primary_fails_over_are_all_on_the_promoted_standby_settled_once()
 {
    cluster(&["up"]);
    let platform = Platform::new();
    let auth = ServiceProcess::start("auth-service", &platform.auth_env_with_clients());
    auth.wait_ready(Duration::from_secs(30)).await;
    let database = format!(
        "mfe_failover_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let (payments_port, psp_port) = (free_port(), free_port());
    let _psp = e2e::start_sandbox(psp_port, Some(payments_port), &[]);
    let payments = ServiceProcess::start(
        "payments-service",
        &platform.payments_env(
            &cluster(&["url", &database]),
            payments_port,
            &auth,
            psp_port,
        ),
    );
    payments.wait_ready(Duration::from_secs(30)).await;
    let alice = platform.sign_up(&auth, "alice-failover@example.com").await;
    platform.sign_up(&auth, BOB).await;

    let api = Api::new(payments.base.clone());
    let load = e2e::pay_in_background(
        api.clone(),
        alice.clone(),
        BOB,
        PAYMENTS,
        Duration::from_millis(60),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stopped_at = Instant::now();
    cluster(&["stop", "1"]);
    // A failover manager's delay before it promotes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster(&["promote", "2"]);
    let promoted_at = Instant::now();
    let accepted = load.await.unwrap();
    eprintln!(
        "{} of {PAYMENTS} payments answered 2xx; {} after the promotion",
        accepted.len(),
        accepted.iter().filter(|(_, at)| *at > promoted_at).count()
    );
    assert!(
        accepted.iter().any(|(_, at)| *at < stopped_at),
        "payments were answered before the primary stopped"
    );
    assert!(
        accepted.iter().any(|(_, at)| *at > promoted_at),
        "payments serves again after the promotion, without a restart\n{}",
        payments.logs()
    );
    let late = api
        .post(
            "/payments",
            Some(&alice),
            &json!({"recipientEmail": BOB, "amount": "10.00", "type": "instant"}),
        )
        .await;
    assert!(late.status.is_success(), "{}", late.body);
    payments.wait_ready(Duration::from_secs(10)).await;

    // Node 2 alone holds the data now.
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&format!("postgresql://postgres@127.0.0.1:5802/{database}"))
        .await
        .unwrap();
    let settled = eventually(Duration::from_secs(60), || async {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM payments WHERE status IN ('pending', 'processing')",
        )
        .fetch_one(&pool)
        .await
        .ok()?;
        (open == 0).then_some(())
    })
    .await;
    assert!(
        settled.is_some(),
        "payments left unsettled\n{}",
        payments.logs()
    );
    let sandbox = Api::new(format!("http://127.0.0.1:{psp_port}"));
    let charges = sandbox.get("/charges?limit=1000", None).await.body;
    let charges = charges["items"].as_array().unwrap().clone();
    for (id, _) in &accepted {
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT status::text, psp_transaction_id FROM payments WHERE id = $1")
                .bind(id)
                .fetch_optional(&pool)
                .await
                .unwrap();
        let (status, psp_id) =
            row.unwrap_or_else(|| panic!("payment {id} was answered 2xx and is not on node 2"));
        assert_eq!(status, "completed", "payment {id}");
        let charged: Vec<&Value> = charges
            .iter()
            .filter(|c| c["reference"] == id.as_str())
            .collect();
        assert_eq!(charged.len(), 1, "payment {id} charged once");
        assert_eq!(psp_id.as_deref(), charged[0]["id"].as_str(), "payment {id}");
        let completions: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM payment_transactions WHERE payment_id = $1 AND status = 'completed'",
        )
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(completions, 1, "payment {id} completed once");
    }
}
