//! `mfe migrate` end to end on real PostgreSQL: a seeded legacy database, four fresh service
//! databases, the real binary (killed with SIGKILL where a crash is the point).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{BIN, Fixture, content, table};
use serde_json::Value;
use test_support::eventually;

#[tokio::test]
async fn copy_then_verify_is_clean_and_every_column_round_trips() {
    let f = Fixture::seeded(0.02).await;
    // No hour of sync: the preflight's disk check then depends on this machine's WAL rate.
    f.run_ok(&["plan", "--sync-hours", "0"]);
    f.run_ok(&["prepare"]);
    let copy = f.run_ok(&["copy", "--jobs", "3", "--chunk-rows", "500", "--json"]);
    let report: Value = serde_json::from_slice(&copy.stdout).unwrap();
    assert!(
        report["tables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == "done")
    );
    let (code, verify) = f.verify_json();
    assert_eq!(code, 0, "{verify:#}");
    assert_eq!(verify["ok"], true);

    let legacy = f.legacy.pool().await;
    for table in schema::contract::TABLES {
        let index = platform::Service::ALL
            .iter()
            .position(|s| *s == table.service)
            .unwrap();
        let target = f.target(index).await;
        assert_eq!(
            content(&legacy, table).await,
            content(&target, table).await,
            "{} differs",
            table.name
        );
        let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {}",
            table.name
        )))
        .fetch_one(&target)
        .await
        .unwrap();
        assert!(rows > 0, "{} copied rows", table.name);
    }
    // Indexes and kept foreign keys are back.
    let auth = f.target(0).await;
    let fk: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'refresh_tokens_user_id_fkey')",
    )
    .fetch_one(&auth)
    .await
    .unwrap();
    assert!(fk);
    let indexes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_indexes WHERE tablename = 'users'")
            .fetch_one(&auth)
            .await
            .unwrap();
    assert_eq!(indexes, 5, "pkey, email key, email, role, lower(email)");
}

#[tokio::test]
async fn prepare_creates_the_four_databases_with_their_tables_and_is_idempotent() {
    let f = Fixture::seeded(0.01).await;
    f.run_ok(&["prepare"]);
    f.run_ok(&["prepare"]);
    let expected = [
        vec!["refresh_tokens", "users"],
        vec!["payment_transactions", "payments"],
        vec!["audit_logs", "system_config"],
        vec!["user_profiles"],
    ];
    for (index, tables) in expected.into_iter().enumerate() {
        let pool = f.target(index).await;
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(found, tables);
    }
}

#[test]
fn a_bad_url_is_named_and_exit_code_is_2() {
    let out = Command::new(BIN)
        .args(["migrate", "prepare"])
        .env("PAYMENTS_DATABASE_URL", "mysql://nope/x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PAYMENTS_DATABASE_URL"));
}

