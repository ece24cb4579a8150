//! `mfe dev` with the real binaries as its children, on free ports, fresh databases and a broker
//! exchange and queues of the test's own: every child becomes ready and a killed one comes back;
//! SIGUSR1 and SIGHUP (through `devctl`, the CLI, or sent directly) hold the children and start
//! them again in the topology the file names by then; neither SIGTERM nor SIGKILL of `mfe dev`
//! leaves a child behind.
//!
//! The service binaries must be built (`cargo build --workspace`, or the README's test command).

// The client side is compiled in here as it is into `mfe`, so the test drives the same code that
// `mfe migrate cutover` and `rollback` call.
#[allow(dead_code)]
#[path = "../src/devctl.rs"]
mod devctl;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devctl::{DevState, Phase};
use test_support::{TestBroker, TestDb, eventually};

const BIN: &str = env!("CARGO_BIN_EXE_mfe");
/// Every child, by the name that prefixes its lines and keys the state file.
const NAMES: [&str; 5] = ["psp-sandbox", "auth", "payments", "admin", "profile"];
/// The four services: their binary name and variable prefix.
const SERVICES: [(&str, &str, &str); 4] = [
    ("auth", "auth-service", "AUTH"),
    ("payments", "payments-service", "PAYMENTS"),
    ("admin", "admin-service", "ADMIN"),
    ("profile", "profile-service", "PROFILE"),
];
/// The first start creates and migrates four databases.
const START: Duration = Duration::from_secs(90);
const RESTART: Duration = Duration::from_secs(60);

/// A running `mfe dev` and everything it was pointed at.
struct Dev {
    process: Child,
    dir: PathBuf,
    pidfile: PathBuf,
    statefile: PathBuf,
    topology_file: PathBuf,
    ports: HashMap<&'static str, u16>,
    output: Arc<Mutex<Vec<String>>>,
    legacy: TestDb,
    _databases: Vec<TestDb>,
    _broker: TestBroker,
}

