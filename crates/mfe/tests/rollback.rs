//! `mfe migrate rollback`: every change the service databases took after cutover written back to
//! the legacy database in its foreign keys' order, conflicts kept and named, exact afterwards,
//! idempotent, and resumable after SIGKILL at any step.
//!
//! The services' writes are made here with SQL on their databases (what the services write is
//! tested with the real processes in crates/e2e/tests/rollback.rs).

mod common;

use std::time::Duration;

use common::{Fixture, TABLE_NAMES, counts};
use serde_json::Value;
use sqlx::PgPool;

const AUTH: usize = 0;
const PAYMENTS: usize = 1;
const ADMIN: usize = 2;
const PROFILE: usize = 3;

fn topology_file(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("mfe-rb-{tag}-{}.env", std::process::id()))
}

/// Cut over (the legacy database at `scale`), with the topology file at `topology`.
async fn cut_over(scale: f64, topology: &std::path::Path) -> Fixture {
    let f = Fixture::ready_for_cutover(scale).await;
    let out = f
        .run_async(
            &["cutover"],
            &[("MFE_TOPOLOGY_FILE", topology.display().to_string())],
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    f
}

async fn sql(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn rollback(f: &Fixture, topology: &std::path::Path) -> (i32, Value, String) {
    let out = f
        .run_async(
            &["rollback", "--json"],
            &[("MFE_TOPOLOGY_FILE", topology.display().to_string())],
        )
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("rollback printed JSON; stderr: {stderr}"));
    (out.status.code().unwrap_or(-1), report, stderr)
}

fn written(report: &Value, table: &str) -> (u64, u64, u64) {
    let t = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == table)
        .unwrap_or_else(|| panic!("{table} in {report}"));
    (
        t["inserted"].as_u64().unwrap(),
        t["updated"].as_u64().unwrap(),
        t["deleted"].as_u64().unwrap(),
    )
}

