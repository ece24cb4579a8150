//! The real auth service for another service's tests: `spawn_auth()` serves it on a free port with
//! a fresh database, a bootstrap ADMIN and a service client, and signs users up and in.

use auth_service::settings::{AuthSettings, BootstrapAdmin, KeySource, ServiceClient};
use platform::{Env, FromEnv, Service, ServiceConfig};
use reqwest::StatusCode;
use serde_json::json;

use crate::http::Api;
use crate::{TestBroker, TestDb};

pub const ADMIN_EMAIL: &str = "root@example.com";
pub const ADMIN_PASSWORD: &str = "bootstrap-admin-pass";
/// The service client every test auth knows (`AUTH_SERVICE_CLIENTS`).
pub const SERVICE_CLIENT: &str = "test-service";
pub const SERVICE_SECRET: &str = "test-service-secret-0123456789";
pub const PASSWORD: &str = "a-long-password";

/// A running auth service.
pub struct TestAuth {
    pub api: Api,
    pub db: TestDb,
    stop: tokio::sync::watch::Sender<bool>,
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub email: String,
    pub token: String,
}

/// Auth's settings for tests: signing with `key_pem`, the bootstrap ADMIN and the service client
/// above, everything else at its default.
pub fn settings(key_pem: &str) -> AuthSettings {
    let env = Env::default();
    let config = ServiceConfig::from_env(Service::Auth, &env).expect("default platform config");
    let mut settings = AuthSettings::from_env(&config, &env).expect("default auth settings");
    settings.key_source = KeySource::Pem(key_pem.to_string().into());
    settings.bootstrap_admin = Some(BootstrapAdmin {
        email: ADMIN_EMAIL.into(),
        password: ADMIN_PASSWORD.to_string().into(),
    });
    settings.service_clients.insert(
        SERVICE_CLIENT.into(),
        ServiceClient {
            id: SERVICE_CLIENT.into(),
            secret: SERVICE_SECRET.to_string().into(),
        },
    );
    settings
}

/// Auth on a free port of 127.0.0.1, publishing on `broker`'s exchange.
pub async fn spawn_auth(broker: &TestBroker) -> TestAuth {
    let db = TestDb::new().await;
    let key_pem = auth_service::keys::generate_pem().expect("a signing key");
    let config = crate::spawn::config(Service::Auth, &db.url);
    let events = broker.settings(&config);
    let app = auth_service::build_with(config, settings(&key_pem), events)
        .await
        .expect("auth builds");
    let api = Api::new(format!("http://127.0.0.1:{}", app.port()));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(app.run_until(async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    }));
    TestAuth { api, db, stop }
}

impl TestAuth {
    /// Stops serving (an outage of auth), and waits until its port refuses connections.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let url = format!("{}/health", self.api.base);
        let refused = crate::eventually(std::time::Duration::from_secs(10), || async {
            let fresh = reqwest::Client::new();
            fresh.get(&url).send().await.is_err().then_some(())
        })
        .await;
        assert!(refused.is_some(), "auth still answers after being stopped");
    }

    /// Registers a CUSTOMER with `email`.
    pub async fn register(&self, email: &str) -> TestUser {
        let reply = self
            .api
            .post(
                "/auth/register",
                None,
                &json!({"email": email, "password": PASSWORD, "name": "Test User"}),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "registering {email}: {}",
            reply.body
        );
        user_of(&reply.body)
    }

    /// Signs in with a password.
    pub async fn login(&self, email: &str, password: &str) -> TestUser {
        let reply = self
            .api
            .post(
                "/auth/login",
                None,
                &json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "signing in {email}: {}",
            reply.body
        );
        user_of(&reply.body)
    }

    /// The bootstrap ADMIN, signed in.
    pub async fn admin(&self) -> TestUser {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// A service credential for [`SERVICE_CLIENT`].
    pub async fn service_token(&self) -> String {
        let reply = self
            .api
            .post(
                "/auth/service-token",
                None,
                &json!({"clientId": SERVICE_CLIENT, "clientSecret": SERVICE_SECRET}),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "service token: {}",
            reply.body
        );
        reply.body["accessToken"].as_str().unwrap().to_string()
    }
}

fn user_of(session: &serde_json::Value) -> TestUser {
    TestUser {
        id: session["user"]["id"]
            .as_str()
            .expect("a user id")
            .to_string(),
        email: session["user"]["email"]
            .as_str()
            .expect("an email")
            .to_string(),
        token: session["accessToken"]
            .as_str()
            .expect("an access token")
            .to_string(),
    }
}