impl Dev {
    /// `mfe dev` in the split topology (named by a topology file in its own directory), with
    /// `legacy` as the shared database.
    fn start(legacy: TestDb) -> Self {
        let dir = std::env::temp_dir().join(format!("mfe-dev-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("dev.pid");
        let topology_file = dir.join("topology.env");
        std::fs::write(&topology_file, "DATABASE_TOPOLOGY=split\n").unwrap();
        let ports: HashMap<&'static str, u16> = NAMES.into_iter().zip(free_ports()).collect();
        let broker = TestBroker::new();
        let databases: Vec<TestDb> = SERVICES.iter().map(|_| TestDb::unborn()).collect();

        let mut command = Command::new(BIN);
        command
            .arg("dev")
            .env_remove("DATABASE_TOPOLOGY")
            .env_remove("EVENTS_QUEUE")
            .env_remove("MFE_BIN_DIR")
            .env("MFE_DEV_PIDFILE", &pidfile)
            .env("MFE_TOPOLOGY_FILE", &topology_file)
            .env("SHARED_DATABASE_URL", &legacy.url)
            .env("PSP_SANDBOX_PORT", ports["psp-sandbox"].to_string())
            .env("PSP_WEBHOOK_SECRET", "test-webhook-secret-0123")
            .env("AUTH_DATA_DIR", dir.join("auth"))
            .env(
                "AUTH_SERVICE_CLIENTS",
                "payments-service=test-payments-secret-01,admin-service=test-admin-secret-0123",
            )
            .env("PAYMENTS_AUTH_CLIENT_SECRET", "test-payments-secret-01")
            .env("ADMIN_AUTH_CLIENT_SECRET", "test-admin-secret-0123")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
            .env("RABBITMQ_URL", &broker.url)
            .env("EVENTS_EXCHANGE", &broker.exchange);
        for ((name, binary, prefix), db) in SERVICES.iter().zip(&databases) {
            command
                .env(format!("{prefix}_DATABASE_URL"), &db.url)
                .env(format!("{prefix}_SERVICE_PORT"), ports[name].to_string())
                .env(format!("{prefix}_SERVICE_HOST"), "127.0.0.1")
                .env(format!("{prefix}_EVENTS_QUEUE"), broker.queue_for(binary));
        }
        for binary in ["psp-sandbox"]
            .iter()
            .chain(SERVICES.iter().map(|(_, b, _)| b))
        {
            let path = Path::new(BIN).with_file_name(binary);
            assert!(
                path.exists(),
                "{} is missing: build the services first (`cargo build --workspace`)",
                path.display()
            );
        }

        let mut process = command.spawn().expect("mfe dev starts");
        let output = Arc::new(Mutex::new(Vec::new()));
        collect(process.stdout.take().unwrap(), output.clone(), "");
        collect(process.stderr.take().unwrap(), output.clone(), "stderr: ");
        Self {
            process,
            dir,
            statefile: devctl::state_file(&pidfile),
            pidfile,
            topology_file,
            ports,
            output,
            legacy,
            _databases: databases,
            _broker: broker,
        }
    }

    fn state(&self) -> Option<DevState> {
        let text = std::fs::read_to_string(&self.statefile).ok()?;
        Some(serde_json::from_str(&text).expect("the state file is whole JSON"))
    }

    fn output(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    fn tail(&self) -> String {
        let lines = self.output();
        lines[lines.len().saturating_sub(150)..].join("\n")
    }

    /// Waits until the state file satisfies `done`.
    async fn wait_state(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&DevState) -> bool,
    ) -> DevState {
        let reached = eventually(limit, || {
            let state = self.state().filter(|s| done(s));
            async move { state }
        })
        .await;
        reached.unwrap_or_else(|| {
            panic!(
                "mfe dev: not {what} within {limit:?}; state: {:#?}\noutput:\n{}",
                self.state(),
                self.tail()
            )
        })
    }

    fn signal(&self, signal: libc::c_int) {
        send(self.process.id(), signal);
    }

    async fn exit_status(&mut self, limit: Duration) -> ExitStatus {
        let process = &mut self.process;
        let status = eventually(limit, || {
            let status = process.try_wait().expect("try_wait");
            async move { status }
        })
        .await;
        status.unwrap_or_else(|| panic!("mfe dev still runs after {limit:?}"))
    }

    /// `mfe dev <args>` (a control command) against this `mfe dev`.
    fn control(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("dev")
            .args(args)
            .env("MFE_DEV_PIDFILE", &self.pidfile)
            .output()
            .expect("mfe runs")
    }

    fn children(state: &DevState) -> Vec<u32> {
        state.services.values().filter_map(|s| s.pid).collect()
    }

    /// Lines a child printed, without their prefix, from line `from` of the output on.
    fn lines_of(&self, name: &str, from: usize) -> Vec<String> {
        let prefix = format!("{name:<11} | ");
        self.output()
            .into_iter()
            .skip(from)
            .filter_map(|line| line.strip_prefix(&prefix).map(str::to_string))
            .collect()
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Ok(None) = self.process.try_wait() {
            self.signal(libc::SIGTERM);
            // mfe dev ends within its 10 s stop grace; nextest's timeout covers a hang.
            let _ = self.process.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn collect(pipe: impl Read + Send + 'static, sink: Arc<Mutex<Vec<String>>>, tag: &'static str) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(format!("{tag}{line}"));
        }
    });
}

/// Five ports free at the moment, all different.
fn free_ports() -> Vec<u16> {
    let listeners: Vec<_> = (0..NAMES.len())
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

fn send(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) with a pid this test was told about.
    let sent = unsafe { libc::kill(pid as i32, signal) };
    assert_eq!(sent, 0, "signal {signal} to {pid}");
}

/// The process has exited (a zombie nobody reaped yet counts: it runs nothing).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

fn port_closed(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
}

/// The `listening` line a child logged (JSON), as a value.
fn listening(lines: &[String]) -> Vec<serde_json::Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "listening")
        .collect()
}

