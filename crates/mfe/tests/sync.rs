//! `mfe migrate sync`: what the legacy database commits during and after the copy reaches the
//! service databases exactly, through the capture slot `copy` makes.

mod common;

use std::time::Duration;

use common::Fixture;
use legacy_seed::live::{LoadOptions, write_load};
use sqlx::Connection;

fn assert_exact(f: &Fixture, when: &str) {
    let (code, report) = f.verify_json();
    assert_eq!(code, 0, "{when}: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_under_a_write_load_then_sync_is_exact() {
    let f = Fixture::seeded(0.01).await;
    f.run_ok_async(&["prepare"]).await;
    let opts = LoadOptions {
        url: f.legacy.url.clone(),
        rate: 150,
        duration: Duration::from_secs(6),
        workers: 3,
        seed: 11,
    };
    let load = tokio::spawn(async move { write_load(&opts, std::future::pending()).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    f.run_ok_async(&["copy"]).await;
    // Writes go on after the copy too.
    let report = load.await.unwrap().expect("the load runs");
    assert!(report.committed() > 300, "{report:?}");
    assert_eq!(report.failed(), 0, "{report:?}");
    let synced = f.run_ok_async(&["sync", "--json"]).await;
    let synced: serde_json::Value = serde_json::from_str(&synced).unwrap();
    assert!(synced["transactions"].as_u64().unwrap() > 0, "{synced}");
    assert_exact(&f, "after the load");
    // Caught up, a second sync has nothing to do.
    let again: serde_json::Value =
        serde_json::from_str(&f.run_ok_async(&["sync", "--json"]).await).unwrap();
    assert_eq!(again["transactions"], 0, "{again}");
    f.run_ok_async(&["abort"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decoding_traps_are_applied_exactly() {
    let f = Fixture::seeded(0.01).await;
    f.run_ok_async(&["prepare"]).await;
    f.run_ok_async(&["copy"]).await;

    // An update that leaves a TOASTed column unchanged must neither null nor overwrite it.
    f.legacy_sql(
        "UPDATE user_profiles SET bio = (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 300) i) \
         WHERE id = (SELECT min(id) FROM user_profiles)",
    )
    .await;
    f.run_ok_async(&["sync"]).await;
    f.legacy_sql(
        "UPDATE user_profiles SET phone = '+4915100000001' WHERE id = (SELECT min(id) FROM user_profiles)",
    )
    .await;
    f.run_ok_async(&["sync"]).await;
    assert_exact(&f, "TOAST unchanged");

    // One transaction across three services' tables.
    f.legacy_sql(
        "BEGIN;
         INSERT INTO users (id, email, password_hash, name, role, updated_at)
           VALUES ('cross-1', 'cross@sync.test', 'x', 'Cross', 'CUSTOMER', now());
         INSERT INTO user_profiles (id, user_id, updated_at) VALUES ('cross-p', 'cross-1', now());
         INSERT INTO payments (id, sender_id, amount, status, type, updated_at)
           VALUES ('cross-pay', 'cross-1', 1.50, 'pending', 'instant', now());
         INSERT INTO audit_logs (id, user_id, action) VALUES ('cross-a', 'cross-1', 'user.register');
         COMMIT;",
    )
    .await;
    // A primary key changed: found by its old key.
    f.legacy_sql(
        "UPDATE system_config SET key = key || '.renamed' WHERE key = (SELECT min(key) FROM system_config)",
    )
    .await;
    // Deletes, and a payment moved with its history.
    f.legacy_sql(
        "DELETE FROM refresh_tokens WHERE id IN (SELECT id FROM refresh_tokens ORDER BY id LIMIT 3);
         UPDATE payments SET status = 'processing' WHERE id = 'cross-pay';
         INSERT INTO payment_transactions (id, payment_id, status) VALUES ('cross-t', 'cross-pay', 'processing');",
    )
    .await;
    f.run_ok_async(&["sync"]).await;
    assert_exact(&f, "cross-service transaction, key update, deletes");

    // A user deleted with the legacy cascades (tokens, profile deleted; audit rows and received
    // payments set to NULL); a key renamed and then changed again in one transaction.
    f.legacy_sql(
        "DELETE FROM users WHERE id = (SELECT u.id FROM users u
             WHERE EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.user_id = u.id)
               AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.sender_id = u.id)
             ORDER BY u.id LIMIT 1);
         BEGIN;
         UPDATE system_config SET key = 'renamed.twice' WHERE key = (SELECT min(key) FROM system_config);
         UPDATE system_config SET description = 'after the rename' WHERE key = 'renamed.twice';
         COMMIT;",
    )
    .await;
    f.run_ok_async(&["sync"]).await;
    assert_exact(&f, "cascaded delete, key renamed then updated");

    // TRUNCATE.
    f.legacy_sql("TRUNCATE audit_logs").await;
    f.run_ok_async(&["sync"]).await;
    assert_exact(&f, "truncate");

    // A large transaction, applied in bounded batches: the sync's memory stays flat.
    f.legacy_sql(
        "INSERT INTO audit_logs (id, user_id, action, details, created_at)
         SELECT 'bulk-' || i, NULL, 'bulk.row', jsonb_build_object('i', i), now()
         FROM generate_series(1, 1000000) i",
    )
    .await;
    let child = f.spawn_quiet(&["sync"]);
    let (status, peak_kib) = common::peak_rss(child).await;
    assert!(status.success());
    println!("sync of a 1M-row transaction: peak RSS {peak_kib} KiB");
    assert!(
        peak_kib < 64 * 1024,
        "a million-row transaction took {peak_kib} KiB: it was held in memory"
    );
    assert_exact(&f, "a large transaction");

    // A schema change stops the sync with a clear error, applying nothing of it.
    f.legacy_sql(
        "ALTER TABLE audit_logs ADD COLUMN extra TEXT;
         INSERT INTO audit_logs (id, action, extra) VALUES ('after-ddl', 'x', 'y');",
    )
    .await;
    let out = f.run_async(&["sync"], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("audit_logs changed while syncing"),
        "{stderr}"
    );
    f.run_ok_async(&["abort"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_at_several_points_resumes_without_losing_or_repeating_a_change() {
    let f = Fixture::seeded(0.01).await;
    f.run_ok_async(&["prepare"]).await;
    f.run_ok_async(&["copy"]).await;
    // Many transactions across services, and big ones, so kills land mid-transaction and
    // between the commits of one legacy transaction's targets.
    f.legacy_sql(
        "INSERT INTO audit_logs (id, action, details, created_at)
         SELECT 'big-' || i, 'bulk.row', jsonb_build_object('i', i), now() FROM generate_series(1, 150000) i;",
    )
    .await;
    for round in 0..40 {
        f.legacy_sql(&format!(
                "BEGIN;
                 INSERT INTO users (id, email, password_hash, name, role, updated_at)
                   VALUES ('k-{round}', 'k{round}@sync.test', 'x', 'K', 'VENDOR', now());
                 INSERT INTO user_profiles (id, user_id, updated_at) VALUES ('kp-{round}', 'k-{round}', now());
                 INSERT INTO audit_logs (id, action) VALUES ('ka-{round}', 'user.register');
                 UPDATE system_config SET value = '{{\"round\": {round}}}' WHERE key = (SELECT min(key) FROM system_config);
                 COMMIT;"
            ),
        )
        .await;
    }
    f.legacy_sql(
        "UPDATE audit_logs SET action = 'bulk.updated' WHERE id LIKE 'big-%' AND right(id, 1) = '7';
         DELETE FROM audit_logs WHERE id LIKE 'big-%' AND right(id, 1) = '3';",
    )
    .await;
    for delay_ms in [150u64, 400, 900, 1500, 2500] {
        let mut child = f.spawn_quiet(&["sync"]);
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let _ = child.kill();
        let _ = child.wait();
    }
    f.run_ok_async(&["sync"]).await;
    assert_exact(&f, "after five kills");
    f.run_ok_async(&["abort"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_slot_its_lag_and_each_targets_position_and_abort_drops_it() {
    let f = Fixture::seeded(0.01).await;
    f.run_ok_async(&["prepare"]).await;
    let plan: serde_json::Value = serde_json::from_str(
        &f.run_ok_async(&["plan", "--json", "--sync-hours", "0"])
            .await,
    )
    .unwrap();
    assert_eq!(plan["capture"]["available"], true, "{plan}");
    assert_eq!(plan["capture"]["exists"], false);
    f.run_ok_async(&["copy"]).await;
    f.legacy_sql(
        "UPDATE users SET name = name || ' (moved)' WHERE id = (SELECT min(id) FROM users)",
    )
    .await;
    f.run_ok_async(&["sync"]).await;
    let status: serde_json::Value =
        serde_json::from_str(&f.run_ok_async(&["status", "--json"]).await).unwrap();
    assert_eq!(status["capture"]["exists"], true, "{status}");
    assert!(status["capture"]["lagBytes"].is_i64(), "{status}");
    let auth = status["sync"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["service"] == "auth-service")
        .expect("auth's position");
    assert!(auth["transactions"].as_i64().unwrap() >= 1, "{status}");

    // A slot holding more WAL than allowed is called out.
    let mut cmd = f.command(&["status"]);
    let out = cmd.env("MFE_SLOT_WARN_GB", "0").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("WARNING: the capture slot"));

    let aborted = f.run_ok_async(&["abort"]).await;
    assert!(aborted.contains("dropped the capture slot"), "{aborted}");
    let again = f.run_ok_async(&["abort"]).await;
    assert!(again.contains("no capture slot"), "{again}");
    let status: serde_json::Value =
        serde_json::from_str(&f.run_ok_async(&["status", "--json"]).await).unwrap();
    assert_eq!(status["capture"]["exists"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_diff_fallback_with_a_read_only_role_converges_to_exact_while_and_after_writes() {
    let f = Fixture::seeded(0.01).await;
    let role = format!("mfe_diff_reader_{}", std::process::id());
    f.legacy_sql(&format!(
        "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN;
             GRANT CONNECT ON DATABASE \"{db}\" TO {role}; GRANT USAGE ON SCHEMA public TO {role};
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};",
        db = f.legacy.name
    ))
    .await;
    let read_only = f.legacy.url.replacen(
        "postgresql://postgres@",
        &format!("postgresql://{role}@"),
        1,
    );
    let as_reader = |args: &'static [&'static str]| {
        let mut cmd = f.command(args);
        cmd.env("SHARED_DATABASE_URL", &read_only);
        async move {
            tokio::task::spawn_blocking(move || cmd.output().expect("mfe runs"))
                .await
                .unwrap()
        }
    };
    f.run_ok_async(&["prepare"]).await;
    let opts = LoadOptions {
        url: f.legacy.url.clone(),
        rate: 100,
        duration: Duration::from_secs(8),
        workers: 2,
        seed: 21,
    };
    let load = tokio::spawn(async move { write_load(&opts, std::future::pending()).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let copy = as_reader(&["copy"]).await;
    assert!(
        copy.status.success(),
        "{}",
        String::from_utf8_lossy(&copy.stderr)
    );
    // While the writer runs: each pass rewrites what changed.
    let during = as_reader(&["sync", "--method", "diff", "--max-passes", "2", "--json"]).await;
    assert!(
        matches!(during.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&during.stderr)
    );
    let during: serde_json::Value = serde_json::from_slice(&during.stdout).unwrap();
    assert!(during["rowsWritten"].as_u64().unwrap() > 0, "{during}");
    let report = load.await.unwrap().expect("the load ran");
    assert!(report.committed() > 200);
    // After it stops: converged, and exact.
    let after = as_reader(&["sync", "--method", "diff", "--json"]).await;
    assert_eq!(
        after.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&after.stdout)
    );
    assert_exact(&f, "diff sync after the writes stopped");
    let again = as_reader(&["sync", "--method", "diff", "--json"]).await;
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["rowsWritten"], 0, "{again}");
    assert_eq!(again["passes"], 1);
    let server = sqlx::PgPool::connect(&test_support::db::server_url())
        .await
        .unwrap();
    drop(f);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
        .execute(&server)
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_during_writes_checks_rows_in_flight_again_and_still_names_a_real_difference() {
    let f = Fixture::seeded(0.01).await;
    f.run_ok_async(&["prepare"]).await;
    f.run_ok_async(&["copy"]).await;
    let opts = LoadOptions {
        url: f.legacy.url.clone(),
        rate: 150,
        duration: Duration::from_secs(6),
        workers: 2,
        seed: 8,
    };
    let load = tokio::spawn(async move { write_load(&opts, std::future::pending()).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // No sync has run: everything written so far is "in flight" for verify.
    let (code, report) = f.verify_json();
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["live"], true);
    assert!(report["rechecked"].as_u64().unwrap() > 0, "{report}");

    // A row the writer never touches, changed in the service database: a real difference.
    let admin = f.target(2).await;
    let tampered: String = sqlx::query_scalar(
        "UPDATE audit_logs SET action = 'tampered' WHERE id = (SELECT min(id) FROM audit_logs) RETURNING id",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    let (code, report) = f.verify_json();
    assert_eq!(code, 1, "{report}");
    let audit = common::table(&report, "audit_logs");
    assert_eq!(
        audit["differences"]["changed"][0],
        tampered.as_str(),
        "{report}"
    );
    load.await.unwrap().expect("the load ran");
    f.run_ok_async(&["abort"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_open_when_the_copy_starts_arrives_exactly_once() {
    let f = Fixture::seeded(0.01).await;
    f.run_ok_async(&["prepare"]).await;
    // Begun (with a write) before the slot exists, committed after the copy started.
    let mut open = sqlx::PgConnection::connect(&f.legacy.url).await.unwrap();
    sqlx::raw_sql(
        "BEGIN; INSERT INTO audit_logs (id, action) VALUES ('straddling', 'before.the.slot');",
    )
    .execute(&mut open)
    .await
    .unwrap();
    let copy = {
        let mut cmd = f.command(&["copy"]);
        tokio::task::spawn_blocking(move || cmd.output().expect("mfe runs"))
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sqlx::raw_sql(
        "UPDATE audit_logs SET action = 'committed.after' WHERE id = 'straddling'; COMMIT;",
    )
    .execute(&mut open)
    .await
    .unwrap();
    let copy = copy.await.unwrap();
    assert!(
        copy.status.success(),
        "{}",
        String::from_utf8_lossy(&copy.stderr)
    );
    f.run_ok_async(&["sync"]).await;
    assert_exact(&f, "a transaction straddling the slot");
    let admin = f.target(2).await;
    let action: String =
        sqlx::query_scalar("SELECT action FROM audit_logs WHERE id = 'straddling'")
            .fetch_one(&admin)
            .await
            .unwrap();
    assert_eq!(action, "committed.after");
    f.run_ok_async(&["abort"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_open_while_sync_advances_the_slot_still_arrives_once() {
    let f = Fixture::seeded(0.01).await;
    f.run_ok_async(&["prepare"]).await;
    f.run_ok_async(&["copy"]).await;
    // Written before a sync round, committed after it: the round advances the slot past the
    // position of its change, never past its commit.
    let mut open = sqlx::PgConnection::connect(&f.legacy.url).await.unwrap();
    sqlx::raw_sql("BEGIN; INSERT INTO audit_logs (id, action) VALUES ('late-commit', 'x');")
        .execute(&mut open)
        .await
        .unwrap();
    f.legacy_sql("INSERT INTO audit_logs (id, action) VALUES ('meanwhile', 'y')")
        .await;
    f.run_ok_async(&["sync"]).await;
    sqlx::raw_sql("COMMIT").execute(&mut open).await.unwrap();
    f.run_ok_async(&["sync"]).await;
    assert_exact(&f, "a commit after the slot moved past its change");
    f.run_ok_async(&["abort"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_follow_keeps_applying_shows_its_lag_and_stops_on_ctrl_c() {
    let f = Fixture::seeded(0.01).await;
    f.run_ok_async(&["prepare"]).await;
    f.run_ok_async(&["copy"]).await;
    let follow = f
        .command(&["sync", "--follow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let opts = LoadOptions {
        url: f.legacy.url.clone(),
        rate: 100,
        duration: Duration::from_secs(3),
        workers: 2,
        seed: 4,
    };
    write_load(&opts, std::future::pending()).await.unwrap();
    // Verify while follow may still be applying: rows and counts that differ are checked again
    // once follow has caught up.
    let verify = f.run_async(&["verify", "--json"], &[]).await;
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    let killed = std::process::Command::new("kill")
        .args(["-INT", &follow.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = tokio::task::spawn_blocking(move || follow.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(
        stderr.contains("sync: lag") && stderr.contains("changes/s"),
        "follow shows its lag: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("applied"), "{stdout}");
    f.run_ok_async(&["abort"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_changes_the_snapshot_already_holds_converges_even_when_an_email_changed_hands() {
    let f = Fixture::seeded(0.01).await;
    f.run_ok_async(&["prepare"]).await;
    f.run_ok_async(&["copy"]).await;
    // Between the slot and the snapshot: a user made and deleted, and another user taking the
    // same email. The snapshot (simulated: the copy ran before, so the new user is written into
    // the service database here, and the horizon moved past these changes) holds only the second.
    f.legacy_sql(
        "INSERT INTO users (id, email, password_hash, name, role, updated_at)
           VALUES ('first-owner', 'taken@sync.test', 'x', 'First', 'CUSTOMER', now());
         DELETE FROM users WHERE id = 'first-owner';
         INSERT INTO users (id, email, password_hash, name, role, updated_at)
           VALUES ('second-owner', 'taken@sync.test', 'x', 'Second', 'CUSTOMER', now());",
    )
    .await;
    let legacy = f.legacy.pool().await;
    let horizon: String = sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
        .fetch_one(&legacy)
        .await
        .unwrap();
    let auth = f.target(0).await;
    sqlx::query("UPDATE mfe_migration.capture SET horizon_lsn = $1::text::pg_lsn")
        .bind(&horizon)
        .execute(&auth)
        .await
        .unwrap();
    let row: (String, String, String, String, String) = sqlx::query_as(
        "SELECT id, email, password_hash, name, role::text FROM users WHERE id = 'second-owner'",
    )
    .fetch_one(&legacy)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO users (id, email, password_hash, name, role, created_at, updated_at)
         SELECT $1, $2, $3, $4, $5::text::\"UserRole\", created_at, updated_at
         FROM (SELECT now()::timestamp(3) AS created_at, now()::timestamp(3) AS updated_at) t",
    )
    .bind(&row.0)
    .bind(&row.1)
    .bind(&row.2)
    .bind(&row.3)
    .bind(&row.4)
    .execute(&auth)
    .await
    .unwrap();
    f.run_ok_async(&["sync"]).await;
    // The replayed insert of the first owner was superseded; the second owner's row is the
    // legacy one.
    let (code, report) = f.verify_json();
    assert_eq!(code, 0, "{report}");
    f.run_ok_async(&["abort"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_while_a_sync_follows_ends_that_sync_and_drops_the_slot() {
    let f = Fixture::seeded(0.01).await;
    f.run_ok_async(&["prepare"]).await;
    f.run_ok_async(&["copy"]).await;
    // The follower holds the slot for as long as it streams.
    let mut follower = f.spawn_quiet(&["sync", "--follow"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pool = f.legacy.pool().await;
    let active: bool = sqlx::query_scalar("SELECT bool_or(active) FROM pg_replication_slots")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(active, "the follower streams the slot");
    f.run_ok_async(&["abort"]).await;
    let slots: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(slots, 0, "abort dropped the slot");
    let status = tokio::task::spawn_blocking(move || follower.wait().unwrap())
        .await
        .unwrap();
    assert!(
        !status.success(),
        "the follower stops with an error: its slot is gone"
    );
}
