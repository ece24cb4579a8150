//! `spawn_app()`: the auth service on a free port with a fresh database, and a client for it.

use auth_service::settings::AuthSettings;
use platform::{Service, Topology};
use reqwest::Client;
use serde_json::{Value, json};
use sqlx::PgPool;
use test_support::{Api, Reply, TestBroker, TestDb};

pub use test_support::auth::{
    ADMIN_EMAIL, ADMIN_PASSWORD, SERVICE_CLIENT, SERVICE_SECRET, settings,
};

pub struct TestApp {
    pub base: String,
    pub http: Client,
    pub pool: PgPool,
    /// The signing key, so tests can forge tokens the service must refuse.
    pub key_pem: String,
    /// Where this app's outbox relay publishes: an exchange of the test's own.
    pub broker: TestBroker,
    pub db: TestDb,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut AuthSettings)) -> TestApp {
    spawn_app_on(TestDb::new().await, Topology::Split, customise).await
}

/// A database loaded with the legacy DDL (`crates/schema/legacy-schema.sql`, foreign keys included), as
/// the shared topology finds the legacy database.
pub async fn legacy_db() -> TestDb {
    let db = TestDb::new().await;
    db.execute_script(test_support::LEGACY_SCHEMA_SQL).await;
    db
}

/// Auth on `db` in `topology` (in the shared one `db` stands for the legacy database).
pub async fn spawn_app_on(
    db: TestDb,
    topology: Topology,
    customise: impl FnOnce(&mut AuthSettings),
) -> TestApp {
    let key_pem = auth_service::keys::generate_pem().unwrap();
    let mut settings = settings(&key_pem);
    customise(&mut settings);
    let mut config = test_support::spawn::config(Service::Auth, &db.url);
    config.topology = topology;
    let broker = TestBroker::new();
    let events = broker.settings(&config);
    let app = auth_service::build_with(config, settings, events)
        .await
        .expect("the app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until(std::future::pending()));
    let pool = db.pool().await;
    TestApp {
        base,
        http: Client::new(),
        pool,
        key_pem,
        broker,
        db,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn api(&self) -> Api {
        Api {
            base: self.base.clone(),
            http: self.http.clone(),
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.api().post(path, None, body).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.api().get(path, None).await
    }

    pub async fn get_as(&self, path: &str, token: &str) -> Reply {
        self.api().get(path, Some(token)).await
    }

    /// Registers a CUSTOMER; returns the session body.
    pub async fn register(&self, email: &str, password: &str) -> Value {
        let response = self
            .post(
                "/auth/register",
                &json!({"email": email, "password": password, "name": "Test User"}),
            )
            .await;
        assert_eq!(response.status, 201, "registration of {email} failed");
        response.body
    }

    pub async fn login(&self, email: &str, password: &str) -> Reply {
        self.post(
            "/auth/login",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    pub async fn access_token(&self, email: &str, password: &str) -> String {
        let response = self.login(email, password).await;
        assert_eq!(response.status, 200, "login of {email} failed");
        response.body["accessToken"].as_str().unwrap().to_string()
    }

    pub async fn admin_token(&self) -> String {
        self.access_token(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    pub async fn service_token(&self) -> String {
        let response = self
            .post(
                "/auth/service-token",
                &json!({"clientId": SERVICE_CLIENT, "clientSecret": SERVICE_SECRET}),
            )
            .await;
        assert_eq!(response.status, 200);
        response.body["accessToken"].as_str().unwrap().to_string()
    }

    /// Outbox rows of one event type, oldest first.
    pub async fn outbox(&self, event_type: &str) -> Vec<Value> {
        sqlx::query_scalar("SELECT payload FROM auth.outbox WHERE event_type = $1 ORDER BY seq")
            .bind(event_type)
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }

    /// Inserts a user the way POC-2 did: bcrypt hash, given id and email.
    pub async fn insert_legacy_user(&self, email: &str, password: &str) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let hash = bcrypt::hash(password, 4).unwrap();
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, name, role, updated_at)
             VALUES ($1, $2, $3, 'Legacy User', 'CUSTOMER', now())",
        )
        .bind(&id)
        .bind(email)
        .bind(hash.replacen("$2b$", "$2a$", 1))
        .execute(&self.pool)
        .await
        .unwrap();
        id
    }
}

/// The error code of an error response, checking the body is the platform's JSON shape.
pub fn error_code(reply: &Reply) -> String {
    reply.error_code().to_string()
}

/// The real `auth-service` binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_auth-service");

/// A data directory of a test's own (the binary keeps its signing key there).
pub fn data_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{name}-{}", uuid::Uuid::new_v4()))
}

/// The binary on `db` (created by it when missing) with `broker`'s exchange and `data_dir`, on a
/// free port of 127.0.0.1, logging JSON; the caller adds the rest.
pub fn binary(
    db: &TestDb,
    broker: &TestBroker,
    data_dir: &std::path::Path,
) -> std::process::Command {
    let mut command = std::process::Command::new(BIN);
    command
        .envs(broker.env("auth-service"))
        .env("AUTH_DATABASE_URL", &db.url)
        .env("AUTH_SERVICE_PORT", "0")
        .env("AUTH_SERVICE_HOST", "127.0.0.1")
        .env("AUTH_DATA_DIR", data_dir)
        .env("LOG_FORMAT", "json");
    command
}
