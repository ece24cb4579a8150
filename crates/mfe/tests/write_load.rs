//! `mfe legacy write-load`: a live POC-2 whose report is an exact account of what it wrote.

mod common;

use std::process::Command;

use common::{BIN, Fixture, TABLE_NAMES as TABLES, counts};
use serde_json::Value;

#[tokio::test]
async fn the_write_load_reports_exactly_what_it_wrote() {
    let fixture = Fixture::seeded(0.01).await;
    let pool = fixture.legacy.pool().await;
    let before = counts(&pool).await;
    let out = Command::new(BIN)
        .args([
            "--json",
            "legacy",
            "write-load",
            "--rate",
            "300",
            "--duration",
            "3",
            "--workers",
            "4",
            "--seed",
            "3",
        ])
        .arg("--url")
        .arg(&fixture.legacy.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let after = counts(&pool).await;

    for (i, table) in TABLES.iter().enumerate() {
        let c = &report["tables"][table];
        let net = c["inserted"].as_i64().unwrap_or(0) - c["deleted"].as_i64().unwrap_or(0);
        assert_eq!(after[i] - before[i], net, "{table}: {report}");
    }
    assert_eq!(report["failures"], serde_json::json!({}), "{report}");
    for kind in [
        "register",
        "login",
        "pay",
        "advance",
        "profile_bio",
        "audit",
        "config",
    ] {
        assert!(
            report["operations"][kind].as_u64().unwrap_or(0) > 0,
            "{kind} played: {report}"
        );
    }
    // Big bios went out of line (TOAST), and some profiles changed without touching theirs.
    let toasted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM user_profiles WHERE length(bio) = 8000 AND pg_column_size(bio) > 2000",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(toasted > 0, "{report}");

    let bad = Command::new(BIN)
        .args([
            "legacy",
            "write-load",
            "--rate",
            "0",
            "--url",
            &fixture.legacy.url,
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--rate"));
}
