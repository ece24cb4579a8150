//! `mfe admin verify-audit`, on an admin database, without the service running.

use std::process::Command;

use admin_service::audit::chain;
use serde_json::Value;
use test_support::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_mfe");

fn verify(url: &str, extra: &[&str]) -> (Option<i32>, Value, String) {
    let out = Command::new(BIN)
        .args(["--json", "admin", "verify-audit"])
        .args(extra)
        .env("ADMIN_DATABASE_URL", url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let report = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code(),
        report,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// An admin database with two legacy rows, anchored, and two rows chained after.
async fn audited() -> TestDb {
    let db = TestDb::new().await;
    let config = test_support::spawn::config(admin_service::SERVICE, &db.url);
    let pool = platform::app::open_database(&config, &admin_service::MIGRATOR)
        .await
        .unwrap();
    sqlx::raw_sql(
        "INSERT INTO audit_logs (id, action, details, created_at) VALUES
           ('legacy-1', 'user.login', '{\"a\": 1}', '2023-01-01'),
           ('legacy-2', 'user.logout', NULL, '2023-01-02')",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(
        chain::anchor(&pool, chain::Anchoring::FirstStart)
            .await
            .unwrap(),
        Some(2)
    );
    for id in ["new-1", "new-2"] {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query(
            "INSERT INTO audit_logs (id, action, created_at) VALUES ($1, 'test.row', now())",
        )
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
        chain::append(&mut tx, id).await.unwrap();
        tx.commit().await.unwrap();
    }
    db
}

#[tokio::test]
async fn verify_audit_says_whether_the_chain_holds_and_names_the_row() {
    let db = audited().await;
    let (code, report, stderr) = verify(&db.url, &[]);
    assert_eq!(code, Some(0), "{report} {stderr}");
    assert_eq!(report["holds"], true);
    assert_eq!(report["verification"]["anchoredRows"], 2);
    assert_eq!(report["verification"]["chainedRows"], 2);
    let head = &report["verification"]["head"];
    let recorded = format!("{}:{}", head["seq"], head["hash"].as_str().unwrap());

    let (code, report, _) = verify(&db.url, &["--expect-head", &recorded]);
    assert_eq!(code, Some(0));
    assert_eq!(report["expectedHeadFound"], true);

    let pool = db.pool().await;
    sqlx::query("UPDATE audit_logs SET action = 'user.logout' WHERE id = 'new-1'")
        .execute(&pool)
        .await
        .unwrap();
    let (code, report, _) = verify(&db.url, &[]);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["verification"]["problems"][0]["auditLogId"], "new-1");
    assert_eq!(report["verification"]["problems"][0]["kind"], "changed");

    // The human report names it too.
    let out = Command::new(BIN)
        .args(["admin", "verify-audit", "--url", &db.url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains("TAMPERED") && text.contains("new-1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_rewritten_chain_is_caught_by_the_head_recorded_before() {
    let db = audited().await;
    let (_, report, _) = verify(&db.url, &[]);
    let head = &report["verification"]["head"];
    let recorded = format!("{}:{}", head["seq"], head["hash"].as_str().unwrap());
    // Rebuild the whole chain after a change, as someone covering their tracks would.
    let pool = db.pool().await;
    sqlx::raw_sql(
        "UPDATE audit_logs SET action = 'nothing.happened' WHERE id = 'new-2';
         DELETE FROM admin.audit_chain WHERE kind = 'row';
         DELETE FROM admin.audit_chain_head;",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO admin.audit_chain_head (seq, hash) SELECT seq, hash FROM admin.audit_chain WHERE seq = 1")
        .execute(&pool)
        .await
        .unwrap();
    for id in ["new-1", "new-2"] {
        let mut tx = pool.begin().await.unwrap();
        chain::append(&mut tx, id).await.unwrap();
        tx.commit().await.unwrap();
    }
    let (code, report, _) = verify(&db.url, &[]);
    assert_eq!(
        code,
        Some(0),
        "a rebuilt chain is consistent in itself: {report}"
    );
    let (code, report, _) = verify(&db.url, &["--expect-head", &recorded]);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["expectedHeadFound"], false);
}

fn anchor(url: &str) -> Value {
    let out = Command::new(BIN)
        .args(["--json", "admin", "anchor-audit", "--url", url])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn rows_brought_in_after_the_first_start_are_anchored_only_when_asked() {
    let db = audited().await;
    let pool = db.pool().await;
    // As the migration's sync would write them, after admin's first start.
    sqlx::query(
        "INSERT INTO audit_logs (id, action, created_at) VALUES ('synced-1', 'user.login', '2023-06-01')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (code, report, _) = verify(&db.url, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(report["verification"]["problems"][0]["kind"], "inserted");
    assert_eq!(
        report["verification"]["problems"][0]["auditLogId"],
        "synced-1"
    );

    assert_eq!(anchor(&db.url)["anchoredRows"], 1);
    assert_eq!(
        anchor(&db.url)["anchoredRows"],
        0,
        "a second run has nothing to do"
    );
    let (code, report, _) = verify(&db.url, &[]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["verification"]["anchoredRows"], 3);

    // From now on it is covered like any other row.
    sqlx::query("UPDATE audit_logs SET user_id = 'someone' WHERE id = 'synced-1'")
        .execute(&pool)
        .await
        .unwrap();
    let (code, report, _) = verify(&db.url, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(
        report["verification"]["problems"][0]["auditLogId"],
        "synced-1"
    );
    assert_eq!(report["verification"]["problems"][0]["kind"], "changed");
}

#[test]
fn bad_arguments_and_unreachable_databases_are_exit_code_2() {
    let (code, _, stderr) = verify("postgresql://postgres:s3cret@127.0.0.1:1/admin_db", &[]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
    let (code, _, stderr) = verify("postgresql://localhost/x", &["--expect-head", "nonsense"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--expect-head"), "{stderr}");
}
