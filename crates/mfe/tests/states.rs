//! Every phase in every state of the migration, through the real `mfe` binary: what the state
//! refuses exits 2 naming the state and writes nothing; the read-only phases run everywhere; the
//! phases a state allows move it as docs/MIGRATION.md's table says.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Output, Stdio};

use common::*;

/// The phases, with the arguments each needs; `import` reads the export made in `dir`.
fn args(phase: &str, dir: &std::path::Path, topology: &std::path::Path) -> Vec<String> {
    let topology_file = format!("--topology-file={}", topology.display());
    let v: Vec<String> = match phase {
        "export" => vec![
            "export".into(),
            "--out".into(),
            dir.join(format!("export-{}", nanos()))
                .display()
                .to_string(),
        ],
        "import" => vec![
            "import".into(),
            "--from".into(),
            dir.join("archive").display().to_string(),
        ],
        "sync --method diff" => vec!["sync".into(), "--method".into(), "diff".into()],
        // The preflight's WAL and disk figures depend on this machine's load, not on the
        // state: an hour of sync at a busy CI server's WAL rate can exceed its free disk.
        "plan" => vec!["plan".into(), "--sync-hours".into(), "0".into()],
        "cutover" | "rollback" => vec![phase.into(), topology_file],
        other => vec![other.into()],
    };
    v
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A directory of the test's own, removed at its end.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("mfe-states-{}-{}", std::process::id(), nanos()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Walk {
    f: Fixture,
    dir: Scratch,
}

impl Walk {
    async fn new(scale: f64) -> Self {
        let f = Fixture::seeded(scale).await;
        let dir = Scratch::new();
        let archive = dir.path().join("archive");
        f.run_ok_async(&["export", "--out", archive.to_str().unwrap()])
            .await;
        Self { f, dir }
    }

    fn topology(&self) -> std::path::PathBuf {
        self.dir.path().join("topology.env")
    }

    async fn run(&self, phase: &str) -> Output {
        let args = args(phase, self.dir.path(), &self.topology());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.f
            .run_async(
                &args,
                &[(
                    "MFE_DEV_PIDFILE",
                    self.dir.path().join("no-dev.pid").display().to_string(),
                )],
            )
            .await
    }

    async fn state(&self) -> String {
        let out = self.f.run_ok_async(&["status", "--json"]).await;
        let status: serde_json::Value = serde_json::from_str(&out).unwrap();
        status["state"]
            .as_str()
            .unwrap_or("not started")
            .to_string()
    }

