//! The way there and back with the real processes: the platform runs under `mfe dev` on a seeded
//! legacy database (shared topology) while the live POC-2 writes to it; the migration copies,
//! syncs and verifies with the writer running; cutover switches `mfe dev`'s services to their own
//! databases; the test then writes through every service (a registration, a payment through the
//! PSP sandbox, a profile edit, config changes, deletes) and rolls back. Afterwards the legacy
//! database holds every write, the services (restarted by `mfe dev` on the shared topology) serve
//! it, `verify` is exact, and a second rollback writes nothing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use test_support::{Api, TestBroker, TestDb, eventually};

const SERVICES: [(&str, &str); 4] = [
    ("auth-service", "AUTH"),
    ("payments-service", "PAYMENTS"),
    ("admin-service", "ADMIN"),
    ("profile-service", "PROFILE"),
];
const ADMIN_EMAIL: &str = "ops@rollback.test";
const ADMIN_PASSWORD: &str = "a-long-admin-password";

struct Stage {
    legacy: TestDb,
    targets: Vec<TestDb>,
    broker: TestBroker,
    dir: PathBuf,
    ports: HashMap<&'static str, u16>,
}

impl Stage {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("mfe-e2e-rollback-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("topology.env"), "DATABASE_TOPOLOGY=shared\n").unwrap();
        let ports = ["psp", "AUTH", "PAYMENTS", "ADMIN", "PROFILE"]
            .into_iter()
            .map(|k| (k, e2e::free_port()))
            .collect();
        Self {
            legacy: TestDb::unborn(),
            targets: SERVICES.iter().map(|_| TestDb::unborn()).collect(),
            broker: TestBroker::new(),
            dir,
            ports,
        }
    }

    fn url(&self, prefix: &str) -> String {
        format!("http://127.0.0.1:{}", self.ports[prefix])
    }

    /// The environment of `mfe` (migrate and dev) for this stage.
    fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = vec![
            ("SHARED_DATABASE_URL".into(), self.legacy.url.clone()),
            (
                "MFE_TOPOLOGY_FILE".into(),
                self.dir.join("topology.env").display().to_string(),
            ),
            (
                "MFE_DEV_PIDFILE".into(),
                self.dir.join("dev.pid").display().to_string(),
            ),
            ("PSP_SANDBOX_PORT".into(), self.ports["psp"].to_string()),
            ("PSP_SANDBOX_HOST".into(), "127.0.0.1".into()),
            ("PSP_SANDBOX_LATENCY_MS".into(), "0".into()),
            (
                "PSP_WEBHOOK_SECRET".into(),
                "e2e-rollback-webhook-secret".into(),
            ),
            ("PSP_URL".into(), self.url("psp")),
            (
                "PSP_WEBHOOK_URL".into(),
                format!("{}/psp/webhooks", self.url("PAYMENTS")),
            ),
            ("AUTH_SERVICE_URL".into(), self.url("AUTH")),
            (
                "AUTH_DATA_DIR".into(),
                self.dir.join("auth").display().to_string(),
            ),
            (
                "AUTH_SERVICE_CLIENTS".into(),
                "payments-service=e2e-rb-payments-secret,admin-service=e2e-rb-admin-secret1".into(),
            ),
            (
                "PAYMENTS_AUTH_CLIENT_SECRET".into(),
                "e2e-rb-payments-secret".into(),
            ),
            (
                "ADMIN_AUTH_CLIENT_SECRET".into(),
                "e2e-rb-admin-secret1".into(),
            ),
            ("AUTH_BOOTSTRAP_ADMIN_EMAIL".into(), ADMIN_EMAIL.into()),
            (
                "AUTH_BOOTSTRAP_ADMIN_PASSWORD".into(),
                ADMIN_PASSWORD.into(),
            ),
            ("RABBITMQ_URL".into(), self.broker.url.clone()),
            ("EVENTS_EXCHANGE".into(), self.broker.exchange.clone()),
            ("EVENTS_RETRY_DELAY_MS".into(), "200".into()),
            ("EVENTS_RELAY_POLL_MS".into(), "100".into()),
            ("LOG_FORMAT".into(), "json".into()),
        ];
        for ((binary, prefix), db) in SERVICES.iter().zip(&self.targets) {
            env.push((format!("{prefix}_DATABASE_URL"), db.url.clone()));
            env.push((
                format!("{prefix}_SERVICE_PORT"),
                self.ports[prefix].to_string(),
            ));
            env.push((format!("{prefix}_SERVICE_HOST"), "127.0.0.1".into()));
            env.push((
                format!("{prefix}_EVENTS_QUEUE"),
                self.broker.queue_for(binary),
            ));
        }
        env
    }

    fn mfe(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(e2e::binary("mfe"));
        cmd.args(args)
            .env_remove("DATABASE_TOPOLOGY")
            .env_remove("EVENTS_QUEUE")
            .envs(self.env());
        cmd
    }

    /// `mfe <args>` off the runtime; (exit code, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = self.mfe(args);
        let out = tokio::task::spawn_blocking(move || cmd.output().expect("mfe runs"))
            .await
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    async fn run_ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args).await;
        assert_eq!(code, 0, "mfe {args:?}:\n{err}\n{out}");
        out
    }

    fn topology(&self) -> String {
        std::fs::read_to_string(self.dir.join("topology.env")).unwrap()
    }

    /// The topology `mfe dev` last started its services in (its state file).
    fn dev_topology(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("dev.state.json")).unwrap();
        let state: Value = serde_json::from_str(&text).unwrap();
        state["topology"].as_str().unwrap().to_string()
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `mfe dev`, stopped (SIGTERM, it stops its children) when dropped.
struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        terminate(&self.0);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.0.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
    }
}

