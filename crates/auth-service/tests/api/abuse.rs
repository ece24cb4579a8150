//! The real `auth-service` binary under abuse: a burst of wrong passwords for one account, a flood
//! of logins without accounts, over-long inputs.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use test_support::{Api, TestBroker, TestDb};

/// The binary on a free port, with `env` on top of a fresh database; killed when dropped.
struct Running {
    child: Child,
    api: Api,
    _db: TestDb,
    _broker: TestBroker,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn start(env: &[(&str, &str)]) -> Self {
        let db = TestDb::unborn();
        let broker = TestBroker::new();
        let mut child =
            crate::helpers::binary(&db, &broker, &crate::helpers::data_dir("mfe-auth-abuse"))
                .envs(env.iter().copied())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<Value>(&line)
                    && event["message"] == "listening"
                {
                    let _ = tx.send(event["port"].as_u64().unwrap());
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("auth-service starts");
        Self {
            child,
            api: Api::new(format!("http://127.0.0.1:{port}")),
            _db: db,
            _broker: broker,
        }
    }

    /// The process's peak resident memory, in MiB.
    fn peak_rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap()
            / 1024
    }
}

/// `n` logins at once; the status of each and its Retry-After, if any.
async fn burst(api: &Api, n: usize, body: impl Fn(usize) -> Value) -> Vec<(u16, Option<String>)> {
    let client = reqwest::Client::new();
    let requests = (0..n).map(|i| {
        let (client, url, body) = (client.clone(), format!("{}/auth/login", api.base), body(i));
        async move {
            let r = client.post(url).json(&body).send().await.unwrap();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let status = r.status().as_u16();
            let reply: Value = r.json().await.unwrap_or(Value::Null);
            assert!(
                reply["error"].is_object() || status == 200,
                "{status} {reply}"
            );
            (status, retry)
        }
    });
    futures_util::future::join_all(requests).await
}

fn count(replies: &[(u16, Option<String>)], status: u16) -> usize {
    replies.iter().filter(|(s, _)| *s == status).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_wrong_passwords_for_one_account_gets_exactly_the_limit_of_checks() {
    let auth = Running::start(&[("AUTH_LOGIN_MAX_FAILURES_PER_EMAIL", "5")]);
    let registered = auth
        .api
        .post(
            "/auth/register",
            None,
            &json!({"email": "victim@abuse.test", "password": "the-right-password", "name": "Victim"}),
        )
        .await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let replies = burst(
        &auth.api,
        40,
        |_| json!({"email": "victim@abuse.test", "password": "a-wrong-password"}),
    )
    .await;
    assert_eq!(count(&replies, 401), 5, "{replies:?}");
    assert_eq!(count(&replies, 429), 35, "{replies:?}");
    assert!(
        replies
            .iter()
            .filter(|(s, _)| *s == 429)
            .all(|(_, retry)| retry.is_some())
    );
    // The right password too waits for the window: the account is locked, not guessed.
    let locked = auth
        .api
        .post(
            "/auth/login",
            None,
            &json!({"email": "victim@abuse.test", "password": "the-right-password"}),
        )
        .await;
    assert_eq!(locked.status, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_logins_is_hashed_a_few_at_a_time_and_the_rest_told_to_retry() {
    let auth = Running::start(&[
        ("AUTH_HASH_WORKERS", "2"),
        ("AUTH_HASH_QUEUE", "8"),
        ("AUTH_LOGIN_MAX_FAILURES_PER_IP", "100000"),
    ]);
    let before = auth.peak_rss_mib();
    let replies = burst(
        &auth.api,
        200,
        |i| json!({"email": format!("nobody-{i}@abuse.test"), "password": "some-password-1"}),
    )
    .await;
    let (checked, busy) = (count(&replies, 401), count(&replies, 503));
    assert_eq!(checked + busy, 200, "only 401 and 503: {replies:?}");
    assert!(busy > 0, "beyond 2 workers and 8 waiting, 503: {replies:?}");
    assert!(
        checked >= 10,
        "the workers and the queue were served: {replies:?}"
    );
    assert!(
        replies
            .iter()
            .filter(|(s, _)| *s == 503)
            .all(|(_, retry)| retry.as_deref() == Some("1")),
        "503 says when to retry"
    );
    // Two argon2id hashes at a time (~19 MiB each), whatever the concurrency: unbounded, 200 at
    // once would take gigabytes (40 took 748 MiB before).
    let peak = auth.peak_rss_mib();
    eprintln!("auth peak RSS: {before} MiB before, {peak} MiB after 200 concurrent logins");
    assert!(peak < 250, "peak RSS {peak} MiB");
    // And it serves normally after.
    let after = burst(
        &auth.api,
        4,
        |i| json!({"email": format!("later-{i}@abuse.test"), "password": "some-password-1"}),
    )
    .await;
    assert_eq!(count(&after, 401), 4, "{after:?}");
}

#[tokio::test]
async fn over_long_login_inputs_are_refused_before_any_work() {
    let auth = Running::start(&[("AUTH_LOGIN_MAX_FAILURES_PER_IP", "3")]);
    let long_email = format!("{}@abuse.test", "a".repeat(250));
    for _ in 0..5 {
        let r = auth
            .api
            .post(
                "/auth/login",
                None,
                &json!({"email": long_email, "password": "whatever-1"}),
            )
            .await;
        assert_eq!(r.status, 422, "{}", r.body);
        assert_eq!(r.body["error"]["fields"][0]["field"], "email", "{}", r.body);
        let r = auth
            .api
            .post(
                "/auth/service-token",
                None,
                &json!({"clientId": "c".repeat(129), "clientSecret": "s"}),
            )
            .await;
        assert_eq!(r.status, 422, "{}", r.body);
        assert_eq!(
            r.body["error"]["fields"][0]["field"], "clientId",
            "{}",
            r.body
        );
    }
    // None of them counted against the client address (3 allowed): nothing was tried.
    let r = auth
        .api
        .post(
            "/auth/login",
            None,
            &json!({"email": "someone@abuse.test", "password": "whatever-1"}),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
}
