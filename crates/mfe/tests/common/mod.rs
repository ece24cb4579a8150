//! The fixture the `mfe migrate` tests share: a seeded legacy database, four service databases, and
//! the real binary pointed at them.
#![allow(dead_code)] // each test binary uses a different part

use serde_json::Value;
use sqlx::PgPool;
use std::process::{Command, Output};
use test_support::TestDb;

pub const BIN: &str = env!("CARGO_BIN_EXE_mfe");

pub struct Fixture {
    pub legacy: std::sync::Arc<TestDb>,
    pub targets: [TestDb; 4],
}

pub fn fresh_targets() -> [TestDb; 4] {
    [
        TestDb::unborn(),
        TestDb::unborn(),
        TestDb::unborn(),
        TestDb::unborn(),
    ]
}

pub const TARGET_VARS: [&str; 4] = [
    "AUTH_DATABASE_URL",
    "PAYMENTS_DATABASE_URL",
    "ADMIN_DATABASE_URL",
    "PROFILE_DATABASE_URL",
];

impl Fixture {
    /// A legacy database seeded at `scale`, and four service databases not created yet.
    pub async fn seeded(scale: f64) -> Self {
        let legacy = TestDb::unborn();
        let opts = legacy_seed::SeedOptions {
            url: legacy.url.clone(),
            scale,
            seed: 7,
            replace: false,
        };
        legacy_seed::seed(&opts, &|_, _| {})
            .await
            .expect("seeding works");
        Self {
            legacy: std::sync::Arc::new(legacy),
            targets: fresh_targets(),
        }
    }

    /// The same legacy database with four other, not yet created, service databases.
    pub fn with_fresh_targets(&self) -> Self {
        Self {
            legacy: self.legacy.clone(),
            targets: fresh_targets(),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("migrate")
            .args(args)
            .env("SHARED_DATABASE_URL", &self.legacy.url);
        for (var, db) in TARGET_VARS.iter().zip(&self.targets) {
            cmd.env(var, &db.url);
        }
        cmd
    }

    /// `mfe migrate <args>` started with its output discarded (to be killed or watched).
    pub fn spawn_quiet(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mfe starts")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("mfe runs")
    }

    pub fn run_ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "mfe migrate {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn verify_json(&self) -> (i32, Value) {
        let out = self.run(&["verify", "--json"]);
        let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "verify printed JSON; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), report)
    }

    pub async fn target(&self, index: usize) -> PgPool {
        self.targets[index].pool().await
    }
}

pub fn table<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == name)
        .expect("table in report")
}

/// Every table's full content, as text, in key order: equal on both sides means every column of
/// every row round-tripped exactly.
pub async fn content(pool: &PgPool, table: &schema::contract::Table) -> String {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT coalesce(md5(string_agg(ROW({cols})::text, E'\\n' ORDER BY {key} COLLATE \"C\")), 'empty') FROM public.{t}",
        cols = table.column_list(),
        key = table.key,
        t = table.name
    )))
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The legacy contract's tables, by name.
pub const TABLE_NAMES: &[&str] = &[
    "users",
    "refresh_tokens",
    "payments",
    "payment_transactions",
    "audit_logs",
    "system_config",
    "user_profiles",
];

impl Fixture {
    /// `mfe migrate <args>` (with `extra_env`) off the async runtime, so other tasks of the test
    /// (a write load) keep running meanwhile.
    pub async fn run_async(&self, args: &[&str], extra_env: &[(&str, String)]) -> Output {
        let mut cmd = self.command(args);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        tokio::task::spawn_blocking(move || cmd.output().expect("mfe runs"))
            .await
            .unwrap()
    }

    /// [`Fixture::run_async`] that must succeed; its stdout.
    pub async fn run_ok_async(&self, args: &[&str]) -> String {
        let out = self.run_async(args, &[]).await;
        assert!(
            out.status.success(),
            "mfe migrate {args:?}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// A legacy database at `scale`, copied with a capture slot, synced and verified clean: ready
    /// for a cutover.
    pub async fn ready_for_cutover(scale: f64) -> Self {
        let f = Self::seeded(scale).await;
        for phase in ["prepare", "copy", "sync", "verify"] {
            f.run_ok_async(&[phase]).await;
        }
        f
    }

    /// Runs `sql` in the legacy database.
    pub async fn legacy_sql(&self, sql: &str) {
        let pool = self.legacy.pool().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        pool.close().await;
    }
}

/// Rows per contract table, in [`TABLE_NAMES`] order.
pub async fn counts(pool: &PgPool) -> Vec<i64> {
    let mut out = Vec::new();
    for table in TABLE_NAMES {
        out.push(
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(pool)
                .await
                .unwrap(),
        );
    }
    out
}

/// Waits for `child`, sampling its resident memory every 20 ms; its exit status and peak RSS in
/// KiB.
pub async fn peak_rss(mut child: std::process::Child) -> (std::process::ExitStatus, u64) {
    let pid = child.id();
    let mut peak_kib = 0u64;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, peak_kib);
        }
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let rss = s
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            peak_kib = peak_kib.max(rss);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
