//! The real `auth-service` binary: configuration errors, creating its database, JSON logs without
//! secrets, graceful shutdown on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use test_support::TestDb;

use crate::helpers::BIN;

#[test]
fn a_bad_configuration_value_is_one_clear_line_and_exit_code_2() {
    for (var, value) in [
        ("AUTH_SERVICE_PORT", "not-a-port"),
        ("DATABASE_TOPOLOGY", "sideways"),
        ("AUTH_DATABASE_URL", "mysql://x/y"),
    ] {
        let out = Command::new(BIN).env(var, value).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(var), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn an_unreachable_database_names_it_with_the_password_masked() {
    let out = Command::new(BIN)
        .env(
            "AUTH_DATABASE_URL",
            "postgresql://postgres:hunter2-secret@127.0.0.1:1/auth_db",
        )
        .env("AUTH_SERVICE_PORT", "0")
        .env(
            "AUTH_DATA_DIR",
            std::env::temp_dir().join("mfe-auth-unreachable"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("postgresql://postgres:***@127.0.0.1:1/auth_db"),
        "{all}"
    );
    assert!(!all.contains("hunter2-secret"), "{all}");
}

#[tokio::test]
async fn the_binary_creates_its_database_logs_json_without_secrets_and_stops_gracefully() {
    let db = TestDb::unborn();
    // The user registered below is published on the test's own exchange, not the platform's.
    let broker = test_support::TestBroker::new();
    let data_dir = crate::helpers::data_dir("mfe-auth-bin");
    let mut child = crate::helpers::binary(&db, &broker, &data_dir)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let port = loop {
        let line = lines_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the service starts and logs");
        seen.push(line.clone());
        let event: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("a JSON log line: {line}"));
        if event["message"] == "listening" {
            break event["port"].as_u64().unwrap();
        }
    };
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let password = "Sup3r-Secret-Passw0rd";
    let registered = test_support::Api::new(base.clone())
        .post(
            "/auth/register",
            None,
            &json!({"email": "bin@example.com", "password": password, "name": "Bin"}),
        )
        .await
        .body;
    let refresh = registered["refreshToken"].as_str().unwrap().to_string();
    let access = registered["accessToken"].as_str().unwrap().to_string();
    let login = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"email": "bin@example.com", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    assert!(
        data_dir.join("jwt-ed25519.pem").exists(),
        "the generated key is kept"
    );

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful exit, got {status:?}");
    reader.join().unwrap();
    seen.extend(lines_rx.try_iter());
    let logs = seen.join("\n");
    assert!(
        logs.contains("request_id"),
        "log lines carry the request id"
    );
    assert!(logs.contains("\"stopped\""), "{logs}");
    for secret in [password, &refresh, &access] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
    let hash: String = {
        let pool = db.pool().await;
        sqlx::query_scalar("SELECT password_hash FROM users")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert!(!logs.contains(&hash), "the hash reached the logs");
    std::fs::remove_dir_all(&data_dir).ok();
}
