//! `mfe migrate cutover`: a short freeze with writes running, exact afterwards, the legacy
//! database refusing every write after it, and a failed cutover undone.

mod common;

use std::time::Duration;

use common::{Fixture, TABLE_NAMES, counts};
use legacy_seed::live::{LoadOptions, write_load};
use sqlx::Connection;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cutover_under_a_write_load_freezes_briefly_and_leaves_nothing_behind() {
    let f = Fixture::seeded(0.01).await;
    f.run_ok_async(&["prepare"]).await;
    let legacy = f.legacy.pool().await;
    let before = counts(&legacy).await;
    // A session of the live platform, opened before the cutover.
    let mut old_session = sqlx::PgConnection::connect(&f.legacy.url).await.unwrap();

    // The platform writes all along: during the copy, the sync, the verify and the cutover.
    let opts = LoadOptions {
        url: f.legacy.url.clone(),
        rate: 120,
        duration: Duration::from_secs(12),
        workers: 2,
        seed: 5,
    };
    let load = tokio::spawn(async move { write_load(&opts, std::future::pending()).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    f.run_ok_async(&["copy"]).await;
    f.run_ok_async(&["sync"]).await;
    let verified: serde_json::Value =
        serde_json::from_str(&f.run_ok_async(&["verify", "--json"]).await).unwrap();
    assert_eq!(verified["live"], true, "{verified}");
    let topology = std::env::temp_dir().join(format!("mfe-topology-{}.env", std::process::id()));
    let out = f
        .run_async(
            &["cutover", "--json"],
            &[("MFE_TOPOLOGY_FILE", topology.display().to_string())],
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let freeze = report["freezeSeconds"].as_f64().unwrap();
    assert!(freeze > 0.0, "{report}");
    println!("freeze: {freeze:.3} s ({report})");
    let load = load.await.unwrap().expect("the load ran");
    assert!(load.committed() > 100, "{load:?}");
    assert!(
        load.failed() > 0,
        "writes after the freeze were refused: {load:?}"
    );

    // Every write that committed is in the service databases, and nothing else.
    let (code, verify) = f.verify_json();
    assert_eq!(code, 0, "{verify}");
    let after = counts(&legacy).await;
    for (i, table) in TABLE_NAMES.iter().enumerate() {
        let c = &serde_json::to_value(&load.tables).unwrap()[table];
        let net = c["inserted"].as_i64().unwrap_or(0) - c["deleted"].as_i64().unwrap_or(0);
        assert_eq!(
            after[i] - before[i],
            net,
            "{table}: what the writer committed is all there"
        );
    }
    let written = std::fs::read_to_string(&topology).unwrap();
    assert!(written.contains("DATABASE_TOPOLOGY=split"), "{written}");
    std::fs::remove_file(&topology).ok();

    // Writes are refused: from a new session, a superuser's, even one that turns triggers off,
    // and from a session opened before.
    let refused = sqlx::query("UPDATE system_config SET description = 'late'")
        .execute(&legacy)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("frozen"), "{refused}");
    let mut sneaky = sqlx::PgConnection::connect(&f.legacy.url).await.unwrap();
    for (setup, write, why) in [
        (
            "SET default_transaction_read_only = off; SET transaction_read_only = off",
            "UPDATE users SET name = 'x'",
            "setting read-only back off does not lift the freeze",
        ),
        (
            "SET session_replication_role = replica",
            "DELETE FROM audit_logs",
            "session_replication_role does not lift the freeze",
        ),
        (
            "SELECT 1",
            "TRUNCATE refresh_tokens CASCADE",
            "TRUNCATE is refused too",
        ),
    ] {
        sqlx::raw_sql(setup).execute(&mut sneaky).await.unwrap();
        assert!(
            sqlx::raw_sql(write).execute(&mut sneaky).await.is_err(),
            "{why}"
        );
    }
    assert!(
        sqlx::raw_sql("INSERT INTO audit_logs (id, action) VALUES ('old', 'x')")
            .execute(&mut old_session)
            .await
            .is_err(),
        "a session opened before the freeze cannot write after it"
    );
    let again = f.run_async(&["cutover"], &[]).await;
    assert_eq!(again.status.code(), Some(2), "a second cutover is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_cutover_leaves_the_legacy_database_writable_and_switches_nothing() {
    let f = Fixture::seeded(0.01).await;
    f.run_ok_async(&["prepare"]).await;
    // Refused before anything: no verify has run yet.
    f.run_ok_async(&["copy"]).await;
    let refused = f.run_async(&["cutover"], &[]).await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("verify"));
    f.run_ok_async(&["sync"]).await;
    f.run_ok_async(&["verify"]).await;

    let legacy = f.legacy.pool().await;
    sqlx::query("UPDATE users SET name = 'Changed' WHERE id = (SELECT min(id) FROM users)")
        .execute(&legacy)
        .await
        .unwrap();
    f.run_ok_async(&["sync"]).await;
    // The service database drifts from what the sync wrote: the verify inside the freeze sees it.
    let auth = f.target(0).await;
    sqlx::query("UPDATE users SET name = 'Drifted' WHERE name = 'Changed'")
        .execute(&auth)
        .await
        .unwrap();
    let stderr = refused_at_verify(&f, "failed").await;
    assert!(stderr.contains("writable again"), "{stderr}");
    sqlx::query("UPDATE system_config SET description = 'still writable' WHERE key = (SELECT min(key) FROM system_config)")
        .execute(&legacy)
        .await
        .expect("the legacy database takes writes again");
}

#[tokio::test]
async fn a_row_lost_where_the_sync_never_wrote_is_caught_by_the_counts_inside_the_freeze() {
    let f = Fixture::seeded(0.01).await;
    f.run_ok_async(&["prepare"]).await;
    f.run_ok_async(&["copy"]).await;
    f.run_ok_async(&["sync"]).await;
    f.run_ok_async(&["verify"]).await;
    // A row gone from a service database that no change since touched: only a count sees it.
    let profile = f.target(3).await;
    sqlx::query("DELETE FROM user_profiles WHERE id = (SELECT max(id) FROM user_profiles)")
        .execute(&profile)
        .await
        .unwrap();
    let stderr = refused_at_verify(&f, "lost").await;
    assert!(stderr.contains("user_profiles ("), "{stderr}");
}

/// Runs a cutover that its verify inside the freeze must refuse (exit 2, the topology file not
/// written); returns its stderr.
async fn refused_at_verify(f: &Fixture, tag: &str) -> String {
    let topology =
        std::env::temp_dir().join(format!("mfe-topology-{tag}-{}.env", std::process::id()));
    let out = f
        .run_async(
            &["cutover"],
            &[("MFE_TOPOLOGY_FILE", topology.display().to_string())],
        )
        .await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(stderr.contains("failed at step verify"), "{stderr}");
    assert!(!topology.exists(), "the topology was not switched");
    stderr
}

/// A TCP proxy to the test server, for a service database that the test can make unreachable
/// at a chosen moment (every connection through it cut, new ones refused).
struct Proxy {
    port: u16,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    async fn start(upstream: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, mut is_cut) = tokio::sync::watch::channel(false);
        let watch = cut.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = is_cut.wait_for(|c| *c) => return,
                    accepted = listener.accept() => {
                        let Ok((mut client, _)) = accepted else { return };
                        let mut watch = watch.clone();
                        tokio::spawn(async move {
                            let Ok(mut server) =
                                tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                            else {
                                return;
                            };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                _ = watch.wait_for(|c| *c) => {}
                            }
                        });
                    }
                }
            }
        });
        Self { port, cut }
    }

    fn cut(&self) {
        let _ = self.cut.send(true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_unreachable_mid_cutover_leaves_the_legacy_database_writable() {
    let f = Fixture::ready_for_cutover(0.01).await;
    let legacy = f.legacy.pool().await;
    sqlx::query("UPDATE user_profiles SET bio = 'changed before the cutover' WHERE id = (SELECT min(id) FROM user_profiles)")
        .execute(&legacy)
        .await
        .unwrap();
    // The profile database, reached through a proxy the test cuts the moment the freeze is in.
    let proxy = Proxy::start(5432).await;
    let profile_url = f.targets[3]
        .url
        .replacen(":5432/", &format!(":{}/", proxy.port), 1);
    assert_ne!(profile_url, f.targets[3].url);
    let topology =
        std::env::temp_dir().join(format!("mfe-topology-cut-{}.env", std::process::id()));
    let cutover = {
        let mut cmd = f.command(&["cutover"]);
        cmd.env("PROFILE_DATABASE_URL", &profile_url)
            .env("MFE_TOPOLOGY_FILE", &topology);
        tokio::task::spawn_blocking(move || cmd.output().expect("mfe runs"))
    };
    // The freeze starts by ending every legacy session, this one included: that is the moment.
    let mut watcher = sqlx::PgConnection::connect(&f.legacy.url).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let frozen: Result<i64, _> = sqlx::query_scalar(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'mfe_cutover_frozen'",
        )
        .fetch_one(&mut watcher)
        .await;
        if !matches!(frozen, Ok(0)) || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    proxy.cut();
    let out = cutover.await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cutover failed at step"), "{stderr}");
    assert!(
        !stderr.contains("step freeze"),
        "it failed after the freeze, where it must thaw: {stderr}"
    );
    assert!(stderr.contains("writable again"), "{stderr}");
    assert!(!topology.exists(), "the topology was not switched");
    println!("{stderr}");
    sqlx::query("UPDATE system_config SET description = 'writable' WHERE key = (SELECT min(key) FROM system_config)")
        .execute(&legacy)
        .await
        .expect("the legacy database takes writes again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cutover_is_refused_while_sync_stays_further_behind_than_the_bound() {
    let f = Fixture::ready_for_cutover(0.01).await;
    // The server keeps writing WAL (here in a table of its own), so the slot is never at zero
    // bytes behind: a bound of 0 MB cannot be met.
    let legacy = f.legacy.pool().await;
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS wal_noise (n int)")
        .execute(&legacy)
        .await
        .unwrap();
    let noise = {
        let legacy = legacy.clone();
        tokio::spawn(async move {
            loop {
                let _ = sqlx::query("INSERT INTO wal_noise VALUES (1)")
                    .execute(&legacy)
                    .await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let topology =
        std::env::temp_dir().join(format!("mfe-topology-lag-{}.env", std::process::id()));
    let out = f
        .run_async(
            &["cutover", "--max-lag-mb", "0"],
            &[("MFE_TOPOLOGY_FILE", topology.display().to_string())],
        )
        .await;
    noise.abort();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bytes behind after catching up"),
        "{stderr}"
    );
    assert!(!topology.exists());
    let frozen: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_trigger WHERE tgname = 'mfe_cutover_frozen'")
            .fetch_one(&legacy)
            .await
            .unwrap();
    assert_eq!(frozen, 0, "refused before any freeze");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cutover_killed_inside_its_freeze_is_started_again_by_the_next_one() {
    let f = Fixture::ready_for_cutover(0.01).await;
    // What a cutover killed after freezing leaves: the triggers, and no cutover in the journal.
    let mut legacy = sqlx::PgConnection::connect(&f.legacy.url).await.unwrap();
    migrator::engine::freeze::freeze(&mut legacy, Duration::from_secs(5))
        .await
        .unwrap();
    let topology =
        std::env::temp_dir().join(format!("mfe-topology-again-{}.env", std::process::id()));
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
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stopped inside its freeze"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read_to_string(&topology)
            .unwrap()
            .contains("split")
    );
    std::fs::remove_file(&topology).ok();
    let (code, report) = f.verify_json();
    assert_eq!(code, 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_changed_before_the_cutover_are_verified_before_its_freeze() {
    let f = Fixture::ready_for_cutover(0.01).await;
    // Changed after the last verify: compared while writes could still go on, not in the freeze.
    f.legacy_sql(
        "INSERT INTO audit_logs (id, action) SELECT 'early-' || i, 'x' FROM generate_series(1, 3000) i;
         UPDATE payments SET description = 'changed early' WHERE id IN (SELECT id FROM payments ORDER BY id LIMIT 500);",
    )
    .await;
    f.run_ok_async(&["sync"]).await;
    let topology =
        std::env::temp_dir().join(format!("mfe-topology-ahead-{}.env", std::process::id()));
    let out = f
        .run_async(
            &["cutover", "--json"],
            &[("MFE_TOPOLOGY_FILE", topology.display().to_string())],
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = report["steps"].as_array().unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s[0] == "verify the changed rows (writes running)"),
        "{report}"
    );
    // Nothing changed between that look and the freeze: nothing left to compare inside it.
    assert!(
        report["verifiedRows"].as_u64().unwrap() < 100,
        "the freeze compared rows already compared before it: {report}"
    );
    let _ = std::fs::remove_file(&topology);
    let (code, verified) = f.verify_json();
    assert_eq!(code, 0, "after the cutover: {verified}");
}