#[tokio::test]
async fn export_then_import_gives_the_same_checksums_as_copy() {
    let f = Fixture::seeded(0.01).await;
    let dir = std::env::temp_dir().join(format!("mfe-export-{}", uuid_like()));
    let out = f.run_ok(&["export", "--out", dir.to_str().unwrap(), "--json"]);
    let exported: Value = serde_json::from_slice(&out.stdout).unwrap();
    f.run_ok(&["prepare"]);
    let imported = f.run_ok(&["import", "--from", dir.to_str().unwrap(), "--json"]);
    let imported: Value = serde_json::from_slice(&imported.stdout).unwrap();
    assert_eq!(imported["checksumsMatch"], true);
    let (code, report) = f.verify_json();
    assert_eq!(code, 0, "{report:#}");

    // The same legacy database copied directly holds the manifest's checksums too.
    let direct = f.with_fresh_targets();
    direct.run_ok(&["prepare"]);
    direct.run_ok(&["copy"]);
    for entry in exported["tables"].as_array().unwrap() {
        let table = schema::contract::table(entry["table"].as_str().unwrap()).unwrap();
        let index = platform::Service::ALL
            .iter()
            .position(|s| *s == table.service)
            .unwrap();
        let mut conn = direct.target(index).await.acquire().await.unwrap();
        let (rows, checksum) = migrator::engine::digest::table_checksum(&mut conn, table)
            .await
            .unwrap();
        assert_eq!(rows, entry["rows"].as_i64().unwrap(), "{}", table.name);
        assert_eq!(
            checksum,
            entry["checksum"].as_str().unwrap(),
            "{}",
            table.name
        );
    }
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn an_export_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::seeded(0.01).await;
    let dir = std::env::temp_dir().join(format!("mfe-private-{}", uuid_like()));
    // A directory that already exists, open to all, is narrowed too.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    f.run_ok(&["export", "--out", dir.to_str().unwrap()]);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        files += 1;
    }
    // The seven tables and the manifest.
    assert_eq!(files, 8);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_password_in_the_url_query_is_never_printed() {
    let f = Fixture::seeded(0.01).await;
    // Trust authentication: the password is taken and ignored.
    let url = format!("{}?password=q-s3cret-never-shown", f.legacy.url);
    for args in [vec!["plan"], vec!["plan", "--json"], vec!["status"]] {
        let out = f
            .command(&args)
            .env("SHARED_DATABASE_URL", &url)
            .output()
            .unwrap();
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!printed.contains("q-s3cret"), "{args:?}: {printed}");
    }
    // A URL that cannot connect is named in the error, masked.
    let unreachable = "postgresql://postgres@127.0.0.1:1/nowhere?password=q-s3cret-never-shown";
    let out = f
        .command(&["plan"])
        .env("SHARED_DATABASE_URL", unreachable)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!printed.contains("q-s3cret"), "{printed}");
    assert!(printed.contains("password=***"), "{printed}");
}

