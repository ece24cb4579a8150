//! `spawn_platform()`: the real auth service and the profile service, each with a fresh database,
//! publishing and consuming on an exchange of the test's own.

use std::time::Duration;

use platform::{Env, FromEnv, Service, Topology};
use reqwest::Method;
use serde_json::Value;
use sqlx::PgPool;
use test_support::auth::{TestAuth, TestUser, spawn_auth};
use test_support::{Api, Reply, TestBroker, TestDb, eventually};

pub struct TestPlatform {
    pub auth: TestAuth,
    pub profile: Api,
    /// The profile service's database.
    pub pool: PgPool,
    pub broker: TestBroker,
    _db: TestDb,
}

pub async fn spawn_platform() -> TestPlatform {
    spawn_platform_on(TestDb::new().await, Topology::Split).await
}

/// Profile in the shared topology, on a database loaded with the legacy DDL (foreign keys
/// included) standing for the legacy database; auth keeps its own database, so a user it
/// registers is in the legacy `users` only once the test puts it there.
pub async fn spawn_shared_platform() -> TestPlatform {
    let db = TestDb::new().await;
    db.execute_script(test_support::LEGACY_SCHEMA_SQL).await;
    spawn_platform_on(db, Topology::Shared).await
}

async fn spawn_platform_on(profile_db: TestDb, topology: Topology) -> TestPlatform {
    let broker = TestBroker::new();
    let auth = spawn_auth(&broker).await;
    let mut config = test_support::spawn::config(Service::Profile, &profile_db.url);
    config.auth_service_url = auth.api.base.clone();
    config.topology = topology;
    let settings = profile_service::settings::ProfileSettings::from_env(&config, &Env::default())
        .expect("test settings");
    let events = broker.settings(&config);
    let app = profile_service::build_with(config, settings, events)
        .await
        .expect("profile builds");
    let profile = Api::new(format!("http://127.0.0.1:{}", app.port()));
    tokio::spawn(app.run_until(std::future::pending()));

    let platform = TestPlatform {
        auth,
        profile,
        pool: profile_db.pool().await,
        broker,
        _db: profile_db,
    };
    // Once profile's consumer is connected, no event published afterwards is missed.
    eventually(Duration::from_secs(5), || async {
        (platform.profile.get("/ready", None).await.status == 200).then_some(())
    })
    .await
    .expect("profile-service becomes ready");
    platform
}

impl TestPlatform {
    pub async fn register(&self, email: &str) -> TestUser {
        self.auth.register(email).await
    }

    pub async fn admin(&self) -> TestUser {
        self.auth.admin().await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.profile.get(path, Some(token)).await
    }

    pub async fn send(&self, method: Method, path: &str, token: &str, body: &Value) -> Reply {
        self.profile
            .call(method, path, Some(token), Some(body))
            .await
    }

    pub async fn profile_count(&self, user_id: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM user_profiles WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Waits up to `limit` for `user_id` to have `expected` profiles; returns how long it took.
    pub async fn wait_for_profiles(
        &self,
        user_id: &str,
        expected: i64,
        limit: Duration,
    ) -> Option<Duration> {
        let start = std::time::Instant::now();
        eventually(limit, || async {
            (self.profile_count(user_id).await == expected).then(|| start.elapsed())
        })
        .await
    }
}

/// The error of an error response, checking the body is the platform's JSON shape.
pub fn error_of(reply: &Reply) -> Value {
    reply.error_code();
    reply.body["error"].clone()
}