async fn answers_200(url: &str) -> bool {
    reqwest::get(url)
        .await
        .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
}

#[tokio::test]
async fn every_child_becomes_ready_a_killed_one_comes_back_and_sigterm_stops_them_all() {
    let mut dev = Dev::start(TestDb::unborn());
    let state = dev
        .wait_state("all ready", START, |s| s.all(Phase::Ready))
        .await;
    assert_eq!(state.pid, dev.process.id());
    assert_eq!(state.topology, "split");
    assert!(!state.held);
    for name in NAMES {
        let entry = &state.services[name];
        assert_eq!(entry.url, format!("http://127.0.0.1:{}", dev.ports[name]));
        let route = if name == "psp-sandbox" {
            "/health"
        } else {
            "/ready"
        };
        assert!(
            answers_200(&format!("{}{route}", entry.url)).await,
            "{name} {route}"
        );
        let logged = listening(&dev.lines_of(name, 0));
        assert_eq!(
            logged.len(),
            1,
            "{name}'s lines carry its prefix:\n{}",
            dev.tail()
        );
        assert_eq!(logged[0]["port"], dev.ports[name]);
        if name != "psp-sandbox" {
            assert_eq!(logged[0]["topology"], "Split", "{name}");
        }
    }
    let all_ready = dev
        .lines_of("mfe dev", 0)
        .into_iter()
        .find(|l| l.starts_with("all ready, topology split: "))
        .expect("one line says all are ready");
    for name in NAMES {
        assert!(
            all_ready.contains(&format!("{name} {}", state.services[name].url)),
            "{all_ready}"
        );
    }

    let killed = state.services["payments"].pid.unwrap();
    send(killed, libc::SIGKILL);
    let after = dev
        .wait_state("payments restarted", RESTART, |s| {
            let payments = &s.services["payments"];
            payments.state == Phase::Ready && payments.pid.is_some_and(|p| p != killed)
        })
        .await;
    assert!(gone(killed));
    assert!(
        dev.lines_of("mfe dev", 0)
            .iter()
            .any(|l| l == "payments exited (signal: 9 (SIGKILL)); restarting in 0.5 s"),
        "{}",
        dev.tail()
    );
    for name in NAMES.into_iter().filter(|n| *n != "payments") {
        assert_eq!(
            after.services[name].pid, state.services[name].pid,
            "{name} was left alone"
        );
    }
    assert!(answers_200(&format!("{}/ready", after.services["payments"].url)).await);

    let children = Dev::children(&after);
    assert_eq!(children.len(), 5);
    dev.signal(libc::SIGTERM);
    let status = dev.exit_status(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}\n{}", dev.tail());
    for pid in children {
        assert!(gone(pid), "child {pid} outlived mfe dev");
    }
    for name in NAMES {
        assert!(port_closed(dev.ports[name]), "{name} still listens");
    }
    assert!(!dev.pidfile.exists() && !dev.statefile.exists());
}