#[tokio::test]
async fn a_damaged_archive_is_refused_before_anything_is_written() {
    let f = Fixture::seeded(0.01).await;
    let dir = std::env::temp_dir().join(format!("mfe-damaged-{}", uuid_like()));
    f.run_ok(&["export", "--out", dir.to_str().unwrap()]);
    f.run_ok(&["prepare"]);
    // Flip one byte in the middle of one file, truncate another.
    let payments = dir.join("payments.copy.zst");
    let mut bytes = std::fs::read(&payments).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&payments, bytes).unwrap();
    let users = dir.join("users.copy.zst");
    let len = std::fs::metadata(&users).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&users)
        .unwrap()
        .set_len(len - 10)
        .unwrap();

    let out = f.run(&["import", "--from", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("payments.copy.zst: damaged") && stderr.contains("users.copy.zst: damaged"),
        "{stderr}"
    );
    for index in 0..4 {
        let pool = f.target(index).await;
        let started: i64 = sqlx::query_scalar("SELECT count(*) FROM mfe_migration.tables")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(started, 0, "nothing was written");
    }
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&f.target(0).await)
        .await
        .unwrap();
    assert_eq!(users, 0);

    std::fs::remove_file(dir.join("manifest.json")).unwrap();
    let out = f.run(&["import", "--from", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "no manifest, no import");
    std::fs::remove_dir_all(dir).ok();
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test]
async fn verify_names_a_changed_a_deleted_and_an_extra_row() {
    let f = Fixture::seeded(0.01).await;
    f.run_ok(&["prepare"]);
    f.run_ok(&["copy"]);
    let payments = f.target(1).await;
    let changed: String = sqlx::query_scalar("UPDATE payments SET description = coalesce(description, '') || '!' WHERE id = (SELECT max(id) FROM payments) RETURNING id")
        .fetch_one(&payments)
        .await
        .unwrap();
    let deleted: String = sqlx::query_scalar("DELETE FROM payment_transactions WHERE id = (SELECT min(id) FROM payment_transactions) RETURNING id")
        .fetch_one(&payments)
        .await
        .unwrap();
    let admin = f.target(2).await;
    sqlx::query("INSERT INTO audit_logs (id, action) VALUES ('not-in-legacy', 'x')")
        .execute(&admin)
        .await
        .unwrap();

    let (code, report) = f.verify_json();
    assert_eq!(code, 1);
    assert_eq!(report["ok"], false);
    assert_eq!(
        table(&report, "payments")["differences"]["changed"],
        serde_json::json!([changed])
    );
    assert_eq!(
        table(&report, "payment_transactions")["differences"]["missing"],
        serde_json::json!([deleted])
    );
    assert_eq!(
        table(&report, "audit_logs")["differences"]["extra"],
        serde_json::json!(["not-in-legacy"])
    );
    assert_eq!(table(&report, "users")["ok"], true);

    let human = f.run(&["verify"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains(&changed) && text.contains(&deleted) && text.contains("not-in-legacy"),
        "{text}"
    );
}

#[tokio::test]
async fn verify_counts_orphaned_cross_service_references() {
    let f = Fixture::seeded(0.01).await;
    f.run_ok(&["prepare"]);
    f.run_ok(&["copy"]);
    let payments = f.target(1).await;
    let sender: String = sqlx::query_scalar("SELECT sender_id FROM payments LIMIT 1")
        .fetch_one(&payments)
        .await
        .unwrap();
    let auth = f.target(0).await;
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(&sender)
        .execute(&auth)
        .await
        .unwrap();
    let (code, report) = f.verify_json();
    assert_eq!(code, 1);
    let orphans = report["orphans"].as_array().unwrap();
    let senders = orphans
        .iter()
        .find(|o| o["foreignKey"] == "payments_sender_id_fkey")
        .unwrap();
    let expected: i64 = sqlx::query_scalar("SELECT count(*) FROM payments WHERE sender_id = $1")
        .bind(&sender)
        .fetch_one(&payments)
        .await
        .unwrap();
    assert_eq!(senders["orphans"], expected);
    assert_eq!(senders["examples"], serde_json::json!([sender]));
}

#[tokio::test]
async fn a_copy_killed_at_several_points_resumes_without_duplicates_or_gaps() {
    let f = Fixture::seeded(0.03).await;
    f.run_ok(&["prepare"]);
    let payments = f.target(1).await;
    let chunks_done = || async {
        let exists: bool =
            sqlx::query_scalar("SELECT to_regclass('mfe_migration.chunks') IS NOT NULL")
                .fetch_one(&payments)
                .await
                .unwrap();
        if !exists {
            return 0i64;
        }
        sqlx::query_scalar("SELECT count(*) FROM mfe_migration.chunks WHERE rows IS NOT NULL")
            .fetch_one(&payments)
            .await
            .unwrap()
    };
    // Kill points: as soon as the journal exists, after a few chunks, after many chunks.
    for after_chunks in [0, 3, 12] {
        let mut child = f
            .command(&["copy", "--jobs", "2", "--chunk-rows", "150"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        eventually(Duration::from_secs(60), || {
            let exited = child.try_wait().unwrap().is_some();
            let done = chunks_done();
            async move { (exited || done.await > after_chunks).then_some(()) }
        })
        .await;
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let before = chunks_done().await;
    assert!(before > 0, "the kills happened mid-copy");
    let out = f.run_ok(&["copy", "--jobs", "2", "--chunk-rows", "150", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let resumed: i64 = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["chunksResumed"].as_i64().unwrap())
        .sum();
    assert!(resumed > 0, "done chunks were not copied again");
    let (code, verify) = f.verify_json();
    assert_eq!(code, 0, "{verify:#}");
    for (index, table) in [
        (1, "payments"),
        (1, "payment_transactions"),
        (0, "users"),
        (2, "audit_logs"),
    ] {
        let pool = f.target(index).await;
        let (all, distinct): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*), count(DISTINCT id) FROM {table}"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(all, distinct, "{table} has duplicates");
    }
}

#[tokio::test]
async fn a_target_that_already_holds_rows_is_refused() {
    let f = Fixture::seeded(0.01).await;
    f.run_ok(&["prepare"]);
    let profile = f.target(3).await;
    sqlx::query(
        "INSERT INTO user_profiles (id, user_id, updated_at) VALUES ('someone-else', 'u', now())",
    )
    .execute(&profile)
    .await
    .unwrap();
    let out = f.run(&["copy"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("user_profiles") && stderr.contains("already holds 1 rows"),
        "{stderr}"
    );
    let auth = f.target(0).await;
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&auth)
        .await
        .unwrap();
    assert_eq!(users, 0, "nothing was written");
}

#[tokio::test]
async fn a_legacy_database_off_the_contract_is_refused_by_every_phase_before_any_write() {
    let f = Fixture::seeded(0.01).await;
    let legacy = f.legacy.pool().await;
    sqlx::raw_sql("ALTER TABLE payments ALTER COLUMN amount TYPE numeric(12,2); ALTER TABLE user_profiles DROP COLUMN bio")
        .execute(&legacy)
        .await
        .unwrap();
    for phase in ["plan", "prepare", "copy", "verify"] {
        let out = f.run(&[phase]);
        assert_eq!(out.status.code(), Some(2), "{phase}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("payments.amount: type numeric(12,2), expected numeric(10,2)"),
            "{phase}: {stderr}"
        );
        assert!(
            stderr.contains("user_profiles.bio: missing"),
            "{phase}: {stderr}"
        );
    }
    let server = f.legacy.pool().await;
    let created: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = ANY($1)")
            .bind(f.targets.iter().map(|t| t.name.clone()).collect::<Vec<_>>())
            .fetch_one(&server)
            .await
            .unwrap();
    assert_eq!(created, 0, "no service database was created");
}

#[test]
fn an_unreachable_database_is_one_line_naming_it_with_the_password_masked() {
    let out = Command::new(BIN)
        .args(["migrate", "plan"])
        .env(
            "SHARED_DATABASE_URL",
            "postgresql://postgres:t0p-secret@127.0.0.1:1/mfe_poc2",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("legacy database postgresql://postgres:***@127.0.0.1:1/mfe_poc2"),
        "{stderr}"
    );
    assert!(!stderr.contains("t0p-secret"));
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn plan_copy_export_and_verify_need_only_read_access_to_the_legacy_database() {
    let f = Fixture::seeded(0.01).await;
    let role = format!("mfe_reader_{}", std::process::id());
    let legacy = f.legacy.pool().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN;
         GRANT CONNECT ON DATABASE \"{db}\" TO {role}; GRANT USAGE ON SCHEMA public TO {role};
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};",
        db = f.legacy.name
    )))
    .execute(&legacy)
    .await
    .unwrap();
    let read_only_url = f.legacy.url.replacen(
        "postgresql://postgres@",
        &format!("postgresql://{role}@"),
        1,
    );
    assert_ne!(read_only_url, f.legacy.url);
    let dir = std::env::temp_dir().join(format!("mfe-ro-{}", uuid_like()));
    f.run_ok(&["prepare"]);
    for args in [
        vec!["plan", "--sync-hours", "0"],
        vec!["copy"],
        vec!["verify"],
        vec!["export", "--out", dir.to_str().unwrap()],
    ] {
        let out = f
            .command(&args)
            .env("SHARED_DATABASE_URL", &read_only_url)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{args:?} as a read-only role: {stderr}"
        );
        if args == ["copy"] {
            assert_eq!(
                stderr.matches("live sync unavailable").count(),
                1,
                "copy says once why it cannot capture changes: {stderr}"
            );
            assert!(stderr.contains("REPLICATION"), "{stderr}");
        }
    }
    let sync = f
        .command(&["sync"])
        .env("SHARED_DATABASE_URL", &read_only_url)
        .output()
        .unwrap();
    assert_eq!(sync.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&sync.stderr).contains("--method diff"),
        "{}",
        String::from_utf8_lossy(&sync.stderr)
    );
    let writes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'mfe_migration'")
            .fetch_one(&legacy)
            .await
            .unwrap();
    assert_eq!(writes, 0, "no journal in the legacy database");
    legacy.close().await;
    drop(f);
    std::fs::remove_dir_all(dir).ok();
    let server = sqlx::PgPool::connect(&test_support::db::server_url())
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
        .execute(&server)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_legacy_table_written_between_a_crash_and_the_resume_is_copied_again_whole() {
    let f = Fixture::seeded(0.02).await;
    f.run_ok(&["prepare"]);
    let payments = f.target(1).await;
    let mut child = f
        .command(&["copy", "--jobs", "1", "--chunk-rows", "100"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(60), || {
        let exited = child.try_wait().unwrap().is_some();
        let payments = &payments;
        async move {
            let done: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM mfe_migration.chunks WHERE table_name = 'payments' AND rows IS NOT NULL",
            )
            .fetch_one(payments)
            .await
            .unwrap_or(0);
            (exited || done >= 2).then_some(())
        }
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    // Writes to the legacy database after the crash, to rows of the first block range (whose chunk
    // is already copied): their new versions may land in any block.
    let legacy = f.legacy.pool().await;
    sqlx::raw_sql(
        "UPDATE payments SET description = 'changed after the crash' WHERE ctid < '(1,0)'::tid;
         INSERT INTO payments (id, sender_id, amount, status, type, updated_at)
         SELECT 'late-payment', id, 1.00, 'pending', 'instant', now() FROM users LIMIT 1;",
    )
    .execute(&legacy)
    .await
    .unwrap();
    f.run_ok(&["copy", "--jobs", "2", "--chunk-rows", "100"]);
    let (code, report) = f.verify_json();
    assert_eq!(code, 0, "{report:#}");
}

/// The preflight's checks of `plan --json`, by check name (the legacy server's, where several).
fn preflight(out: &std::process::Output) -> Vec<Value> {
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "plan printed JSON; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    plan["preflight"].as_array().unwrap().clone()
}

fn check<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["check"] == name && c["server"].as_str().unwrap().contains("legacy"))
        .unwrap_or_else(|| panic!("no {name} check: {checks:#?}"))
}

