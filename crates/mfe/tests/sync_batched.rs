//! `mfe migrate sync` applies many legacy transactions per target transaction, folded into
//! set-based statements, the four targets at once: what that must never change.

mod common;

use std::time::Duration;

use common::Fixture;
use migrator::sync::{MARKER_PREFIX, SyncOptions, sync};
use platform::Service;
use sqlx::Connection;

fn assert_exact(f: &Fixture, when: &str) {
    let (code, report) = f.verify_json();
    assert_eq!(code, 0, "{when}: {report}");
}

/// `n` legacy transactions, each inserting an audit row (admin) and updating a payment
/// (payments), committed one by one.
async fn burst(f: &Fixture, tag: &str, n: u32) {
    let mut conn = sqlx::PgConnection::connect(&f.legacy.url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE OR REPLACE PROCEDURE burst_{tag}(n int) LANGUAGE plpgsql AS $$
         DECLARE ids text[] := ARRAY(SELECT id FROM payments ORDER BY id LIMIT 50);
         BEGIN
           FOR i IN 1..n LOOP
             INSERT INTO audit_logs (id, action, details)
               VALUES ('{tag}-' || i, 'burst', jsonb_build_object('i', i));
             UPDATE payments SET psp_status = '{tag}-' || i, updated_at = now()
               WHERE id = ids[1 + i % 50];
             COMMIT;
           END LOOP;
         END $$;"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::raw_sql("SET synchronous_commit = off")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CALL burst_{tag}({n})")))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// How many legacy transactions each target applied, and where it stands.
async fn applied(f: &Fixture, index: usize) -> (i64, String) {
    let pool = f.target(index).await;
    sqlx::query_as(
        "SELECT coalesce(sum(transactions), 0)::bigint, coalesce(max(commit_lsn)::text, '0/0') \
         FROM mfe_migration.sync_position",
    )
    .fetch_one(&pool)
    .await
    .unwrap_or((0, "0/0".into()))
}

