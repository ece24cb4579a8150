//! `spawn()`: the real auth service, the real PSP sandbox and the payments service, each on a
//! free port (databases fresh, an exchange of the test's own), with background work paced for
//! tests (reconciliation after 200 ms, a provider timeout of 700 ms).

use std::time::Duration;

use platform::{Env, FromEnv, Service, Topology};
use serde_json::{Value, json};
use sqlx::PgPool;
use test_support::auth::{SERVICE_CLIENT, SERVICE_SECRET, TestAuth, TestUser, spawn_auth};
use test_support::{Api, Reply, TestBroker, TestDb, eventually};

pub const WEBHOOK_SECRET: &str = "test-webhook-secret-0123456789";

pub struct TestPayments {
    pub auth: TestAuth,
    pub api: Api,
    /// The PSP sandbox.
    pub psp: Api,
    /// The payments service's database.
    pub pool: PgPool,
    pub broker: TestBroker,
    /// What another replica needs to start: the same database and settings.
    replica: (
        platform::ServiceConfig,
        payments_service::settings::PaymentsSettings,
    ),
    _db: TestDb,
}

/// How the platform under test is paced.
#[derive(Debug, Clone)]
pub struct Pace {
    pub psp_timeout_ms: u64,
    pub idempotency_lease_secs: u64,
    /// Whether the sandbox's webhooks reach payments; without them only the reconciler settles
    /// an unknown or late outcome.
    pub webhooks: bool,
    /// The database pool's size, when not the default.
    pub db_max_connections: Option<u32>,
    /// How long the sandbox takes to answer each call.
    pub psp_latency_ms: u64,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            psp_timeout_ms: 700,
            idempotency_lease_secs: 30,
            webhooks: true,
            db_max_connections: None,
            psp_latency_ms: 0,
        }
    }
}

pub async fn spawn() -> TestPayments {
    spawn_paced(Pace::default()).await
}

pub async fn spawn_paced(pace: Pace) -> TestPayments {
    spawn_on(pace, TestDb::new().await, Topology::Split).await
}

/// Payments in the shared topology, on a database loaded with the legacy DDL (foreign keys
/// included) standing for the legacy database. Auth keeps its own database: a user it registers
/// is in the legacy `users` only once the test puts it there ([`TestPayments::add_legacy_user`]).
pub async fn spawn_shared() -> TestPayments {
    let db = TestDb::new().await;
    db.execute_script(test_support::LEGACY_SCHEMA_SQL).await;
    spawn_on(Pace::default(), db, Topology::Shared).await
}

