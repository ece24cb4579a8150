//! Faults with the real processes: the PSP sandbox stopped while payments are made and started
//! again (every payment settles once it is back, none is charged twice), and auth stopped (payments
//! serves the users it has cached and refuses the others with 503, writing nothing half).

use std::time::Duration;

use e2e::{Platform, ServiceProcess, free_port};
use serde_json::{Value, json};
use test_support::{Api, TestDb, eventually};

const CLIENT_SECRET: &str = "e2e-faults-payments-secret";

struct Stage {
    platform: Platform,
    payments_db: TestDb,
    payments_port: u16,
    psp_port: u16,
    auth_port: u16,
    psp_data: std::path::PathBuf,
}

impl Stage {
    fn new() -> Self {
        let platform = Platform::new();
        let psp_data = platform.auth_data.with_extension("psp.journal");
        Self {
            platform,
            payments_db: TestDb::unborn(),
            payments_port: free_port(),
            psp_port: free_port(),
            auth_port: free_port(),
            psp_data,
        }
    }

    fn auth(&self) -> ServiceProcess {
        let mut env = self.platform.auth_env();
        env.push((
            "AUTH_SERVICE_CLIENTS".into(),
            format!("payments-service={CLIENT_SECRET}"),
        ));
        // A fixed port: payments finds it again after a restart.
        env.push(("AUTH_SERVICE_PORT".into(), self.auth_port.to_string()));
        ServiceProcess::start("auth-service", &env)
    }

    /// The sandbox on its fixed port, with its journal: a restart keeps its charges.
    fn psp(&self) -> ServiceProcess {
        e2e::start_sandbox(
            self.psp_port,
            Some(self.payments_port),
            &[
                ("PSP_SANDBOX_LATENCY_MS", "0"),
                (
                    "PSP_SANDBOX_DATA_FILE",
                    &self.psp_data.display().to_string(),
                ),
            ],
        )
    }

    fn payments(&self, auth: &ServiceProcess) -> ServiceProcess {
        let mut env = self.platform.broker.env("payments-service");
        env.extend([
            (
                "PAYMENTS_DATABASE_URL".to_string(),
                self.payments_db.url.clone(),
            ),
            (
                "PAYMENTS_SERVICE_PORT".into(),
                self.payments_port.to_string(),
            ),
            ("AUTH_SERVICE_URL".into(), auth.base.clone()),
            ("PAYMENTS_AUTH_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
            (
                "PSP_URL".into(),
                format!("http://127.0.0.1:{}", self.psp_port),
            ),
            ("PSP_WEBHOOK_SECRET".into(), e2e::WEBHOOK_SECRET.into()),
            ("PSP_TIMEOUT_MS".into(), "500".into()),
            ("PAYMENTS_RECONCILE_AFTER_MS".into(), "300".into()),
            ("PAYMENTS_RECONCILE_MAX_MS".into(), "1000".into()),
            ("PAYMENTS_WORKER_POLL_MS".into(), "100".into()),
        ]);
        ServiceProcess::start("payments-service", &env)
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.psp_data);
    }
}