fn lsn(s: &str) -> u64 {
    let (hi, lo) = s.split_once('/').unwrap();
    u64::from_str_radix(hi, 16).unwrap() << 32 | u64::from_str_radix(lo, 16).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_100k_small_transactions_killed_mid_batch_is_applied_exactly_once() {
    let f = Fixture::seeded(0.01).await;
    f.run_ok_async(&["prepare"]).await;
    f.run_ok_async(&["copy"]).await;
    f.run_ok_async(&["sync"]).await;
    let (payments_before, _) = applied(&f, 1).await;
    let (admin_before, _) = applied(&f, 2).await;
    burst(&f, "k", 100_000).await;

    // Killed while applying: each kill lands inside the target transactions of a batch (a
    // checkpoint every 250 ms, runs of 10,000 changes), and each restart goes on from the
    // positions the targets committed.
    let mut cut_mid_way = 0;
    for delay_ms in [700u64, 1500, 2500, 4000] {
        let mut child = f.spawn_quiet(&["sync"]);
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        let _ = child.wait();
        let (done, _) = applied(&f, 2).await;
        if !finished && done > admin_before && done < admin_before + 100_000 {
            cut_mid_way += 1;
        }
    }
    assert!(
        cut_mid_way > 0,
        "no kill landed part-way through the backlog: the test proves nothing"
    );
    f.run_ok_async(&["sync"]).await;
    assert_exact(&f, "after the kills");
    // Exactly once: each target counted every legacy transaction that touched it once.
    let (payments_after, _) = applied(&f, 1).await;
    let (admin_after, _) = applied(&f, 2).await;
    assert_eq!(admin_after - admin_before, 100_000, "admin");
    assert_eq!(payments_after - payments_before, 100_000, "payments");
    let admin = f.target(2).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_logs WHERE id LIKE 'k-%'")
        .fetch_one(&admin)
        .await
        .unwrap();
    assert_eq!(rows, 100_000);
    f.run_ok_async(&["abort"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_batch_of_transactions_touching_two_targets_keeps_each_targets_order() {
    let f = Fixture::seeded(0.01).await;
    f.run_ok_async(&["prepare"]).await;
    f.run_ok_async(&["copy"]).await;
    f.run_ok_async(&["sync"]).await;
    let (auth_before, _) = applied(&f, 0).await;
    let (payments_before, _) = applied(&f, 1).await;
    // Each statement its own legacy transaction, all in one batch of the sync: orders that a
    // set-based statement could get wrong if it did not keep them.
    let mut legacy = sqlx::PgConnection::connect(&f.legacy.url).await.unwrap();
    let mut both = 0;
    for i in 0..200 {
        // A user and a payment of theirs: auth and payments in one legacy transaction.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "BEGIN;
             INSERT INTO users (id, email, password_hash, name, role, updated_at)
               VALUES ('two-{i}', 'two{i}@sync.test', 'x', 'Two', 'CUSTOMER', now());
             INSERT INTO payments (id, sender_id, amount, status, type, updated_at)
               VALUES ('two-pay-{i}', 'two-{i}', {i}.25, 'pending', 'instant', now());
             INSERT INTO payment_transactions (id, payment_id, status)
               VALUES ('two-tx-{i}', 'two-pay-{i}', 'pending');
             COMMIT;"
        )))
        .execute(&mut legacy)
        .await
        .unwrap();
        both += 1;
    }
    // One sync: each of its batches holds transactions that touch both targets.
    f.run_ok_async(&["sync"]).await;
    assert_exact(&f, "transactions across two targets");
    let (auth_after, _) = applied(&f, 0).await;
    let (payments_after, _) = applied(&f, 1).await;
    assert_eq!(auth_after - auth_before, both, "auth");
    assert_eq!(payments_after - payments_before, both, "payments");

    // Rows that were there before the batch: orders one set-based statement cannot keep.
    let (a, b, c): (String, String, String) = sqlx::query_as(
        "SELECT (SELECT id FROM users ORDER BY id LIMIT 1), (SELECT id FROM users ORDER BY id OFFSET 1 LIMIT 1), \
                (SELECT id FROM users u WHERE NOT EXISTS (SELECT 1 FROM payments p WHERE p.sender_id = u.id) \
                 AND id NOT IN (SELECT id FROM users ORDER BY id LIMIT 2) ORDER BY id LIMIT 1)",
    )
    .fetch_one(&mut legacy)
    .await
    .unwrap();
    let script = [
        // Emails swapped through a third value: one UPDATE of both rows collides.
        format!("CREATE TEMP TABLE was AS SELECT id, email FROM users WHERE id IN ('{a}', '{b}')"),
        format!("UPDATE users SET email = 'swap@sync.test' WHERE id = '{a}'"),
        format!("UPDATE users SET email = (SELECT email FROM was WHERE id = '{a}') WHERE id = '{b}'"),
        format!("UPDATE users SET email = (SELECT email FROM was WHERE id = '{b}') WHERE id = '{a}'"),
        // An email freed by a delete and taken by a new user: the insert would come first.
        format!("CREATE TEMP TABLE freed AS SELECT email FROM users WHERE id = '{c}'"),
        format!("DELETE FROM users WHERE id = '{c}'"),
        "INSERT INTO users (id, email, password_hash, name, role, updated_at)
           SELECT 'heir', email, 'x', 'Heir', 'VENDOR', now() FROM freed"
            .to_string(),
        // A payment with its history, then gone (the legacy cascade deletes its history).
        "INSERT INTO payments (id, sender_id, amount, status, type, updated_at)
           VALUES ('gone-pay', 'two-4', 9.99, 'pending', 'instant', now())"
            .to_string(),
        "INSERT INTO payment_transactions (id, payment_id, status) VALUES ('gone-tx', 'gone-pay', 'pending')".to_string(),
        "DELETE FROM payments WHERE id = 'gone-pay'".to_string(),
        // A history row moved from one payment to another, then its first payment deleted.
        "UPDATE payment_transactions SET payment_id = 'two-pay-6' WHERE id = 'two-tx-5'".to_string(),
        "DELETE FROM payments WHERE id = 'two-pay-5'".to_string(),
        // A row inserted, updated twice, then renamed and updated again.
        "INSERT INTO system_config (key, value, description) VALUES ('two.cfg', '1', 'first')"
            .to_string(),
        "UPDATE system_config SET value = '2' WHERE key = 'two.cfg'".to_string(),
        "UPDATE system_config SET description = 'last' WHERE key = 'two.cfg'".to_string(),
        "UPDATE system_config SET key = 'two.cfg.renamed' WHERE key = 'two.cfg'".to_string(),
        "UPDATE system_config SET value = '3' WHERE key = 'two.cfg.renamed'".to_string(),
        // Deleted and inserted again under the same key.
        "DELETE FROM payments WHERE id = 'two-pay-7'".to_string(),
        "INSERT INTO payments (id, sender_id, amount, status, type, updated_at)
           VALUES ('two-pay-7', 'two-8', 7.77, 'completed', 'scheduled', now())"
            .to_string(),
    ];
    for sql in &script {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut legacy)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let out = f
        .run_async(&["sync"], &[("RUST_LOG", "migrator=debug".to_string())])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_exact(&f, "orders a set-based statement cannot keep");
    // The swap and the heir could not go as one statement: they went in the legacy order.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("net effect refused"),
        "the run was expected to fall back to the legacy order: {stderr}"
    );
    f.run_ok_async(&["abort"]).await;
}