async fn spawn_on(pace: Pace, db: TestDb, topology: Topology) -> TestPayments {
    let broker = TestBroker::new();
    let auth = spawn_auth(&broker).await;
    let mut config = test_support::spawn::config(Service::Payments, &db.url);
    config.auth_service_url = auth.api.base.clone();
    config.topology = topology;
    if let Some(n) = pace.db_max_connections {
        config.db_max_connections = n;
    }
    // The sandbox needs payments' webhook URL before payments starts: pick its port first.
    config.port = free_port();
    let webhook_url = if pace.webhooks {
        format!("http://127.0.0.1:{}/psp/webhooks", config.port)
    } else {
        // Port 1 refuses connections: every delivery fails.
        "http://127.0.0.1:1/psp/webhooks".to_string()
    };
    let psp = spawn_sandbox(&webhook_url, pace.psp_latency_ms).await;
    let env = Env::from_pairs([
        ("PAYMENTS_AUTH_CLIENT_ID", SERVICE_CLIENT.to_string()),
        ("PAYMENTS_AUTH_CLIENT_SECRET", SERVICE_SECRET.to_string()),
        ("PSP_URL", psp.base.clone()),
        ("PSP_WEBHOOK_SECRET", WEBHOOK_SECRET.to_string()),
        ("PSP_TIMEOUT_MS", pace.psp_timeout_ms.to_string()),
        ("PAYMENTS_WORKER_POLL_MS", "50".to_string()),
        ("PAYMENTS_CHARGE_GRACE_MS", "3000".to_string()),
        ("PAYMENTS_RECONCILE_AFTER_MS", "200".to_string()),
        ("PAYMENTS_RECONCILE_MAX_MS", "1000".to_string()),
        (
            "PAYMENTS_IDEMPOTENCY_LEASE_SECS",
            pace.idempotency_lease_secs.to_string(),
        ),
    ]);
    let settings = payments_service::settings::PaymentsSettings::from_env(&config, &env)
        .expect("test settings");
    let events = broker.settings(&config);
    let mut replica_config = config.clone();
    replica_config.port = 0;
    let replica = (replica_config, settings.clone());
    let app = payments_service::build_with(config, settings, events)
        .await
        .expect("payments builds");
    let api = Api::new(format!("http://127.0.0.1:{}", app.port()));
    tokio::spawn(app.run_until(std::future::pending()));
    let platform = TestPayments {
        auth,
        api,
        psp,
        pool: db.pool().await,
        broker,
        replica,
        _db: db,
    };
    eventually(Duration::from_secs(10), || async {
        (platform.api.get("/ready", None).await.status == 200).then_some(())
    })
    .await
    .expect("payments-service becomes ready");
    platform
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// The sandbox, quick: `latency_ms` per call (0 unless a test asks), settlement after 300 ms, a
/// "timeout" charge held 3 s.
async fn spawn_sandbox(webhook_url: &str, latency_ms: u64) -> Api {
    let mut env = Env::default();
    env.set("PSP_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .set("PSP_WEBHOOK_URL", webhook_url)
        .set("PSP_SANDBOX_PORT", "0")
        .set("PSP_SANDBOX_HOST", "127.0.0.1")
        .set("PSP_SANDBOX_LATENCY_MS", latency_ms.to_string())
        .set("PSP_SANDBOX_SETTLE_DELAY_MS", "300")
        .set("PSP_SANDBOX_HANG_MS", "3000");
    let settings = psp_sandbox::Settings::from_env(&env).expect("sandbox settings");
    let sandbox = psp_sandbox::build(settings).await.expect("sandbox builds");
    let api = Api::new(format!("http://127.0.0.1:{}", sandbox.port()));
    tokio::spawn(sandbox.run_until(std::future::pending()));
    api
}

/// A unique email for this test run.
pub fn email(name: &str) -> String {
    format!("{name}-{}@example.com", uuid::Uuid::new_v4().simple())
}

pub fn instant(to: &str, amount: &str) -> Value {
    json!({"recipientEmail": to, "amount": amount, "type": "instant"})
}

impl TestPayments {
    /// Payments' router on the same database and settings, to drive requests in this process
    /// (and drop them where a test wants).
    pub async fn router(&self) -> axum::Router {
        let (config, settings) = self.replica.clone();
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(5)
            .connect(platform::config::ExposeSecret::expose_secret(
                &config.database_url,
            ))
            .await
            .expect("payments' database");
        let state = payments_service::AppState::new(pool, settings).expect("payments' state");
        payments_service::router(state, &config)
    }

    /// Another instance of payments on the same database (its own port), as a second replica.
    pub async fn spawn_replica(&self) -> Api {
        let (config, settings) = self.replica.clone();
        let events = self.broker.settings(&config);
        let app = payments_service::build_with(config, settings, events)
            .await
            .expect("the replica builds");
        let api = Api::new(format!("http://127.0.0.1:{}", app.port()));
        tokio::spawn(app.run_until(std::future::pending()));
        api
    }

    pub async fn user(&self, name: &str) -> TestUser {
        self.auth.register(&email(name)).await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.api.post(path, Some(token), body).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.api.get(path, Some(token)).await
    }

    /// `POST /payments` with an Idempotency-Key.
    pub async fn post_keyed(&self, token: &str, key: &str, body: &Value) -> Reply {
        let response = self
            .api
            .http
            .post(self.api.url("/payments"))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .expect("payments answers");
        Reply::read(response).await
    }

    /// Pays `amount` from `from` to `to` (instant) and checks it was accepted (201 or 202).
    pub async fn pay(&self, from: &TestUser, to: &TestUser, amount: &str) -> Value {
        let reply = self
            .post("/payments", &from.token, &instant(&to.email, amount))
            .await;
        assert!(
            reply.status == 201 || reply.status == 202,
            "paying {amount}: {} {}",
            reply.status,
            reply.body
        );
        reply.body
    }

    /// The payment as its sender sees it, once it has `status`.
    pub async fn wait_for_status(&self, token: &str, id: &str, status: &str) -> Value {
        let path = format!("/payments/{id}");
        eventually(Duration::from_secs(15), || async {
            let reply = self.get(&path, token).await;
            (reply.body["status"] == status).then_some(reply.body)
        })
        .await
        .unwrap_or_else(|| panic!("payment {id} never became {status}"))
    }

    /// Statuses of a payment's history, oldest first.
    pub async fn history(&self, token: &str, id: &str) -> Vec<String> {
        let reply = self
            .get(&format!("/payments/{id}/transactions"), token)
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["status"].as_str().unwrap().to_string())
            .collect()
    }

    /// The sandbox's charge for a payment, if it has one.
    pub async fn charge(&self, payment_id: &str) -> Option<Value> {
        let reply = self.psp.get(&format!("/charges/{payment_id}"), None).await;
        (reply.status == 200).then_some(reply.body)
    }

    /// Puts `user` in the legacy `users` table (shared topology), as auth on the shared
    /// database would have.
    pub async fn add_legacy_user(&self, user: &TestUser) {
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, name, role, updated_at)
             VALUES ($1, $2, 'x', 'Shared', 'CUSTOMER', now())",
        )
        .bind(&user.id)
        .bind(&user.email)
        .execute(&self.pool)
        .await
        .unwrap();
    }

    pub async fn count(&self, sql: &str, bind: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .bind(bind)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}