/// What the services might do after cutover, in every table: inserts, updates (a TOASTed bio,
/// then another column of the same row, so the stream carries it as unchanged), deletes.
async fn services_write(f: &Fixture) {
    let auth = f.target(AUTH).await;
    let payments = f.target(PAYMENTS).await;
    let admin = f.target(ADMIN).await;
    let profile = f.target(PROFILE).await;
    let (old_user,): (String,) = sqlx::query_as("SELECT id FROM users ORDER BY id LIMIT 1")
        .fetch_one(&auth)
        .await
        .unwrap();
    sql(
        &auth,
        &format!(
            "INSERT INTO users (id, email, password_hash, name, role, email_verified, created_at, updated_at) \
             VALUES ('rb-user-1', 'rb1@example.com', 'x', 'After Cutover', 'CUSTOMER', true, now(), now()); \
             INSERT INTO refresh_tokens (id, user_id, token, expires_at) VALUES ('rb-token-1', 'rb-user-1', 'rb-t-1', now() + interval '1 day'); \
             UPDATE users SET name = 'Renamed After Cutover', updated_at = now() WHERE id = '{old_user}'; \
             DELETE FROM refresh_tokens WHERE id IN (SELECT id FROM refresh_tokens WHERE id <> 'rb-token-1' ORDER BY id LIMIT 3);"
        ),
    )
    .await;
    sql(
        &payments,
        &format!(
            "INSERT INTO payments (id, sender_id, recipient_id, amount, currency, status, type, updated_at) \
             VALUES ('rb-pay-1', 'rb-user-1', '{old_user}', 12.34, 'USD', 'completed', 'instant', now()); \
             INSERT INTO payment_transactions (id, payment_id, status, status_message) VALUES ('rb-tx-1', 'rb-pay-1', 'completed', 'ok'); \
             UPDATE payments SET status = 'cancelled', updated_at = now() WHERE id = (SELECT id FROM payments WHERE status = 'pending' ORDER BY id LIMIT 1);"
        ),
    )
    .await;
    sql(
        &admin,
        "INSERT INTO audit_logs (id, user_id, action, details) VALUES ('rb-audit-1', 'rb-user-1', 'user.registered', '{\"n\": 1}'); \
         INSERT INTO system_config (key, value, updated_at) VALUES ('rb.new', '{\"on\": true}', now()); \
         UPDATE system_config SET value = '42', updated_at = now() WHERE key = (SELECT key FROM system_config WHERE key <> 'rb.new' ORDER BY key LIMIT 1); \
         DELETE FROM system_config WHERE key = (SELECT key FROM system_config WHERE key <> 'rb.new' ORDER BY key DESC LIMIT 1);",
    )
    .await;
    // An event recorded but not yet published when the services stopped, and one applied.
    sql(
        &auth,
        "INSERT INTO auth.outbox (id, event_type, payload) VALUES \
         ('0193a000-0000-7000-8000-000000000001', 'user.registered', '{\"userId\": \"rb-user-1\"}')",
    )
    .await;
    sql(
        &profile,
        "INSERT INTO profile.processed_events (event_id, event_type, source) VALUES \
         ('0193a000-0000-7000-8000-000000000002', 'user.registered', 'auth-service')",
    )
    .await;
    sql(
        &profile,
        "INSERT INTO user_profiles (id, user_id, bio, updated_at) VALUES ('rb-profile-1', 'rb-user-1', 'hello', now()); \
         UPDATE user_profiles SET bio = repeat('long bio ', 4000), updated_at = now() WHERE id = (SELECT id FROM user_profiles WHERE id <> 'rb-profile-1' ORDER BY id LIMIT 1); \
         UPDATE user_profiles SET phone = '+15550100' WHERE id = (SELECT id FROM user_profiles WHERE id <> 'rb-profile-1' ORDER BY id LIMIT 1);",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_writes_every_change_back_and_a_second_one_writes_nothing() {
    let topology = topology_file("back");
    let f = cut_over(0.01, &topology).await;
    services_write(&f).await;

    // status shows how far behind the way back is.
    let status: Value = serde_json::from_str(&f.run_ok_async(&["status", "--json"]).await).unwrap();
    let way_back = status["wayBack"].as_array().unwrap();
    assert_eq!(way_back.len(), 4, "{status}");
    assert!(
        way_back
            .iter()
            .all(|w| w["behindBytes"].as_i64().unwrap() > 0),
        "{status}"
    );

    let legacy = f.legacy.pool().await;
    let legacy_before = counts(&legacy).await;
    let (code, report, stderr) = rollback(&f, &topology).await;
    assert_eq!(code, 0, "{report} {stderr}");
    assert!(report["freezeSeconds"].as_f64().unwrap() > 0.0, "{report}");
    assert!(
        report["conflicts"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert_eq!(written(&report, "users"), (1, 1, 0), "{report}");
    assert_eq!(written(&report, "refresh_tokens"), (1, 0, 3), "{report}");
    assert_eq!(written(&report, "payments"), (1, 1, 0), "{report}");
    assert_eq!(written(&report, "payment_transactions"), (1, 0, 0));
    assert_eq!(written(&report, "audit_logs"), (1, 0, 0));
    assert_eq!(written(&report, "system_config"), (1, 1, 1));
    assert_eq!(written(&report, "user_profiles"), (1, 1, 0));

    // The legacy database holds exactly what the service databases hold.
    let (code, verify) = f.verify_json();
    assert_eq!(code, 0, "{verify}");
    for (i, owner) in platform::Service::ALL.into_iter().enumerate() {
        let service = f.target(i).await;
        for table in schema::contract::tables_of(owner) {
            assert_eq!(
                common::content(&legacy, table).await,
                common::content(&service, table).await,
                "{}",
                table.name
            );
        }
    }
    let after = counts(&legacy).await;
    assert_eq!(after[0] - legacy_before[0], 1, "one user more");
    let bio: String = sqlx::query_scalar("SELECT bio FROM user_profiles WHERE phone = '+15550100'")
        .fetch_one(&legacy)
        .await
        .unwrap();
    assert_eq!(
        bio.len(),
        "long bio ".len() * 4000,
        "the TOASTed bio came back whole"
    );

    // The services' own state came along: the unpublished event will be published from legacy,
    // the applied one is not applied twice.
    let pending: Option<String> = sqlx::query_scalar(
        "SELECT event_type FROM auth.outbox WHERE id = '0193a000-0000-7000-8000-000000000001' AND published_at IS NULL",
    )
    .fetch_optional(&legacy)
    .await
    .unwrap();
    assert_eq!(pending.as_deref(), Some("user.registered"), "{report}");
    let applied: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM profile.processed_events WHERE event_id = '0193a000-0000-7000-8000-000000000002'",
    )
    .fetch_one(&legacy)
    .await
    .unwrap();
    assert_eq!(applied, 1);

    // The topology says shared; legacy takes writes; the service databases refuse them.
    let text = std::fs::read_to_string(&topology).unwrap();
    assert!(text.contains("DATABASE_TOPOLOGY=shared"), "{text}");
    sql(
        &legacy,
        "UPDATE system_config SET description = 'writable again' WHERE key = 'rb.new'",
    )
    .await;
    let refused = sqlx::query("UPDATE users SET name = 'late' WHERE id = 'rb-user-1'")
        .execute(&f.target(AUTH).await)
        .await
        .expect_err("the service database is frozen");
    assert!(refused.to_string().contains("rolled back"), "{refused}");
    let slots: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()",
    )
    .fetch_one(&legacy)
    .await
    .unwrap();
    assert_eq!(slots, 0, "the legacy capture slot is gone");

    // Twice: nothing written.
    let (code, again, stderr) = rollback(&f, &topology).await;
    assert_eq!(code, 0, "{again} {stderr}");
    assert_eq!(again["alreadyDone"], true, "{again}");
    for table in TABLE_NAMES {
        assert_eq!(written(&again, table), (0, 0, 0), "{again}");
    }
    std::fs::remove_file(&topology).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_before_any_cutover_is_refused_and_writes_nothing() {
    let f = Fixture::ready_for_cutover(0.002).await;
    let topology = topology_file("none");
    let (code, _, stderr) = {
        let out = f
            .run_async(
                &["rollback"],
                &[("MFE_TOPOLOGY_FILE", topology.display().to_string())],
            )
            .await;
        (
            out.status.code().unwrap_or(-1),
            (),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("never cut over"), "{stderr}");
    assert!(!topology.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_foreign_key_conflict_policy_keeps_referenced_rows_and_sets_refused_ones_aside() {
    let topology = topology_file("fk");
    let f = cut_over(0.01, &topology).await;
    let auth = f.target(AUTH).await;
    let payments = f.target(PAYMENTS).await;
    // A legacy user who sent payments, deleted in auth after cutover (auth's own foreign key
    // takes its tokens): legacy's payments_sender_id_fkey would refuse the delete.
    let (sender,): (String,) = sqlx::query_as("SELECT sender_id FROM payments ORDER BY id LIMIT 1")
        .fetch_one(&payments)
        .await
        .unwrap();
    sql(&auth, &format!("DELETE FROM users WHERE id = '{sender}'")).await;
    // A user registered after cutover, who paid, then was deleted: legacy never had the user, so
    // it cannot take the payment.
    sql(
        &auth,
        "INSERT INTO users (id, email, password_hash, name, role, updated_at) \
         VALUES ('rb-gone', 'gone@example.com', 'x', 'Gone', 'CUSTOMER', now())",
    )
    .await;
    sql(
        &payments,
        "INSERT INTO payments (id, sender_id, amount, status, type, updated_at) \
         VALUES ('rb-orphan', 'rb-gone', 5.00, 'completed', 'instant', now())",
    )
    .await;
    sql(&auth, "DELETE FROM users WHERE id = 'rb-gone'").await;
    // A user made and deleted with nothing pointing to it: deleted everywhere.
    sql(
        &auth,
        "INSERT INTO users (id, email, password_hash, name, role, updated_at) \
         VALUES ('rb-brief', 'brief@example.com', 'x', 'Brief', 'CUSTOMER', now())",
    )
    .await;
    sql(&auth, "DELETE FROM users WHERE id = 'rb-brief'").await;

    let (code, report, stderr) = rollback(&f, &topology).await;
    assert_eq!(code, 1, "conflicts need a decision: {report} {stderr}");
    let conflicts = report["conflicts"].as_array().unwrap();
    let kept = conflicts
        .iter()
        .find(|c| c["table"] == "users" && c["key"] == sender.as_str())
        .unwrap_or_else(|| panic!("the sender is named: {report}"));
    assert_eq!(kept["outcome"], "kept");
    assert!(
        kept["reason"]
            .as_str()
            .unwrap()
            .contains("payments_sender_id_fkey"),
        "{kept}"
    );
    let orphan = conflicts
        .iter()
        .find(|c| c["table"] == "payments" && c["key"] == "rb-orphan")
        .unwrap_or_else(|| panic!("the orphan payment is named: {report}"));
    assert_eq!(orphan["outcome"], "not written");
    assert_eq!(conflicts.len(), 2, "{report}");

    let legacy = f.legacy.pool().await;
    let still: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE id = $1")
        .bind(&sender)
        .fetch_one(&legacy)
        .await
        .unwrap();
    assert_eq!(still, 1, "the referenced user stays");
    let (hash,): (String,) = sqlx::query_as("SELECT password_hash FROM users WHERE id = $1")
        .bind(&sender)
        .fetch_one(&legacy)
        .await
        .unwrap();
    assert!(
        hash.starts_with('!'),
        "the kept account cannot log in: {hash}"
    );
    assert!(
        kept["reason"].as_str().unwrap().contains("locked"),
        "{kept}"
    );
    let payments_of_sender: i64 =
        sqlx::query_scalar("SELECT count(*) FROM payments WHERE sender_id = $1")
            .bind(&sender)
            .fetch_one(&legacy)
            .await
            .unwrap();
    assert!(payments_of_sender > 0, "and its payments with it");
    let (saved,): (Value,) = sqlx::query_as(
        "SELECT row FROM mfe_rollback.conflicts WHERE table_name = 'payments' AND key = 'rb-orphan'",
    )
    .fetch_one(&legacy)
    .await
    .unwrap();
    assert_eq!(
        saved["sender_id"], "rb-gone",
        "the refused row is kept whole"
    );
    assert_eq!(saved["amount"], "5.00");
    let brief: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE id IN ('rb-brief', 'rb-gone')")
            .fetch_one(&legacy)
            .await
            .unwrap();
    assert_eq!(brief, 0);

    // verify names exactly the two conflicts.
    let (code, verify) = f.verify_json();
    assert_eq!(code, 1, "{verify}");
    let text = verify.to_string();
    assert!(
        text.contains(&sender) && text.contains("rb-orphan"),
        "{verify}"
    );

    // Run again: nothing new, the conflicts still reported.
    let (code, again, _) = rollback(&f, &topology).await;
    assert_eq!(code, 1, "{again}");
    assert_eq!(again["alreadyDone"], true);
    assert_eq!(again["conflicts"].as_array().unwrap().len(), 2);
    std::fs::remove_file(&topology).ok();
}

/// Where a killed rollback had got to.
async fn left_at(f: &Fixture) -> String {
    let legacy = f.legacy.pool().await;
    let step: Option<String> = sqlx::query_scalar(
        "SELECT step FROM mfe_rollback.state WHERE to_regclass('mfe_rollback.state') IS NOT NULL",
    )
    .fetch_optional(&legacy)
    .await
    .ok()
    .flatten();
    let frozen: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'mfe_cutover_frozen')",
    )
    .fetch_one(&f.target(AUTH).await)
    .await
    .unwrap();
    format!("{} (services frozen: {frozen})", step.unwrap_or("-".into()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_killed_at_each_step_resumes_and_ends_exact() {
    let topology = topology_file("kill");
    let f = cut_over(0.02, &topology).await;
    services_write(&f).await;
    // Enough changes that reading and writing back take a while.
    sql(
        &f.target(ADMIN).await,
        "INSERT INTO audit_logs (id, user_id, action, created_at) \
         SELECT 'rb-bulk-' || g, NULL, 'bulk', now() FROM generate_series(1, 60000) g",
    )
    .await;
    sql(
        &f.target(AUTH).await,
        "UPDATE users SET name = name || ' (after)', updated_at = now()",
    )
    .await;
    let legacy = f.legacy.pool().await;
    let auth = f.target(AUTH).await;

    // Kill points, each seen from outside: the service databases frozen while staging; the
    // write-back transaction holding legacy's tables; the write-back committed.
    let frozen = "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'mfe_cutover_frozen')";
    let writing_back = "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
         WHERE c.relname = 'users' AND l.mode = 'AccessExclusiveLock' AND l.granted \
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND l.pid <> pg_backend_pid())";
    let applied = "SELECT coalesce((SELECT step = 'applied' FROM mfe_rollback.state \
         WHERE to_regclass('mfe_rollback.state') IS NOT NULL), false)";
    let mut seen = Vec::new();
    for (name, probe, pool) in [
        ("staging", frozen, &auth),
        ("writing back", writing_back, &legacy),
        ("applied", applied, &legacy),
    ] {
        let mut child = f
            .command(&["rollback"])
            .env("MFE_TOPOLOGY_FILE", &topology)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The step reached (killed there), or the rollback ended first; every 5 ms, as some
        // steps last only a few.
        let running = std::sync::Mutex::new(&mut child);
        let hit = test_support::eventually_every(
            Duration::from_secs(120),
            Duration::from_millis(5),
            || async {
                let now: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(probe))
                    .fetch_one(pool)
                    .await
                    .unwrap_or(false);
                let mut child = running.lock().unwrap();
                if now {
                    child.kill().unwrap();
                    return Some(true);
                }
                child.try_wait().unwrap().map(|_| false)
            },
        )
        .await
        .unwrap_or(false);
        let _ = child.wait();
        if name == "staging" && hit {
            // Mid-rollback the service databases refuse writes, superusers included.
            let refused = sqlx::query("UPDATE users SET name = 'during' WHERE id = 'rb-user-1'")
                .execute(&auth)
                .await
                .expect_err("a write to a service database during the rollback's freeze fails");
            assert!(refused.to_string().contains("frozen"), "{refused}");
        }
        let at = left_at(&f).await;
        println!("killed at {name}: hit {hit}, left at {at}");
        seen.push((name, hit, at));
    }
    assert!(
        seen[0].1 && seen[0].2.starts_with("staging"),
        "killed while staging: {seen:?}"
    );
    assert!(
        seen[1].1 && seen[1].2.starts_with("staging"),
        "a write-back killed inside its transaction leaves nothing: {seen:?}"
    );
    assert!(
        !seen[2].1 || seen[2].2.starts_with("applied"),
        "killed after the write-back committed: {seen:?}"
    );

    // The resumed rollback finishes exact, with what the services wrote.
    let (code, report, stderr) = rollback(&f, &topology).await;
    assert_eq!(code, 0, "{report} {stderr}");
    let (inserted, _, _) = written(&report, "audit_logs");
    assert!(
        inserted == 60_001 || report["alreadyDone"] == true,
        "{report}"
    );
    let (code, verify) = f.verify_json();
    assert_eq!(code, 0, "{verify}");
    let renamed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE name NOT LIKE '% (after)'")
            .fetch_one(&legacy)
            .await
            .unwrap();
    assert_eq!(renamed, 0, "every update came back");
    let text = std::fs::read_to_string(&topology).unwrap();
    assert!(text.contains("DATABASE_TOPOLOGY=shared"), "{text}");
    std::fs::remove_file(&topology).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_that_change_hands_and_equal_but_differently_printed_json_are_written_back() {
    let topology = topology_file("hands");
    let f = cut_over(0.01, &topology).await;
    let auth = f.target(AUTH).await;
    let admin = f.target(ADMIN).await;
    let legacy = f.legacy.pool().await;
    // A legacy user gives up its email, and a user registered after cutover takes it; the new
    // user's id sorts first, so it comes before the one that freed the email.
    let (old_id, email): (String, String) =
        sqlx::query_as("SELECT id, email FROM users ORDER BY id DESC LIMIT 1")
            .fetch_one(&auth)
            .await
            .unwrap();
    sql(
        &auth,
        &format!(
            "UPDATE users SET email = 'moved-' || email WHERE id = '{old_id}'; \
             INSERT INTO users (id, email, password_hash, name, role, updated_at) \
             VALUES ('0-rb-first', '{email}', 'x', 'Took The Email', 'CUSTOMER', now())"
        ),
    )
    .await;
    // A profile replaced by a new one of the same user (user_id is unique): the new row comes
    // first, while legacy still holds the old one, whose delete frees the user_id.
    let profile = f.target(PROFILE).await;
    let (old_profile, owner): (String, String) =
        sqlx::query_as("SELECT id, user_id FROM user_profiles ORDER BY id DESC LIMIT 1")
            .fetch_one(&profile)
            .await
            .unwrap();
    sql(
        &profile,
        &format!(
            "CREATE TEMP TABLE replaced AS SELECT * FROM user_profiles WHERE id = '{old_profile}'; \
             DELETE FROM user_profiles WHERE id = '{old_profile}'; \
             UPDATE replaced SET id = '0-rb-profile'; \
             INSERT INTO user_profiles SELECT * FROM replaced"
        ),
    )
    .await;
    // jsonb calls {"n": 10} and {"n": 10.0} equal; they print, and verify, differently.
    let (key,): (String,) = sqlx::query_as("SELECT key FROM system_config ORDER BY key LIMIT 1")
        .fetch_one(&admin)
        .await
        .unwrap();
    sql(
        &legacy,
        &format!(
            "ALTER TABLE system_config DISABLE TRIGGER mfe_cutover_frozen; \
             UPDATE system_config SET value = '{{\"n\": 10}}' WHERE key = '{key}'; \
             ALTER TABLE system_config ENABLE ALWAYS TRIGGER mfe_cutover_frozen"
        ),
    )
    .await;
    sql(
        &admin,
        &format!("UPDATE system_config SET value = '{{\"n\": 10.0}}' WHERE key = '{key}'"),
    )
    .await;

    let (code, report, stderr) = rollback(&f, &topology).await;
    assert_eq!(code, 0, "{report} {stderr}");
    assert!(
        report["conflicts"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert_eq!(written(&report, "users"), (1, 1, 0), "{report}");
    assert_eq!(written(&report, "system_config"), (0, 1, 0), "{report}");
    assert_eq!(written(&report, "user_profiles"), (1, 0, 1), "{report}");
    let (code, verify) = f.verify_json();
    assert_eq!(code, 0, "{verify}");
    let holder: String = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(&email)
        .fetch_one(&legacy)
        .await
        .unwrap();
    assert_eq!(holder, "0-rb-first");
    let profile_of_owner: String =
        sqlx::query_scalar("SELECT id FROM user_profiles WHERE user_id = $1")
            .bind(&owner)
            .fetch_one(&legacy)
            .await
            .unwrap();
    assert_eq!(profile_of_owner, "0-rb-profile");
    std::fs::remove_file(&topology).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_that_cannot_proceed_leaves_the_service_databases_writable() {
    let topology = topology_file("fail");
    let f = cut_over(0.005, &topology).await;
    let profile = f.target(PROFILE).await;
    // The way back of one database is gone (dropped by hand): writing back would lose its rows.
    sql(
        &profile,
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
         WHERE database = current_database()",
    )
    .await;
    let out = f
        .run_async(
            &["rollback"],
            &[("MFE_TOPOLOGY_FILE", topology.display().to_string())],
        )
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no way-back slot") && stderr.contains("take writes again"),
        "{stderr}"
    );
    // The platform goes on where it was: service databases writable, legacy frozen, split.
    sql(
        &f.target(AUTH).await,
        "UPDATE users SET name = name WHERE id = (SELECT id FROM users LIMIT 1)",
    )
    .await;
    let legacy = f.legacy.pool().await;
    let refused = sqlx::query("UPDATE system_config SET description = 'no'")
        .execute(&legacy)
        .await;
    assert!(refused.is_err(), "legacy stays frozen");
    let text = std::fs::read_to_string(&topology).unwrap();
    assert!(text.contains("DATABASE_TOPOLOGY=split"), "{text}");
    std::fs::remove_file(&topology).ok();
}

/// SQLSTATE of `DELETE FROM` every table of `schema` in `pool`'s database, per table: 25006
/// (read-only) where the freeze covers it, none where it took the write.
async fn writes_refused(pool: &sqlx::PgPool, schema: &str) -> Vec<(String, Option<String>)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut out = Vec::new();
    for t in tables {
        let mut tx = pool.begin().await.unwrap();
        let r = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DELETE FROM {schema}.{t}")))
            .execute(&mut *tx)
            .await;
        let code = r.err().and_then(|e| {
            e.as_database_error()
                .and_then(|d| d.code())
                .map(|c| c.to_string())
        });
        tx.rollback().await.unwrap();
        out.push((t, code));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_freeze_covers_the_services_own_tables_on_both_sides() {
    let topology = topology_file("own");
    let f = Fixture::ready_for_cutover(0.005).await;
    // The services ran on the legacy database (shared topology): their own schemas are there.
    let legacy = f.legacy.pool().await;
    for service in platform::Service::ALL {
        let mut conn = legacy.acquire().await.unwrap();
        schema::migrator(service).run(&mut *conn).await.unwrap();
    }
    let out = f
        .run_async(
            &["cutover"],
            &[("MFE_TOPOLOGY_FILE", topology.display().to_string())],
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let legacy = f.legacy.pool().await;
    for service in platform::Service::ALL {
        let refused = writes_refused(&legacy, service.schema()).await;
        assert!(refused.len() >= 2, "{refused:?}");
        for (table, code) in &refused {
            assert_eq!(
                code.as_deref(),
                Some("25006"),
                "legacy {}.{table} takes writes after cutover",
                service.schema()
            );
        }
    }
    legacy.close().await;

    let out = f
        .run_async(
            &["rollback"],
            &[("MFE_TOPOLOGY_FILE", topology.display().to_string())],
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (i, service) in platform::Service::ALL.into_iter().enumerate() {
        let pool = f.target(i).await;
        for (table, code) in writes_refused(&pool, service.schema()).await {
            assert_eq!(
                code.as_deref(),
                Some("25006"),
                "{}'s {table} takes writes after rollback",
                service.name()
            );
        }
        pool.close().await;
    }
    // Legacy takes writes again, its services' tables included.
    let legacy = f.legacy.pool().await;
    for service in platform::Service::ALL {
        for (table, code) in writes_refused(&legacy, service.schema()).await {
            assert_eq!(
                code,
                None,
                "legacy {}.{table} after rollback",
                service.schema()
            );
        }
    }
    legacy.close().await;
    let _ = std::fs::remove_file(&topology);
}

/// `mfe admin verify-audit` against the database at `url`: its exit code and output.
fn verify_audit(url: &str) -> (i32, String) {
    let out = std::process::Command::new(common::BIN)
        .args(["admin", "verify-audit", "--url", url])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_deleted_after_cutover_goes_by_legacys_own_rules_and_the_audit_chain_verifies() {
    let topology = topology_file("rules");
    let f = Fixture::ready_for_cutover(0.01).await;
    let legacy = f.legacy.pool().await;
    // A user who sent no payment, with a profile (CASCADE), audit rows and a payment received
    // (SET NULL), written on the legacy platform (the cutover's sync takes them over).
    let user = "rb-rules-user".to_string();
    sql(
        &legacy,
        "INSERT INTO users (id, email, password_hash, name, role, updated_at) \
           VALUES ('rb-rules-user', 'rules@example.com', 'x', 'Rules', 'CUSTOMER', now());
         INSERT INTO user_profiles (id, user_id, updated_at)
           VALUES ('rb-rules-profile', 'rb-rules-user', now());
         INSERT INTO audit_logs (id, user_id, action, resource_type, created_at)
           VALUES ('rb-rules-a1', 'rb-rules-user', 'user.login', 'user', now()),
                  ('rb-rules-a2', 'rb-rules-user', 'user.updated', 'user', now());
         INSERT INTO payments (id, sender_id, recipient_id, amount, status, type, updated_at)
           SELECT 'rb-rules-pay', id, 'rb-rules-user', 7.00, 'completed', 'instant', now()
           FROM users WHERE id <> 'rb-rules-user' ORDER BY id LIMIT 1;",
    )
    .await;
    // Admin ran on the legacy database before the migration: its chain anchors the audit rows.
    {
        let mut conn = legacy.acquire().await.unwrap();
        admin_service::MIGRATOR.run(&mut *conn).await.unwrap();
    }
    admin_service::audit::chain::anchor(
        &legacy,
        admin_service::audit::chain::Anchoring::FirstStart,
    )
    .await
    .unwrap();
    let (code, out) = verify_audit(&f.legacy.url);
    assert_eq!(code, 0, "{out}");
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_logs WHERE user_id = $1")
        .bind(&user)
        .fetch_one(&legacy)
        .await
        .unwrap();
    let out = f
        .run_async(
            &["cutover"],
            &[("MFE_TOPOLOGY_FILE", topology.display().to_string())],
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An admin deletes the user: auth deletes it (its own foreign key takes the tokens); the
    // profile service has not caught up, so its profile is still in profile_db.
    let auth = f.target(AUTH).await;
    sql(&auth, &format!("DELETE FROM users WHERE id = '{user}'")).await;

    let (code, report, stderr) = rollback(&f, &topology).await;
    assert_eq!(
        code, 0,
        "legacy takes the delete by its own rules: {report} {stderr}"
    );
    assert_eq!(report["conflicts"].as_array().unwrap().len(), 0, "{report}");
    let table = |name: &str| {
        report["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(table("users")["deleted"], 1, "{report}");
    assert_eq!(table("user_profiles")["cascaded"], 1, "{report}");
    assert_eq!(table("audit_logs")["cleared"], audited, "{report}");
    assert_eq!(table("payments")["cleared"], 1, "{report}");

    let gone: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM users WHERE id = $1) \
              + (SELECT count(*) FROM user_profiles WHERE user_id = $1) \
              + (SELECT count(*) FROM audit_logs WHERE user_id = $1)",
    )
    .bind(&user)
    .fetch_one(&legacy)
    .await
    .unwrap();
    assert_eq!(
        gone, 0,
        "deleted, its profile with it, its audit rows no longer point to it"
    );
    let recorded: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name, action FROM mfe_rollback.cleared WHERE parent_key = $1 ORDER BY 1",
    )
    .bind(&user)
    .fetch_all(&legacy)
    .await
    .unwrap();
    assert_eq!(recorded.len() as i64, audited + 2, "{recorded:?}");
    assert!(recorded.contains(&("payments".into(), "set null".into())));
    assert!(recorded.contains(&("user_profiles".into(), "cascade".into())));
    assert!(recorded.contains(&("audit_logs".into(), "set null".into())));
    // The chain holds: the cleared references are recorded beside it.
    let (code, out) = verify_audit(&f.legacy.url);
    assert_eq!(
        code, 0,
        "the audit chain verifies after the rollback: {out}"
    );
    // Clearing a reference by hand is still a change the chain finds.
    sql(
        &legacy,
        "UPDATE audit_logs SET user_id = NULL \
         WHERE id = (SELECT min(id) FROM audit_logs WHERE user_id IS NOT NULL)",
    )
    .await;
    let (code, out) = verify_audit(&f.legacy.url);
    assert_eq!(code, 1, "{out}");
    legacy.close().await;
    let _ = std::fs::remove_file(&topology);
}