/// SIGTERM, the graceful stop (the writer reports, `mfe dev` stops its children).
fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

async fn all_ready(stage: &Stage) {
    let http = reqwest::Client::new();
    for (prefix, path) in [
        ("psp", "/health"),
        ("AUTH", "/ready"),
        ("PAYMENTS", "/ready"),
        ("ADMIN", "/ready"),
        ("PROFILE", "/ready"),
    ] {
        let url = format!("{}{path}", stage.url(prefix));
        eventually(Duration::from_secs(90), || {
            let http = http.clone();
            let url = url.clone();
            async move {
                http.get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
                    .then_some(())
            }
        })
        .await
        .unwrap_or_else(|| panic!("{url} not ready"));
    }
}

async fn login(api: &Api, email: &str, password: &str) -> Value {
    let reply = api
        .post(
            "/auth/login",
            None,
            &json!({"email": email, "password": password}),
        )
        .await;
    assert_eq!(reply.status, 200, "login {email}: {}", reply.body);
    reply.body
}

async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Nothing in flight: every outbox published and the audit log (which records every event) still
/// for a moment.
async fn settled(pools: &[sqlx::PgPool; 4]) {
    let mut last = -1;
    let mut still_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let mut pending = 0;
        for (pool, schema) in pools.iter().zip(["auth", "payments", "admin", "profile"]) {
            pending += sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL"
            )))
            .fetch_one(pool)
            .await
            .unwrap_or(0);
        }
        let audit = count(&pools[2], "SELECT count(*) FROM audit_logs").await;
        if pending > 0 || audit != last {
            last = audit;
            still_since = Instant::now();
        } else if still_since.elapsed() > Duration::from_secs(2) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the platform did not settle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn there_and_back_with_the_platform_running_all_along_loses_no_write() {
    there_and_back(true).await;
}

/// As the main job does it: the platform first starts after cutover (so admin's audit chain
/// exists only in admin_db, and goes back to legacy with its rows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn there_and_back_with_the_platform_started_after_cutover_loses_no_write() {
    there_and_back(false).await;
}