#[tokio::test]
async fn held_children_start_again_in_the_topology_named_by_then() {
    let legacy = TestDb::new().await;
    legacy.execute_script(test_support::LEGACY_SCHEMA_SQL).await;
    let dev = Dev::start(legacy);
    let split = dev
        .wait_state("all ready", START, |s| s.all(Phase::Ready))
        .await;
    assert_eq!(split.topology, "split");

    // devctl, as `mfe migrate cutover` uses it: hold, switch the file, restart.
    let handle = devctl::running_at(&dev.pidfile).expect("devctl finds mfe dev");
    assert_eq!(handle.pid(), dev.process.id());
    handle
        .hold(Duration::from_secs(30))
        .await
        .expect("every child stops");
    let held = handle.state().unwrap();
    assert!(held.held && held.all(Phase::Stopped), "{held:#?}");
    for pid in Dev::children(&split) {
        assert!(gone(pid), "held child {pid} still runs");
    }
    for name in NAMES {
        assert!(port_closed(dev.ports[name]), "held {name} still listens");
    }
    let mark = dev.output().len();
    std::fs::write(&dev.topology_file, "DATABASE_TOPOLOGY=shared\n").unwrap();
    handle
        .restart(RESTART)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", dev.tail()));
    let shared = handle.state().unwrap();
    assert_eq!(shared.topology, "shared");
    assert!(!shared.held && shared.all(Phase::Ready), "{shared:#?}");
    for (name, _, _) in SERVICES {
        assert_ne!(shared.services[name].pid, split.services[name].pid);
        let logged = listening(&dev.lines_of(name, mark));
        assert_eq!(logged.len(), 1, "{name} started once:\n{}", dev.tail());
        assert_eq!(logged[0]["topology"], "Shared", "{name}");
    }
    let schemas: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_namespace WHERE nspname IN ('auth', 'payments', 'admin', 'profile')",
    )
    .fetch_one(&dev.legacy.pool().await)
    .await
    .unwrap();
    assert_eq!(schemas, 4, "the services migrated the shared database");

    // The same by hand: SIGUSR1, then SIGHUP after switching back.
    let before = shared.generation;
    dev.signal(libc::SIGUSR1);
    dev.wait_state("held", RESTART, |s| {
        s.generation > before && s.held && s.all(Phase::Stopped)
    })
    .await;
    for name in NAMES {
        assert!(port_closed(dev.ports[name]), "held {name} still listens");
    }
    let mark = dev.output().len();
    std::fs::write(&dev.topology_file, "DATABASE_TOPOLOGY=split\n").unwrap();
    dev.signal(libc::SIGHUP);
    let back = dev
        .wait_state("ready again", RESTART, |s| {
            s.generation > before + 1 && !s.held && s.all(Phase::Ready)
        })
        .await;
    assert_eq!(back.topology, "split");
    for (name, _, _) in SERVICES {
        let logged = listening(&dev.lines_of(name, mark));
        assert_eq!(logged.len(), 1, "{name} started once:\n{}", dev.tail());
        assert_eq!(logged[0]["topology"], "Split", "{name}");
    }

    let status = dev.control(&["--json", "status"]);
    assert!(status.status.success());
    let shown: DevState = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(shown, back);
}

#[tokio::test]
async fn a_killed_mfe_dev_leaves_no_child_behind() {
    let mut dev = Dev::start(TestDb::unborn());
    dev.wait_state("all ready", START, |s| s.all(Phase::Ready))
        .await;

    let second = dev.control(&[]);
    assert_eq!(second.status.code(), Some(2), "a second mfe dev is refused");
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already running"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );

    // The CLI's hold and restart.
    let hold = dev.control(&["hold"]);
    assert!(
        hold.status.success(),
        "{}",
        String::from_utf8_lossy(&hold.stderr)
    );
    assert!(dev.state().unwrap().held);
    let restart = dev.control(&["restart", "--timeout", "60"]);
    assert!(
        restart.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&restart.stderr),
        dev.tail()
    );
    let state = dev.state().unwrap();
    assert!(!state.held && state.all(Phase::Ready), "{state:#?}");

    let children = Dev::children(&state);
    assert_eq!(children.len(), 5);
    dev.signal(libc::SIGKILL);
    dev.exit_status(Duration::from_secs(5)).await;
    let orphans = eventually(Duration::from_secs(20), || {
        let left: Vec<u32> = children.iter().copied().filter(|p| !gone(*p)).collect();
        async move { left.is_empty().then_some(()) }
    })
    .await;
    assert!(
        orphans.is_some(),
        "children outlived a killed mfe dev: {:?}",
        children.iter().filter(|p| !gone(**p)).collect::<Vec<_>>()
    );
    assert!(
        dev.control(&["status"]).status.code() == Some(1),
        "a dead mfe dev's pid file does not count"
    );
}
