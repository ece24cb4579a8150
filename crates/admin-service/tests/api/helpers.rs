//! `spawn()`: the real auth service and the admin service, each on a free port (databases fresh,
//! an exchange of the test's own); events are published to that exchange as the other services
//! publish them.

use std::time::Duration;

use admin_service::settings::AdminSettings;
use chrono::Utc;
use events::Envelope;
use platform::{Env, FromEnv, Service, ServiceConfig, Topology};
use serde_json::Value;
use sqlx::PgPool;
use test_support::auth::{SERVICE_CLIENT, SERVICE_SECRET, TestAuth, TestUser, spawn_auth};
use test_support::{Api, Reply, TestBroker, TestDb, eventually};

pub struct TestAdmin {
    pub auth: TestAuth,
    pub api: Api,
    /// The admin service's database.
    pub pool: PgPool,
    pub db: TestDb,
    pub broker: TestBroker,
    pub config: ServiceConfig,
}

pub fn settings(config: &ServiceConfig) -> AdminSettings {
    let env = Env::from_pairs([
        ("ADMIN_AUTH_CLIENT_ID", SERVICE_CLIENT),
        ("ADMIN_AUTH_CLIENT_SECRET", SERVICE_SECRET),
        ("ADMIN_NAME_LOOKUP_PAUSE_SECS", "1"),
    ]);
    AdminSettings::from_env(config, &env).expect("test settings")
}

pub async fn spawn() -> TestAdmin {
    spawn_on(TestDb::new().await).await
}

/// Admin on `db`, which may already hold rows (migrated legacy rows).
pub async fn spawn_on(db: TestDb) -> TestAdmin {
    spawn_in(db, Topology::Split).await
}

/// Admin in the shared topology, on a database loaded with the legacy DDL (foreign keys
/// included) standing for the legacy database; auth keeps its own database.
pub async fn spawn_shared() -> TestAdmin {
    let db = TestDb::new().await;
    db.execute_script(test_support::LEGACY_SCHEMA_SQL).await;
    spawn_in(db, Topology::Shared).await
}

async fn spawn_in(db: TestDb, topology: Topology) -> TestAdmin {
    let broker = TestBroker::new();
    let auth = spawn_auth(&broker).await;
    let mut config = test_support::spawn::config(Service::Admin, &db.url);
    config.auth_service_url = auth.api.base.clone();
    config.topology = topology;
    let settings = settings(&config);
    let api = start(&config, &settings, &broker).await;
    TestAdmin {
        auth,
        api,
        pool: db.pool().await,
        db,
        broker,
        config,
    }
}

/// Starts an admin service (another replica, or the first).
pub async fn start(config: &ServiceConfig, settings: &AdminSettings, broker: &TestBroker) -> Api {
    let app = admin_service::build_with(config.clone(), settings.clone(), broker.settings(config))
        .await
        .expect("admin builds");
    let api = Api::new(format!("http://127.0.0.1:{}", app.port()));
    tokio::spawn(app.run_until(std::future::pending()));
    eventually(Duration::from_secs(10), || async {
        (api.get("/ready", None).await.status == 200).then_some(())
    })
    .await
    .expect("admin-service becomes ready");
    api
}

/// A unique email for this test run.
pub fn email(name: &str) -> String {
    format!("{name}-{}@example.com", uuid::Uuid::new_v4().simple())
}

/// An event as a service's relay publishes it.
pub fn event(event_type: &str, source: &str, data: Value) -> Envelope {
    Envelope {
        id: uuid::Uuid::new_v4(),
        event_type: event_type.into(),
        source: source.into(),
        occurred_at: Utc::now(),
        data,
    }
}

impl TestAdmin {
    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.api.get(path, Some(token)).await
    }

    pub async fn user(&self, name: &str) -> TestUser {
        self.auth.register(&email(name)).await
    }

    pub async fn admin_token(&self) -> String {
        self.auth.admin().await.token
    }

    /// The audit rows matching `filter` (a query string), once there are `n` of them.
    pub async fn wait_for_rows(&self, token: &str, filter: &str, n: usize) -> Vec<Value> {
        let path = format!("/admin/audit-logs?limit=100&{filter}");
        eventually(Duration::from_secs(15), || async {
            let reply = self.get(&path, token).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            let items = reply.body["items"].as_array().cloned().unwrap_or_default();
            (items.len() >= n).then_some(items)
        })
        .await
        .unwrap_or_else(|| panic!("{n} audit rows for {filter}"))
    }

    /// The audit row of one event, once written.
    pub async fn wait_for_event(&self, token: &str, event: &Envelope) -> Value {
        let path = format!("/admin/audit-logs/{}", event.id);
        eventually(Duration::from_secs(15), || async {
            let reply = self.get(&path, token).await;
            (reply.status == 200).then_some(reply.body)
        })
        .await
        .unwrap_or_else(|| panic!("an audit row for {} {}", event.event_type, event.id))
    }
}