async fn there_and_back(platform_before_cutover: bool) {
    let stage = Stage::new();
    stage
        .run_ok(&[
            "legacy",
            "seed",
            "--url",
            &stage.legacy.url,
            "--scale",
            "0.01",
            "--seed",
            "11",
        ])
        .await;
    stage.run_ok(&["events", "declare"]).await;

    // The platform on the legacy database, and the live POC-2 writing beside it.
    let start_dev = || {
        Dev(stage
            .mfe(&["dev"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mfe dev starts"))
    };
    let mut dev = None;
    if platform_before_cutover {
        dev = Some(start_dev());
        all_ready(&stage).await;
        assert_eq!(stage.dev_topology(), "shared");
    }
    let mut load = stage
        .mfe(&[
            "legacy",
            "write-load",
            "--url",
            &stage.legacy.url,
            "--rate",
            "60",
            "--duration",
            "600",
            "--workers",
            "2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for phase in ["prepare", "copy", "sync", "verify"] {
        stage.run_ok(&["migrate", phase]).await;
    }
    let cutover = stage.run_ok(&["migrate", "cutover", "--json"]).await;
    let cutover: Value = serde_json::from_str(&cutover).unwrap();
    assert!(cutover["freezeSeconds"].as_f64().unwrap() > 0.0);
    terminate(&load);
    load.wait().unwrap();
    assert!(stage.topology().contains("split"));
    // mfe dev restarted its services on their own databases (or starts them there).
    if dev.is_none() {
        dev = Some(start_dev());
    }
    all_ready(&stage).await;
    assert_eq!(stage.dev_topology(), "split");
    let pools: [sqlx::PgPool; 4] = [
        stage.targets[0].pool().await,
        stage.targets[1].pool().await,
        stage.targets[2].pool().await,
        stage.targets[3].pool().await,
    ];

    // Writes through every service.
    let auth = Api::new(stage.url("AUTH"));
    let payments = Api::new(stage.url("PAYMENTS"));
    let profile = Api::new(stage.url("PROFILE"));
    let admin = Api::new(stage.url("ADMIN"));
    let registered = auth
        .post(
            "/auth/register",
            None,
            &json!({"email": "after.cutover@rollback.test", "password": "a-long-password-1", "name": "After Cutover"}),
        )
        .await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let token = registered.body["accessToken"].as_str().unwrap().to_string();
    let user_id = registered.body["user"]["id"].as_str().unwrap().to_string();
    let refresh = registered.body["refreshToken"].as_str().map(str::to_string);
    eventually(Duration::from_secs(20), || async {
        (profile.get("/profile/me", Some(&token)).await.status == 200).then_some(())
    })
    .await
    .expect("the default profile appears by event");
    let edited = profile
        .call(
            Method::PATCH,
            "/profile/me",
            Some(&token),
            Some(&json!({"bio": "written after cutover", "phone": "+4915112345678"})),
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    let paid = payments
        .post(
            "/payments",
            Some(&token),
            &json!({"recipientEmail": "alice@legacy.test", "amount": "23.45", "type": "instant", "description": "after cutover"}),
        )
        .await;
    assert!(paid.status == 201 || paid.status == 202, "{}", paid.body);
    let payment_id = paid.body["id"].as_str().unwrap().to_string();
    eventually(Duration::from_secs(30), || async {
        (payments
            .get(&format!("/payments/{payment_id}"), Some(&token))
            .await
            .body["status"]
            == "completed")
            .then_some(())
    })
    .await
    .expect("the payment completes through the sandbox");
    let ops = login(&auth, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let ops_token = ops["accessToken"].as_str().unwrap().to_string();
    for (key, value) in [
        ("rollback.kept", json!({"on": true})),
        ("rollback.gone", json!(1)),
    ] {
        let put = admin
            .call(
                Method::PUT,
                &format!("/admin/config/{key}"),
                Some(&ops_token),
                Some(&json!({"value": value, "description": "after cutover"})),
            )
            .await;
        assert!(put.status == 200 || put.status == 201, "{}", put.body);
    }
    let deleted = admin
        .call(
            Method::DELETE,
            "/admin/config/rollback.gone",
            Some(&ops_token),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    if let Some(refresh) = &refresh {
        let out = auth
            .post("/auth/logout", None, &json!({"refreshToken": refresh}))
            .await;
        assert!(out.status.is_success(), "logout: {}", out.body);
    }
    settled(&pools).await;

    // Back.
    let (code, out, err) = stage.run(&["migrate", "rollback", "--json"]).await;
    assert_eq!(code, 0, "{err}\n{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert!(
        report["conflicts"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert!(report["freezeSeconds"].as_f64().unwrap() > 0.0);
    let written: u64 = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t["inserted"].as_u64().unwrap()
                + t["updated"].as_u64().unwrap()
                + t["deleted"].as_u64().unwrap()
        })
        .sum();
    assert!(written >= 8, "{report}");
    assert!(stage.topology().contains("DATABASE_TOPOLOGY=shared"));
    let (code, verify, err) = stage.run(&["migrate", "verify", "--json"]).await;
    assert_eq!(code, 0, "verify after the rollback: {err}\n{verify}");

    // The legacy database holds every write.
    let legacy = stage.legacy.pool().await;
    let l = |sql: String| {
        let legacy = legacy.clone();
        async move { count(&legacy, &sql).await }
    };
    assert_eq!(
        l(format!("SELECT count(*) FROM users WHERE id = '{user_id}'")).await,
        1
    );
    assert_eq!(
        l(format!("SELECT count(*) FROM user_profiles WHERE user_id = '{user_id}' AND bio = 'written after cutover'")).await,
        1
    );
    assert_eq!(
        l(format!(
            "SELECT count(*) FROM payments WHERE id = '{payment_id}' AND status = 'completed'"
        ))
        .await,
        1
    );
    assert_eq!(
        l(format!(
            "SELECT count(*) FROM payment_transactions WHERE payment_id = '{payment_id}'"
        ))
        .await,
        3
    );
    assert!(
        l(format!(
            "SELECT count(*) FROM audit_logs WHERE resource_id = '{payment_id}'"
        ))
        .await
            >= 3
    );
    assert_eq!(
        l("SELECT count(*) FROM system_config WHERE key = 'rollback.kept'".into()).await,
        1
    );
    assert_eq!(
        l("SELECT count(*) FROM system_config WHERE key = 'rollback.gone'".into()).await,
        0
    );

    // The services, restarted by mfe dev on the shared topology, serve it.
    all_ready(&stage).await;
    assert_eq!(stage.dev_topology(), "shared");
    let again = login(&auth, "after.cutover@rollback.test", "a-long-password-1").await;
    let token = again["accessToken"].as_str().unwrap().to_string();
    let payment = payments
        .get(&format!("/payments/{payment_id}"), Some(&token))
        .await;
    assert_eq!(payment.status, 200, "{}", payment.body);
    assert_eq!(payment.body["status"], "completed");
    let me = profile.get("/profile/me", Some(&token)).await;
    assert_eq!(me.body["bio"], "written after cutover", "{}", me.body);
    let chain = admin
        .get("/admin/audit-logs/verify", Some(&ops_token))
        .await;
    assert_eq!(chain.body["valid"], true, "{}", chain.body);

    // Twice: nothing written.
    let (code, out, err) = stage.run(&["migrate", "rollback", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let again: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(again["alreadyDone"], true, "{again}");
    drop(dev);
}
