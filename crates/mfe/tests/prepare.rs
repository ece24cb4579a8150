//! `mfe migrate prepare` against real PostgreSQL.

use std::process::Command;

use test_support::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_mfe");

#[tokio::test]
async fn prepare_creates_the_four_databases_with_their_tables_and_is_idempotent() {
    let dbs = [
        TestDb::unborn(),
        TestDb::unborn(),
        TestDb::unborn(),
        TestDb::unborn(),
    ];
    let vars = [
        "AUTH_DATABASE_URL",
        "PAYMENTS_DATABASE_URL",
        "ADMIN_DATABASE_URL",
        "PROFILE_DATABASE_URL",
    ];
    for _ in 0..2 {
        let mut cmd = Command::new(BIN);
        cmd.args(["migrate", "prepare"]);
        for (var, db) in vars.iter().zip(&dbs) {
            cmd.env(var, &db.url);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let expected = [
        vec!["refresh_tokens", "users"],
        vec!["payment_transactions", "payments"],
        vec!["audit_logs", "system_config"],
        vec!["user_profiles"],
    ];
    for (db, tables) in dbs.iter().zip(expected) {
        let pool = db.pool().await;
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(found, tables);
        pool.close().await;
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
