//! Running the platform's real binaries for cross-service tests: each service a process of its own
//! with its own fresh database, all on a broker exchange of the test's own.
//!
//! The binaries are taken from the same target directory as the test; `cargo nextest run
//! --workspace` (the README's test command) builds them first.

pub mod dev;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_support::{Api, TestBroker, TestDb};

/// The path of a workspace binary next to the running test.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (`cargo build --workspace`)",
        path.display()
    );
    path
}

/// A service binary running as a child process.
pub struct ServiceProcess {
    pub name: &'static str,
    pub base: String,
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl ServiceProcess {
    /// Starts `name` with `env` (on a free port unless `env` sets one) and waits for its
    /// "listening" log line.
    pub fn start(name: &'static str, env: &[(String, String)]) -> Self {
        let prefix = name.trim_end_matches("-service").to_uppercase();
        // A free port on loopback unless `env` names one (it is applied last, so it wins).
        let mut child = Command::new(binary(name))
            .env(format!("{prefix}_SERVICE_PORT"), "0")
            .env(format!("{prefix}_SERVICE_HOST"), "127.0.0.1")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<Value>(&line)
                    && event["message"] == "listening"
                {
                    let _ = port_tx.send(event["port"].as_u64());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let port = match port_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(port)) => port,
            _ => {
                let _ = child.kill();
                panic!(
                    "{name} did not start; its output:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        Self {
            name,
            base: format!("http://127.0.0.1:{port}"),
            child,
            logs,
        }
    }

    /// SIGKILL: no shutdown, no flushing, as a crash or an OOM kill.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Waits until `/ready` answers 200 (database and broker connections up).
    pub async fn wait_ready(&self, limit: Duration) {
        let http = reqwest::Client::new();
        let ready = test_support::eventually(limit, || async {
            let response = http.get(format!("{}/ready", self.base)).send().await;
            response.is_ok_and(|r| r.status() == 200).then_some(())
        })
        .await;
        if ready.is_some() {
            return;
        }
        panic!(
            "{} not ready after {limit:?}; logs:\n{}",
            self.name,
            self.logs()
        );
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Databases, broker names and settings for one test's platform; services are started from it.
pub struct Platform {
    pub broker: TestBroker,
    pub auth_db: TestDb,
    pub profile_db: TestDb,
    /// Where auth keeps its signing key, so a restarted auth signs with the same key.
    pub auth_data: PathBuf,
}

impl Platform {
    pub fn new() -> Self {
        Self {
            broker: TestBroker::new(),
            auth_db: TestDb::unborn(),
            profile_db: TestDb::unborn(),
            auth_data: std::env::temp_dir().join(format!("mfe-e2e-auth-{}", uuid::Uuid::new_v4())),
        }
    }

    pub fn auth_env(&self) -> Vec<(String, String)> {
        let mut env = self.broker.env("auth-service");
        env.push(("AUTH_DATABASE_URL".into(), self.auth_db.url.clone()));
        env.push(("AUTH_DATA_DIR".into(), self.auth_data.display().to_string()));
        env
    }

    pub fn start_auth(&self) -> ServiceProcess {
        ServiceProcess::start("auth-service", &self.auth_env())
    }

    /// Auth's variables with payments and admin as its service clients ([`PAYMENTS_SECRET`],
    /// [`ADMIN_SECRET`]).
    pub fn auth_env_with_clients(&self) -> Vec<(String, String)> {
        let mut env = self.auth_env();
        env.push((
            "AUTH_SERVICE_CLIENTS".into(),
            format!("payments-service={PAYMENTS_SECRET},admin-service={ADMIN_SECRET}"),
        ));
        env
    }

    /// Admin's variables: its database at `db_url`, auth at `auth`.
    pub fn admin_env(&self, db_url: &str, auth: &ServiceProcess) -> Vec<(String, String)> {
        let mut env = self.broker.env("admin-service");
        env.extend([
            ("ADMIN_DATABASE_URL".to_string(), db_url.to_string()),
            ("AUTH_SERVICE_URL".into(), auth.base.clone()),
            ("ADMIN_AUTH_CLIENT_SECRET".into(), ADMIN_SECRET.into()),
        ]);
        env
    }

    /// Payments' variables: its database at `db_url`, its port, auth at `auth`, the sandbox of
    /// [`start_sandbox`] on `psp_port`.
    pub fn payments_env(
        &self,
        db_url: &str,
        port: u16,
        auth: &ServiceProcess,
        psp_port: u16,
    ) -> Vec<(String, String)> {
        let mut env = self.broker.env("payments-service");
        env.extend([
            ("PAYMENTS_DATABASE_URL".to_string(), db_url.to_string()),
            ("PAYMENTS_SERVICE_PORT".into(), port.to_string()),
            ("AUTH_SERVICE_URL".into(), auth.base.clone()),
            ("PAYMENTS_AUTH_CLIENT_SECRET".into(), PAYMENTS_SECRET.into()),
            ("PSP_URL".into(), format!("http://127.0.0.1:{psp_port}")),
            ("PSP_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into()),
        ]);
        env
    }

    pub fn start_profile(&self, auth: &ServiceProcess) -> ServiceProcess {
        let mut env = self.broker.env("profile-service");
        env.push(("PROFILE_DATABASE_URL".into(), self.profile_db.url.clone()));
        env.push(("AUTH_SERVICE_URL".into(), auth.base.clone()));
        ServiceProcess::start("profile-service", &env)
    }

    /// Registers a user through auth's API; returns its id.
    pub async fn register(&self, auth: &ServiceProcess, email: &str) -> String {
        let body = registered(auth, email).await;
        body["user"]["id"].as_str().unwrap().to_string()
    }

    /// Registers a user through auth's API; returns its access token.
    pub async fn sign_up(&self, auth: &ServiceProcess, email: &str) -> String {
        let body = registered(auth, email).await;
        body["accessToken"].as_str().unwrap().to_string()
    }

    pub async fn profiles(&self) -> sqlx::PgPool {
        self.profile_db.pool().await
    }

    pub async fn auth_pool(&self) -> sqlx::PgPool {
        self.auth_db.pool().await
    }

    /// Starts auth and profile and waits until both are ready (database and broker connected).
    pub async fn start_ready(&self) -> (ServiceProcess, ServiceProcess) {
        let auth = self.start_auth();
        let profile = self.start_profile(&auth);
        auth.wait_ready(Duration::from_secs(10)).await;
        profile.wait_ready(Duration::from_secs(10)).await;
        (auth, profile)
    }
}

/// Auth's answer to registering `email` (password `a-long-password`).
async fn registered(auth: &ServiceProcess, email: &str) -> Value {
    let reply = Api::new(auth.base.clone())
        .post(
            "/auth/register",
            None,
            &json!({"email": email, "password": "a-long-password", "name": "E2E"}),
        )
        .await;
    assert_eq!(reply.status, 201, "registering {email}: {}", reply.body);
    reply.body
}

/// A port free at the moment, for a process whose port another must know before it starts.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// Events in auth's outbox not yet confirmed by the broker.
pub async fn auth_backlog(auth_pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM auth.outbox WHERE published_at IS NULL")
        .fetch_one(auth_pool)
        .await
        .expect("auth's outbox is readable")
}

/// Pays `n` payments of 10.00 from the holder of `token` to `recipient` through payments at
/// `api`, one started every `every` without waiting for the last, on a task of its own; yields
/// the id of each one answered 2xx and when it was answered.
pub fn pay_in_background(
    api: Api,
    token: String,
    recipient: &'static str,
    n: usize,
    every: Duration,
) -> tokio::task::JoinHandle<Vec<(String, Instant)>> {
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (api, token) = (api.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                let body =
                    json!({"recipientEmail": recipient, "amount": "10.00", "type": "instant"});
                let response = api
                    .http
                    .post(api.url("/payments"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .ok()?;
                if !response.status().is_success() {
                    return None;
                }
                let body: Value = response.json().await.ok()?;
                Some((body["id"].as_str()?.to_string(), Instant::now()))
            }));
            tokio::time::sleep(every).await;
        }
        let mut accepted = Vec::new();
        for task in tasks {
            if let Ok(Some(paid)) = task.await {
                accepted.push(paid);
            }
        }
        accepted
    })
}

/// Registers `n` users (`<prefix>-<i>@example.com`) through auth at `auth_base`, one after
/// another with `pause` between them, on a task of its own; yields their ids.
pub fn register_in_background(
    auth_base: String,
    prefix: &'static str,
    n: usize,
    pause: Duration,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let auth = Api::new(auth_base);
        let mut ids = Vec::new();
        for i in 0..n {
            let body = json!({
                "email": format!("{prefix}-{i}@example.com"),
                "password": "a-long-password",
                "name": prefix,
            });
            let reply = auth.post("/auth/register", None, &body).await;
            assert_eq!(reply.status, 201, "registration {i}: {}", reply.body);
            ids.push(reply.body["user"]["id"].as_str().unwrap().to_string());
            tokio::time::sleep(pause).await;
        }
        ids
    })
}

