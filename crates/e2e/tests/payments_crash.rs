//! Payments killed with SIGKILL while it charges, restarted: no payment is stuck, every accepted
//! payment exists, and none is charged twice. Auth, payments and the PSP sandbox run as the real
//! binaries.

use std::sync::Arc;
use std::time::Duration;

use e2e::{Platform, ServiceProcess, free_port};
use serde_json::{Value, json};
use test_support::{Api, TestDb, eventually};
use tokio::sync::Mutex;

const CLIENT_SECRET: &str = "e2e-payments-secret-0123";

struct Payments {
    env: Vec<(String, String)>,
}

impl Payments {
    fn start(&self) -> ServiceProcess {
        ServiceProcess::start("payments-service", &self.env)
    }
}

async fn token(auth: &ServiceProcess, email: &str) -> String {
    let api = Api::new(auth.base.clone());
    let reply = api
        .post(
            "/auth/register",
            None,
            &json!({"email": email, "password": "a-long-password", "name": email}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body["accessToken"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn payments_killed_mid_charge_leaves_nothing_stuck_and_charges_nothing_twice() {
    let platform = Platform::new();
    let mut auth_env = platform.auth_env();
    auth_env.push((
        "AUTH_SERVICE_CLIENTS".into(),
        format!("payments-service={CLIENT_SECRET}"),
    ));
    let auth = ServiceProcess::start("auth-service", &auth_env);
    auth.wait_ready(Duration::from_secs(10)).await;

    let payments_port = free_port();
    let psp_port = free_port();
    let _sandbox = e2e::start_sandbox(
        psp_port,
        Some(payments_port),
        &[
            ("PSP_SANDBOX_LATENCY_MS", "40"),
            ("PSP_SANDBOX_SETTLE_DELAY_MS", "500"),
            ("PSP_SANDBOX_HANG_MS", "2000"),
        ],
    );
    let payments_db = TestDb::unborn();
    let mut env = platform.broker.env("payments-service");
    env.extend([
        ("PAYMENTS_DATABASE_URL".to_string(), payments_db.url.clone()),
        ("PAYMENTS_SERVICE_PORT".into(), payments_port.to_string()),
        ("AUTH_SERVICE_URL".into(), auth.base.clone()),
        ("PAYMENTS_AUTH_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
        ("PSP_URL".into(), format!("http://127.0.0.1:{psp_port}")),
        ("PSP_WEBHOOK_SECRET".into(), e2e::WEBHOOK_SECRET.into()),
        ("PSP_TIMEOUT_MS".into(), "800".into()),
        ("PAYMENTS_CHARGE_GRACE_MS".into(), "1000".into()),
        ("PAYMENTS_RECONCILE_AFTER_MS".into(), "300".into()),
        ("PAYMENTS_RECONCILE_MAX_MS".into(), "1500".into()),
        ("PAYMENTS_WORKER_POLL_MS".into(), "100".into()),
    ]);
    let payments = Payments { env };
    let mut process = payments.start();
    process.wait_ready(Duration::from_secs(15)).await;
    let api = Api::new(process.base.clone());

    let pool = payments_db.pool().await;
    let alice = token(&auth, "alice-crash@example.com").await;
    token(&auth, "bob-crash@example.com").await;

    // Three rounds: load, then SIGKILL while charges are in flight (ordinary ones, timeouts held
    // by the provider, delayed settlements waiting for their webhook), then a restart.
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    for round in 0..3 {
        let load = (0..24).map(|i| {
            let (api, alice, accepted) = (api.clone(), alice.clone(), accepted.clone());
            let amount = match i % 6 {
                5 => "4000.00",
                4 => "3000.00",
                3 => "5000.00",
                2 => "2001.00",
                _ => "10.00",
            };
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(15 * i)).await;
                let body = json!({"recipientEmail": "bob-crash@example.com", "amount": amount, "type": "instant"});
                let response = api
                    .http
                    .post(api.url("/payments"))
                    .bearer_auth(&alice)
                    .json(&body)
                    .send()
                    .await;
                if let Ok(response) = response
                    && response.status().is_success()
                    && let Ok(body) = response.json::<Value>().await
                {
                    accepted.lock().await.push(body["id"].as_str().unwrap().to_string());
                }
            })
        });
        let load: Vec<_> = load.collect();
        // Killed only once a charge is in flight (a payment `processing`), a little later each
        // round, so that other requests are at other points.
        let answered_before = accepted.lock().await.len();
        let in_flight = eventually(Duration::from_secs(10), || async {
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM payments WHERE status = 'processing'")
                    .fetch_one(&pool)
                    .await
                    .unwrap_or(0);
            let answered = accepted.lock().await.len();
            (n > 0 && answered >= answered_before + 3).then_some(n)
        })
        .await;
        assert!(
            in_flight.is_some(),
            "round {round}: no charge in flight to kill"
        );
        tokio::time::sleep(Duration::from_millis(40 * round)).await;
        process.kill();
        for task in load {
            let _ = task.await;
        }
        process = payments.start();
        process.wait_ready(Duration::from_secs(15)).await;
    }

    let settled = eventually(Duration::from_secs(60), || async {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM payments WHERE status IN ('pending', 'processing')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        (open == 0).then_some(())
    })
    .await;
    let stuck: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, status::text FROM payments WHERE status IN ('pending', 'processing')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        settled.is_some(),
        "stuck after the restarts: {stuck:?}\n{}",
        process.logs()
    );

    let accepted = accepted.lock().await.clone();
    assert!(!accepted.is_empty());
    for id in &accepted {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM payments WHERE id = $1)")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(exists, "payment {id} was answered 2xx and is gone");
    }

    let sandbox = Api::new(format!("http://127.0.0.1:{psp_port}"));
    let charges = sandbox.get("/charges?limit=1000", None).await.body;
    let charges = charges["items"].as_array().unwrap().clone();
    let mut references: Vec<&str> = charges
        .iter()
        .map(|c| c["reference"].as_str().unwrap())
        .collect();
    let total = references.len();
    references.sort();
    references.dedup();
    assert_eq!(references.len(), total, "one charge per payment");
    let rows: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT id, status::text, psp_transaction_id FROM payments")
            .fetch_all(&pool)
            .await
            .unwrap();
    for (id, status, psp_id) in rows {
        let charge = charges.iter().find(|c| c["reference"] == id.as_str());
        match status.as_str() {
            "completed" | "failed" => {
                let charge =
                    charge.unwrap_or_else(|| panic!("{status} payment {id} without a charge"));
                assert_eq!(psp_id.as_deref(), charge["id"].as_str(), "payment {id}");
                let expected = if status == "completed" {
                    "succeeded"
                } else {
                    "declined"
                };
                assert_eq!(charge["status"], expected, "payment {id}");
            }
            other => panic!("payment {id} is {other}"),
        }
    }
}