async fn register(auth: &ServiceProcess, email: &str) -> String {
    let reply = Api::new(auth.base.clone())
        .post(
            "/auth/register",
            None,
            &json!({"email": email, "password": "a-long-password", "name": email}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body["accessToken"].as_str().unwrap().to_string()
}

async fn pay(api: &Api, token: &str, to: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = api
        .http
        .post(api.url("/payments"))
        .bearer_auth(token)
        .json(&json!({"recipientEmail": to, "amount": "10.00", "type": "instant"}));
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("payments answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_made_while_the_psp_is_down_settle_once_it_is_back_and_none_twice() {
    let stage = Stage::new();
    let auth = stage.auth();
    auth.wait_ready(Duration::from_secs(15)).await;
    let mut psp = stage.psp();
    let payments = stage.payments(&auth);
    payments.wait_ready(Duration::from_secs(20)).await;
    let api = Api::new(payments.base.clone());
    let alice = register(&auth, "alice-psp@example.com").await;
    register(&auth, "bob-psp@example.com").await;

    let (status, first) = pay(&api, &alice, "bob-psp@example.com", None).await;
    assert!(status == 201 || status == 202, "{first}");

    // The provider goes away; payments are still accepted, and wait.
    psp.kill();
    let mut accepted = vec![first["id"].as_str().unwrap().to_string()];
    for i in 0..12 {
        let (status, body) = pay(
            &api,
            &alice,
            "bob-psp@example.com",
            Some(&format!("psp-down-{i}")),
        )
        .await;
        assert!(status == 201 || status == 202, "{status} {body}");
        assert_ne!(
            body["status"], "completed",
            "charged without a provider: {body}"
        );
        accepted.push(body["id"].as_str().unwrap().to_string());
    }
    let pool = stage.payments_db.pool().await;
    let open = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM payments WHERE status IN ('pending', 'processing')",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    assert!(open(pool.clone()).await >= 12, "they wait for the provider");

    // Back: every one settles, each charged once.
    let _psp = stage.psp();
    let settled = eventually(Duration::from_secs(60), || {
        let pool = pool.clone();
        async move { (open(pool).await == 0).then_some(()) }
    })
    .await;
    assert!(settled.is_some(), "still open:\n{}", payments.logs());
    let charges = Api::new(format!("http://127.0.0.1:{}", stage.psp_port))
        .get("/charges?limit=1000", None)
        .await
        .body;
    let charges = charges["items"].as_array().unwrap().clone();
    let mut references: Vec<&str> = charges
        .iter()
        .map(|c| c["reference"].as_str().unwrap())
        .collect();
    let total = references.len();
    references.sort();
    references.dedup();
    assert_eq!(references.len(), total, "one charge per payment");
    for id in &accepted {
        let (status, psp_id): (String, Option<String>) =
            sqlx::query_as("SELECT status::text, psp_transaction_id FROM payments WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(status, "completed", "payment {id}");
        let charge = charges
            .iter()
            .find(|c| c["reference"] == id.as_str())
            .unwrap_or_else(|| panic!("payment {id} has no charge"));
        assert_eq!(psp_id.as_deref(), charge["id"].as_str(), "payment {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_down_payments_serves_cached_users_and_refuses_the_others_writing_nothing() {
    let stage = Stage::new();
    let mut auth = stage.auth();
    auth.wait_ready(Duration::from_secs(15)).await;
    let _psp = stage.psp();
    let payments = stage.payments(&auth);
    payments.wait_ready(Duration::from_secs(20)).await;
    let api = Api::new(payments.base.clone());
    let alice = register(&auth, "alice-auth@example.com").await;
    register(&auth, "bob-auth@example.com").await;
    register(&auth, "carol-auth@example.com").await;
    // Bob is looked up (and cached) by a first payment.
    let (status, body) = pay(&api, &alice, "bob-auth@example.com", None).await;
    assert!(status == 201 || status == 202, "{body}");

    auth.kill();
    let (status, body) = pay(&api, &alice, "bob-auth@example.com", None).await;
    assert!(
        status == 201 || status == 202,
        "a cached recipient is served with auth down: {status} {body}"
    );
    let (status, body) = pay(&api, &alice, "carol-auth@example.com", Some("carol-1")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "auth_unavailable", "{body}");
    let pool = stage.payments_db.pool().await;
    let total = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM payments")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(
        total(pool.clone()).await,
        2,
        "nothing written for the refused payment"
    );

    // Auth back: the same Idempotency-Key goes through (the refused attempt kept nothing).
    let auth = stage.auth();
    auth.wait_ready(Duration::from_secs(15)).await;
    let paid = eventually(Duration::from_secs(20), || async {
        let (status, body) = pay(&api, &alice, "carol-auth@example.com", Some("carol-1")).await;
        (status == 201 || status == 202).then_some(body)
    })
    .await
    .expect("carol is paid once auth is back");
    let again = pay(&api, &alice, "carol-auth@example.com", Some("carol-1")).await;
    assert_eq!(again.1["id"], paid["id"], "the key gives the same payment");
    assert_eq!(total(pool).await, 3);
}
