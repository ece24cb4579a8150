//! `spawn_platform()`: the real auth service and the profile service, each with a fresh database,
//! publishing and consuming on an exchange of the test's own.

use std::time::Duration;

use auth_service::settings::{AuthSettings, BootstrapAdmin, KeySource};
use platform::{Env, Service};
use reqwest::{Client, Response};
use serde_json::{Value, json};
use sqlx::PgPool;
use test_support::{TestBroker, TestDb};

pub const ADMIN_EMAIL: &str = "root@example.com";
pub const ADMIN_PASSWORD: &str = "bootstrap-admin-pass";

pub struct TestPlatform {
    pub auth: String,
    pub profile: String,
    pub http: Client,
    /// The profile service's database.
    pub pool: PgPool,
    pub broker: TestBroker,
    _dbs: (TestDb, TestDb),
}

pub struct User {
    pub id: String,
    pub token: String,
}

pub async fn spawn_platform() -> TestPlatform {
    let broker = TestBroker::new();
    let auth_db = TestDb::new().await;
    let profile_db = TestDb::new().await;

    let mut settings = AuthSettings::from_env(&Env::default()).expect("default auth settings");
    settings.key_source = KeySource::Pem(auth_service::keys::generate_pem().unwrap());
    settings.bootstrap_admin = Some(BootstrapAdmin {
        email: ADMIN_EMAIL.into(),
        password: ADMIN_PASSWORD.into(),
    });
    let auth_config = test_support::spawn::config(Service::Auth, &auth_db.url);
    let auth_events = broker.settings(&auth_config);
    let auth_app = auth_service::build_with(auth_config, settings, auth_events)
        .await
        .expect("auth builds");
    let auth = format!("http://127.0.0.1:{}", auth_app.port());
    tokio::spawn(auth_app.run_until(std::future::pending()));

    let mut config = test_support::spawn::config(Service::Profile, &profile_db.url);
    config.auth_service_url = auth.clone();
    let events = broker.settings(&config);
    let settings = profile_service::settings::ProfileSettings::from_env(&config, &Env::default());
    let app = profile_service::build_with(config, settings, events)
        .await
        .expect("profile builds");
    let profile = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until(std::future::pending()));

    let platform = TestPlatform {
        auth,
        profile,
        http: Client::new(),
        pool: profile_db.pool().await,
        broker,
        _dbs: (auth_db, profile_db),
    };
    platform.wait_until_ready().await;
    platform
}

impl TestPlatform {
    /// Waits until profile's consumer is connected, so no event published afterwards is missed.
    async fn wait_until_ready(&self) {
        for _ in 0..100 {
            let ready = self
                .http
                .get(format!("{}/ready", self.profile))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("profile-service never became ready");
    }

    pub async fn register(&self, email: &str) -> User {
        let response = self
            .http
            .post(format!("{}/auth/register", self.auth))
            .json(&json!({"email": email, "password": "a-long-password", "name": "Profile Test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "registration of {email}");
        let body: Value = response.json().await.unwrap();
        User {
            id: body["user"]["id"].as_str().unwrap().to_string(),
            token: body["accessToken"].as_str().unwrap().to_string(),
        }
    }

    pub async fn admin(&self) -> User {
        let response = self
            .http
            .post(format!("{}/auth/login", self.auth))
            .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        User {
            id: body["user"]["id"].as_str().unwrap().to_string(),
            token: body["accessToken"].as_str().unwrap().to_string(),
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.profile))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: &Value,
    ) -> Response {
        self.http
            .request(method, format!("{}{path}", self.profile))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
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
        while start.elapsed() < limit {
            if self.profile_count(user_id).await == expected {
                return Some(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        None
    }
}

/// The error code of an error response, checking the body is the platform's JSON shape.
pub async fn error_of(response: Response) -> Value {
    assert!(
        response.status().is_client_error() || response.status().is_server_error(),
        "{}",
        response.status()
    );
    let body: Value = response.json().await.expect("a JSON error body");
    assert!(body["error"]["code"].is_string(), "{body}");
    body["error"].clone()
}