#[tokio::test]
async fn plan_is_a_preflight_that_names_what_to_change() {
    let f = Fixture::seeded(0.01).await;
    // A live migration this server allows (the stack's settings): only the unbounded slot size
    // is worth a warning.
    let out = f.run(&["plan", "--json", "--sync-hours", "0"]);
    assert_eq!(out.status.code(), Some(0));
    let checks = preflight(&out);
    for name in [
        "wal_level",
        "replication slots",
        "WAL senders",
        "long transactions",
        "replica identity",
        "disk for WAL",
    ] {
        assert_eq!(
            check(&checks, name)["level"],
            "ok",
            "{:#}",
            check(&checks, name)
        );
    }
    let keep = check(&checks, "max_slot_wal_keep_size");
    assert_eq!(keep["level"], "warn");
    assert!(keep["fix"].as_str().unwrap().contains("MFE_SLOT_WARN_GB"));
    // Every service database's server is looked at (they are not created yet).
    for service in ["payments-service", "admin-service", "profile-service"] {
        assert!(
            checks
                .iter()
                .any(|c| c["check"] == "wal_level"
                    && c["server"].as_str().unwrap().contains(service)),
            "{service}: {checks:#?}"
        );
    }

    // A table whose updates logical decoding could not publish, and a transaction left open.
    let legacy = f.legacy.pool().await;
    sqlx::raw_sql("ALTER TABLE audit_logs REPLICA IDENTITY NOTHING")
        .execute(&legacy)
        .await
        .unwrap();
    let mut open = legacy.begin().await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *open)
        .await
        .unwrap();
    sqlx::query("SELECT txid_current()")
        .execute(&mut *open)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let out = f.run(&[
        "plan",
        "--json",
        "--sync-hours",
        "0",
        "--long-transaction-seconds",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1), "a failed check fails the plan");
    let checks = preflight(&out);
    let identity = check(&checks, "replica identity");
    assert_eq!(identity["level"], "fail");
    assert!(
        identity["found"].as_str().unwrap().contains("audit_logs"),
        "{identity}"
    );
    assert!(
        identity["fix"]
            .as_str()
            .unwrap()
            .contains("REPLICA IDENTITY FULL")
    );
    let long = check(&checks, "long transactions");
    assert_eq!(long["level"], "warn");
    assert!(
        long["found"]
            .as_str()
            .unwrap()
            .contains(&format!("pid {pid} ")),
        "{long}"
    );
    open.rollback().await.unwrap();
    // The human form says the same, with what to change.
    let out = f.run(&["plan", "--sync-hours", "0"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL") && text.contains("replica identity"),
        "{text}"
    );
    // A nonsense estimate is refused.
    let out = f.run(&["plan", "--sync-hours", "-1"]);
    assert_eq!(out.status.code(), Some(2));
}