fn endpoints(f: &Fixture) -> migrator::Endpoints {
    migrator::Endpoints::new(
        f.legacy.url.clone(),
        Service::ALL
            .into_iter()
            .zip(f.targets.iter().map(|t| t.url.clone())),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marker_inside_a_batch_ends_the_stream_exactly_there() {
    let f = Fixture::seeded(0.01).await;
    f.run_ok_async(&["prepare"]).await;
    f.run_ok_async(&["copy"]).await;
    let endpoints = endpoints(&f);
    let until = |marker: &str| SyncOptions {
        follow: false,
        until_marker: Some(marker.to_string()),
        wait_for_other: Duration::from_secs(5),
    };
    let quiet = |_: migrator::sync::Lag| {};

    // Thousands of transactions, then the marker: one batch holds both.
    burst(&f, "before", 3_000).await;
    f.legacy_sql(&format!(
        "SELECT pg_logical_emit_message(true, '{MARKER_PREFIX}', 'marker-1')"
    ))
    .await;
    let report = sync(
        &endpoints,
        &until("marker-1"),
        &migrator::Silent,
        &quiet,
        std::future::pending(),
    )
    .await
    .unwrap();
    assert!(report.marker_seen, "{report:?}");
    assert_eq!(report.transactions, 3_000, "{report:?}");
    assert_exact(&f, "up to the marker");

    // A writer past the marker: the sync refuses, and nothing after the marker is applied.
    burst(&f, "again", 2_000).await;
    f.legacy_sql(&format!(
        "SELECT pg_logical_emit_message(true, '{MARKER_PREFIX}', 'marker-2')"
    ))
    .await;
    f.legacy_sql("INSERT INTO audit_logs (id, action) VALUES ('past-the-marker', 'sneaky')")
        .await;
    let err = sync(
        &endpoints,
        &until("marker-2"),
        &migrator::Silent,
        &quiet,
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("after the cutover marker"),
        "{err}"
    );
    let admin = f.target(2).await;
    let past: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_logs WHERE id = 'past-the-marker'")
            .fetch_one(&admin)
            .await
            .unwrap();
    assert_eq!(past, 0, "a change after the marker reached a target");
    // Each target stands at a legacy commit before the marker.
    let marker_lsn: String =
        sqlx::query_scalar("SELECT pg_current_wal_lsn()::text FROM pg_replication_slots LIMIT 1")
            .fetch_one(&f.legacy.pool().await)
            .await
            .unwrap();
    for i in 0..4 {
        let (_, at) = applied(&f, i).await;
        assert!(lsn(&at) < lsn(&marker_lsn), "target {i} at {at}");
    }
    f.run_ok_async(&["abort"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_of_large_values_is_applied_in_bounded_memory() {
    let f = Fixture::seeded(0.01).await;
    f.run_ok_async(&["prepare"]).await;
    f.run_ok_async(&["copy"]).await;
    // 400 rows of 1 MB each (TOASTed, compressed on disk; decoded whole): 400 MB in one
    // transaction, which no queue may hold (held, they took 450 MiB).
    f.legacy_sql(
        "INSERT INTO audit_logs (id, action, user_agent)
         SELECT 'large-' || i, 'large', repeat(md5(i::text), 32768) FROM generate_series(1, 400) i",
    )
    .await;
    let child = f.spawn_quiet(&["sync"]);
    let (status, peak_kib) = common::peak_rss(child).await;
    assert!(status.success());
    println!("sync of 400 MB of values in one transaction: peak RSS {peak_kib} KiB");
    assert!(
        peak_kib < 300 * 1024,
        "400 MB of values took {peak_kib} KiB: the queues held them"
    );
    assert_exact(&f, "large values");
    f.run_ok_async(&["abort"]).await;
}