/// Profiles of `user_id` in profile's database (0 before profile has created its tables).
pub async fn profile_count(profile_pool: &sqlx::PgPool, user_id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM user_profiles WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(profile_pool)
        .await
        .unwrap_or(0)
}

impl Platform {}

impl Default for Platform {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.auth_data);
    }
}

/// Runs the real `mfe` with `args` and `env`, and checks it succeeded.
pub fn mfe(args: &[&str], env: &[(&str, &str)]) {
    let out = std::process::Command::new(binary("mfe"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("mfe runs");
    assert!(
        out.status.success(),
        "mfe {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A legacy database seeded and migrated by the real `mfe` into the platform's auth and profile
/// databases and two more (payments, admin).
pub struct Migrated {
    pub legacy: TestDb,
    pub payments_db: TestDb,
    pub admin_db: TestDb,
}

impl Platform {
    /// Seeds a legacy database (scale 0.01, `seed`) and runs `mfe migrate prepare` and `copy`.
    pub fn migrate_legacy(&self, seed: u64) -> Migrated {
        let m = Migrated {
            legacy: TestDb::unborn(),
            payments_db: TestDb::unborn(),
            admin_db: TestDb::unborn(),
        };
        let env = [
            ("SHARED_DATABASE_URL", m.legacy.url.as_str()),
            ("AUTH_DATABASE_URL", self.auth_db.url.as_str()),
            ("PAYMENTS_DATABASE_URL", m.payments_db.url.as_str()),
            ("ADMIN_DATABASE_URL", m.admin_db.url.as_str()),
            ("PROFILE_DATABASE_URL", self.profile_db.url.as_str()),
        ];
        seed_legacy(&m.legacy.url, seed);
        mfe(&["migrate", "prepare"], &env);
        mfe(&["migrate", "copy"], &env);
        m
    }
}

/// Seeds a legacy (POC-2) database at `url` with the real `mfe legacy seed`, at scale 0.01
/// (100 users, 1,000 payments, 500 audit rows and the hard cases); `seed` makes it reproducible.
/// Its demo users' credentials are `legacy_seed::DEMO_USERS` (`alice@legacy.test` /
/// `alice-legacy-2024`, ...).
pub fn seed_legacy(url: &str, seed: u64) {
    let seed = seed.to_string();
    mfe(
        &[
            "legacy", "seed", "--url", url, "--scale", "0.01", "--seed", &seed,
        ],
        &[],
    );
}

/// The service credentials and webhook secret of a [`SharedPlatform`].
pub const PAYMENTS_SECRET: &str = "e2e-payments-secret-0123";
pub const ADMIN_SECRET: &str = "e2e-admin-secret-0123456";
pub const WEBHOOK_SECRET: &str = "e2e-webhook-secret-0123456";

/// The PSP sandbox on 127.0.0.1:`port`, signing its webhooks with [`WEBHOOK_SECRET`] and sending
/// them to payments on `payments_port` (none: no webhooks). `settings`: the sandbox's other
/// variables (latency, settle delay, hang, data file).
pub fn start_sandbox(
    port: u16,
    payments_port: Option<u16>,
    settings: &[(&str, &str)],
) -> ServiceProcess {
    let mut env: Vec<(String, String)> = vec![
        ("PSP_SANDBOX_PORT".into(), port.to_string()),
        ("PSP_SANDBOX_HOST".into(), "127.0.0.1".into()),
        ("PSP_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into()),
    ];
    if let Some(payments_port) = payments_port {
        env.push((
            "PSP_WEBHOOK_URL".into(),
            format!("http://127.0.0.1:{payments_port}/psp/webhooks"),
        ));
    }
    env.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    ServiceProcess::start("psp-sandbox", &env)
}

/// The platform in the shared topology, as before cutover or after a rollback: one seeded legacy
/// database under all four services (`DATABASE_TOPOLOGY=shared`, `SHARED_DATABASE_URL`), each
/// keeping its own tables in its own schema there, on a broker exchange of the test's own.
pub struct SharedPlatform {
    pub broker: TestBroker,
    pub legacy: TestDb,
    /// Where auth keeps its signing key.
    pub auth_data: PathBuf,
}

/// The processes of a [`SharedPlatform`], all ready.
pub struct SharedServices {
    pub auth: ServiceProcess,
    pub admin: ServiceProcess,
    pub profile: ServiceProcess,
    pub payments: ServiceProcess,
    pub sandbox: ServiceProcess,
}

impl SharedPlatform {
    /// A legacy database seeded with `seed` ([`seed_legacy`]); no service started yet.
    pub fn seed(seed: u64) -> Self {
        let legacy = TestDb::unborn();
        seed_legacy(&legacy.url, seed);
        Self {
            broker: TestBroker::new(),
            legacy,
            auth_data: std::env::temp_dir().join(format!("mfe-e2e-auth-{}", uuid::Uuid::new_v4())),
        }
    }

    pub async fn legacy_pool(&self) -> sqlx::PgPool {
        self.legacy.pool().await
    }

    /// What every service of this platform is started with: its exchange and queue, and the
    /// shared topology on the legacy database.
    pub fn env(&self, service: &str) -> Vec<(String, String)> {
        let mut env = self.broker.env(service);
        env.push(("DATABASE_TOPOLOGY".into(), "shared".into()));
        env.push(("SHARED_DATABASE_URL".into(), self.legacy.url.clone()));
        env
    }

    /// Starts auth, knowing payments' and admin's service credentials, with `extra` variables.
    pub fn start_auth(&self, extra: &[(&str, &str)]) -> ServiceProcess {
        let mut env = self.env("auth-service");
        env.push(("AUTH_DATA_DIR".into(), self.auth_data.display().to_string()));
        env.push((
            "AUTH_SERVICE_CLIENTS".into(),
            format!("payments-service={PAYMENTS_SECRET},admin-service={ADMIN_SECRET}"),
        ));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        ServiceProcess::start("auth-service", &env)
    }

    /// Starts admin (first: its queue must be bound before the others publish), profile, the
    /// sandbox and payments beside `auth`, and waits until all are ready.
    pub async fn start_with(&self, auth: ServiceProcess) -> SharedServices {
        let mut admin_env = self.env("admin-service");
        admin_env.extend([
            ("AUTH_SERVICE_URL".to_string(), auth.base.clone()),
            ("ADMIN_AUTH_CLIENT_SECRET".into(), ADMIN_SECRET.into()),
        ]);
        let admin = ServiceProcess::start("admin-service", &admin_env);
        admin.wait_ready(Duration::from_secs(15)).await;
        let mut profile_env = self.env("profile-service");
        profile_env.push(("AUTH_SERVICE_URL".into(), auth.base.clone()));
        let profile = ServiceProcess::start("profile-service", &profile_env);
        // The sandbox signs its webhooks for payments: payments' port is chosen first.
        let (psp_port, payments_port) = (free_port(), free_port());
        let sandbox = start_sandbox(
            psp_port,
            Some(payments_port),
            &[("PSP_SANDBOX_LATENCY_MS", "0")],
        );
        let mut payments_env = self.env("payments-service");
        payments_env.extend([
            (
                "PAYMENTS_SERVICE_PORT".to_string(),
                payments_port.to_string(),
            ),
            ("AUTH_SERVICE_URL".into(), auth.base.clone()),
            ("PAYMENTS_AUTH_CLIENT_SECRET".into(), PAYMENTS_SECRET.into()),
            ("PSP_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into()),
            ("PSP_URL".into(), format!("http://127.0.0.1:{psp_port}")),
        ]);
        let payments = ServiceProcess::start("payments-service", &payments_env);
        for service in [&auth, &profile, &payments] {
            service.wait_ready(Duration::from_secs(15)).await;
        }
        SharedServices {
            auth,
            admin,
            profile,
            payments,
            sandbox,
        }
    }
}

impl Drop for SharedPlatform {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.auth_data);
    }
}