    /// What the services own: every service database's contract tables, as text.
    async fn service_content(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, service) in platform::Service::ALL.into_iter().enumerate() {
            let Ok(pool) = sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .connect(&self.f.targets[i].url)
                .await
            else {
                out.push("absent".into());
                continue;
            };
            for table in schema::contract::tables_of(service) {
                let present: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                    .bind(format!("public.{}", table.name))
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                out.push(if present {
                    content(&pool, table).await
                } else {
                    "no table".into()
                });
            }
            pool.close().await;
        }
        out
    }

    /// Each phase in `refused` exits 2 naming `state`, and the state and the service databases
    /// are as they were.
    async fn refuses(&self, state: &str, refused: &[&str]) {
        assert_eq!(self.state().await, state);
        let before = self.service_content().await;
        for phase in refused {
            let out = self.run(phase).await;
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{phase} in {state}: {stderr}{}",
                String::from_utf8_lossy(&out.stdout)
            );
            assert!(
                stderr.contains("refused:") && stderr.contains(state),
                "{phase} in {state} names the state: {stderr}"
            );
            assert!(
                stderr.contains("`mfe migrate "),
                "{phase} in {state} says what to run instead: {stderr}"
            );
        }
        assert_eq!(self.state().await, state, "a refused phase moved the state");
        assert_eq!(
            self.service_content().await,
            before,
            "a refused phase wrote into a service database"
        );
    }

    /// The read-only phases run (are not refused) and leave the state where it was.
    async fn reads(&self, state: &str) {
        for phase in ["plan", "export", "verify", "status"] {
            let out = self.run(phase).await;
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !stderr.contains("refused:"),
                "{phase} reads only and runs in {state}: {stderr}"
            );
            if phase != "verify" {
                assert!(out.status.success(), "{phase} in {state}: {stderr}");
            }
        }
        self.dashboard_starts(state);
        assert_eq!(self.state().await, state);
    }

    fn dashboard_starts(&self, state: &str) {
        let mut child = self
            .f
            .command(&["dashboard", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("read-only view") {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            seen.contains("read-only view") && !seen.contains("refused:"),
            "the dashboard serves in {state}: {seen}"
        );
    }

    /// `phase` runs and leaves the migration in `then`.
    async fn moves(&self, phase: &str, then: &str) {
        let out = self.run(phase).await;
        assert!(
            out.status.success(),
            "{phase}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(self.state().await, then, "after {phase}");
    }

    async fn legacy_slots(&self) -> i64 {
        let legacy = self.f.legacy.pool().await;
        let slots: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()",
        )
        .fetch_one(&legacy)
        .await
        .unwrap();
        legacy.close().await;
        slots
    }
}

const LIVE: &[&str] = &["sync", "sync --method diff", "cutover"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_prepare_only_what_needs_no_copy_runs() {
    let w = Walk::new(0.005).await;
    let mut refused = LIVE.to_vec();
    refused.extend(["rollback", "copy", "import"]);
    w.refuses("not started", &refused).await;
    w.reads("not started").await;
    // Abort has nothing to drop and says so.
    let out = w.run("abort").await;
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no capture slot"));
    assert_eq!(w.state().await, "not started");
    w.moves("prepare", "prepared").await;
    w.moves("abort", "aborted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_copies_or_imports_and_follows_nothing_yet() {
    let w = Walk::new(0.005).await;
    w.moves("prepare", "prepared").await;
    let mut refused = LIVE.to_vec();
    refused.push("rollback");
    w.refuses("prepared", &refused).await;
    w.reads("prepared").await;
    w.moves("prepare", "prepared").await;
    w.moves("import", "copied").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_did_not_finish_is_resumed_before_anything_follows_it() {
    let w = Walk::new(0.01).await;
    w.moves("prepare", "prepared").await;
    // Slowed down, then killed once it has started.
    let mut copy =
        w.f.spawn_quiet(&["copy", "--max-rate", "100", "--jobs", "1"]);
    test_support::eventually(std::time::Duration::from_secs(60), || async {
        (w.state().await == "copying").then_some(())
    })
    .await
    .expect("the copy never started");
    copy.kill().unwrap();
    copy.wait().unwrap();
    let mut refused = LIVE.to_vec();
    refused.push("rollback");
    w.refuses("copying", &refused).await;
    w.reads("copying").await;
    w.moves("prepare", "copying").await;
    w.moves("abort", "aborted").await;
    w.moves("copy", "copied").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copied_and_syncing_run_every_phase_but_rollback() {
    let w = Walk::new(0.005).await;
    w.moves("prepare", "prepared").await;
    w.moves("copy", "copied").await;
    w.refuses("copied", &["rollback"]).await;
    w.reads("copied").await;
    for phase in ["prepare", "copy", "import"] {
        w.moves(phase, "copied").await;
    }
    w.moves("sync --method diff", "syncing").await;
    w.refuses("syncing", &["rollback"]).await;
    w.reads("syncing").await;
    for phase in ["prepare", "copy", "import", "sync", "sync --method diff"] {
        w.moves(phase, "syncing").await;
    }
    w.moves("verify", "syncing").await;
    assert_eq!(w.legacy_slots().await, 1);
    w.moves("cutover", "cut over").await;
    // The legacy database is frozen: its capture slot has nothing left to capture.
    assert_eq!(
        w.legacy_slots().await,
        0,
        "cutover dropped the capture slot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_cutover_nothing_overwrites_the_services_writes_and_rollback_ends_it() {
    let w = Walk::new(0.005).await;
    for phase in ["prepare", "copy", "sync", "verify"] {
        w.f.run_ok_async(&[phase]).await;
    }
    w.moves("cutover", "cut over").await;
    // What the services write after cutover: a registration, a config key, a rename.
    let auth = w.f.target(0).await;
    sqlx::raw_sql(
        "INSERT INTO users (id, email, password_hash, name, role, updated_at)
           VALUES ('after-cutover', 'after@cutover.test', 'x', 'After', 'CUSTOMER', now());
         UPDATE users SET name = 'Renamed after cutover'
           WHERE id = (SELECT id FROM users WHERE id <> 'after-cutover' ORDER BY id LIMIT 1);",
    )
    .execute(&auth)
    .await
    .unwrap();
    let admin = w.f.target(2).await;
    sqlx::raw_sql(
        "INSERT INTO system_config (key, value, updated_at)
           VALUES ('set.after.cutover', '\"yes\"', now())",
    )
    .execute(&admin)
    .await
    .unwrap();
    w.refuses(
        "cut over",
        &[
            "prepare",
            "copy",
            "import",
            "sync",
            "sync --method diff",
            "cutover",
        ],
    )
    .await;
    w.reads("cut over").await;
    // The way back is captured: abort would end any rollback, so it asks first.
    let out = w.run("abort").await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--forget-way-back"));
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE id = 'after-cutover'")
        .fetch_one(&auth)
        .await
        .unwrap();
    assert_eq!(kept, 1);
    w.moves("rollback", "rolled back").await;
    let legacy = w.f.legacy.pool().await;
    let back: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM users WHERE id = 'after-cutover'
           OR name = 'Renamed after cutover'",
    )
    .fetch_one(&legacy)
    .await
    .unwrap();
    assert_eq!(back, 2, "the services' writes went back to legacy");
    legacy.close().await;
    auth.close().await;
    admin.close().await;

    w.refuses(
        "rolled back",
        &[
            "prepare",
            "copy",
            "import",
            "sync",
            "sync --method diff",
            "cutover",
        ],
    )
    .await;
    w.reads("rolled back").await;
    w.moves("rollback", "rolled back").await;
    w.moves("abort", "rolled back").await;
    assert_eq!(w.legacy_slots().await, 0);
    for i in 0..4 {
        let pool = w.f.target(i).await;
        let slots: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(slots, 0, "rollback dropped the way back of service {i}");
        pool.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_migration_catches_up_only_by_comparing() {
    let w = Walk::new(0.005).await;
    for phase in ["prepare", "copy"] {
        w.f.run_ok_async(&[phase]).await;
    }
    w.moves("abort", "aborted").await;
    assert_eq!(w.legacy_slots().await, 0);
    w.refuses("aborted", &["sync", "cutover", "rollback"]).await;
    w.reads("aborted").await;
    w.moves("abort", "aborted").await;
    w.moves("prepare", "aborted").await;
    w.moves("copy", "copied").await;
    w.moves("import", "copied").await;
    w.moves("sync --method diff", "syncing").await;
    w.moves("abort", "aborted").await;
    w.moves("sync --method diff", "syncing").await;
}
