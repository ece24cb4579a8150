//! The whole platform under `mfe dev`, as an operator runs it: a legacy database, four service
//! databases, the test's own broker exchange and queues, free ports, a topology file and `mfe dev`'s
//! pid and state files in a directory of the test's own.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::{TestBroker, TestDb, eventually};

use crate::binary;

pub const SERVICES: [(&str, &str); 4] = [
    ("auth-service", "AUTH"),
    ("payments-service", "PAYMENTS"),
    ("admin-service", "ADMIN"),
    ("profile-service", "PROFILE"),
];
pub const ADMIN_EMAIL: &str = "ops@platform.test";
pub const ADMIN_PASSWORD: &str = "a-long-admin-password";

pub struct Stage {
    pub legacy: TestDb,
    pub targets: Vec<TestDb>,
    pub broker: TestBroker,
    pub dir: PathBuf,
    pub ports: HashMap<&'static str, u16>,
}

impl Stage {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("mfe-e2e-dev-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("topology.env"), "DATABASE_TOPOLOGY=shared\n").unwrap();
        let ports = ["psp", "AUTH", "PAYMENTS", "ADMIN", "PROFILE"]
            .into_iter()
            .map(|k| (k, crate::free_port()))
            .collect();
        Self {
            legacy: TestDb::unborn(),
            targets: SERVICES.iter().map(|_| TestDb::unborn()).collect(),
            broker: TestBroker::new(),
            dir,
            ports,
        }
    }

    pub fn url(&self, prefix: &str) -> String {
        format!("http://127.0.0.1:{}", self.ports[prefix])
    }

    /// The environment of `mfe` (migrate and dev) for this stage.
    pub fn env(&self) -> Vec<(String, String)> {
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

    pub fn mfe(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary("mfe"));
        cmd.args(args)
            .env_remove("DATABASE_TOPOLOGY")
            .env_remove("EVENTS_QUEUE")
            .envs(self.env());
        cmd
    }

    /// `mfe <args>` off the runtime; (exit code, stdout, stderr).
    pub async fn run(&self, args: &[&str]) -> (i32, String, String) {
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

    pub async fn run_ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args).await;
        assert_eq!(code, 0, "mfe {args:?}:\n{err}\n{out}");
        out
    }

    pub fn topology(&self) -> String {
        std::fs::read_to_string(self.dir.join("topology.env")).unwrap()
    }

    /// The topology `mfe dev` last started its services in (its state file).
    pub fn dev_topology(&self) -> String {
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
pub struct Dev(pub Child);

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
pub fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

pub async fn all_ready(stage: &Stage) {
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

impl Stage {
    /// `mfe dev` on this stage, stopped when the value is dropped.
    pub fn start_dev(&self) -> Dev {
        Dev(self
            .mfe(&["dev"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mfe dev starts"))
    }

    /// The pid of `mfe dev`'s child `name` (auth, payments, admin, profile, psp-sandbox), from its
    /// state file.
    pub fn child_pid(&self, name: &str) -> Option<u32> {
        let text = std::fs::read_to_string(self.dir.join("dev.state.json")).ok()?;
        let state: Value = serde_json::from_str(&text).ok()?;
        state["services"][name]["pid"].as_u64().map(|p| p as u32)
    }
}

impl Default for Stage {
    fn default() -> Self {
        Self::new()
    }
}
