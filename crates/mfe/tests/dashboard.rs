//! The live view of a migration, through the real binary: `mfe migrate copy --ui` serves a
//! running copy's progress as it moves; `mfe migrate dashboard` serves the journal read-only
//! (verify's differing ids, the freeze); the token rule; Prometheus carries the same figures.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Fixture, TABLE_NAMES};
use serde_json::Value;

/// A child process killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `mfe migrate <args>` and returns it with the view's address, read from its stderr
/// ("live view: http://..."); the rest of stderr is collected in the background.
fn start_with_view(
    f: &Fixture,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Running, String, std::sync::Arc<std::sync::Mutex<String>>) {
    let mut cmd = f.command(args);
    cmd.stderr(Stdio::piped()).stdout(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("mfe starts");
    let stderr = child.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let kept = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("live view: ") {
                let _ = tx.send(url.trim().to_string());
            }
            kept.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let running = Running(child);
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("no view announced; stderr:\n{}", log.lock().unwrap()));
    // http://host:port/ or http://host:port/?token=… (the token is never printed)
    let base = url
        .split("/?")
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    (running, base, log)
}

async fn snapshot(http: &reqwest::Client, base: &str) -> Value {
    let r = http
        .get(format!("{base}/api/snapshot"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    r.json().await.unwrap()
}

/// The snapshot, or `None` when the view no longer answers (its phase has ended).
async fn try_snapshot(http: &reqwest::Client, base: &str) -> Option<Value> {
    let r = http.get(format!("{base}/api/snapshot")).send().await.ok()?;
    assert_eq!(r.status(), 200);
    r.json().await.ok()
}

fn rows_of(s: &Value) -> u64 {
    s["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["rows"].as_u64().unwrap())
        .sum()
}

/// Polls the snapshot until `until` holds (10 s at most).
async fn wait_for(
    http: &reqwest::Client,
    base: &str,
    what: &str,
    until: impl Fn(&Value) -> bool,
) -> Value {
    let found = test_support::eventually(Duration::from_secs(10), || async {
        let s = snapshot(http, base).await;
        until(&s).then_some(s)
    })
    .await;
    match found {
        Some(s) => s,
        None => panic!("{what}; last snapshot: {:#}", snapshot(http, base).await),
    }
}

#[tokio::test]
async fn a_copy_with_ui_shows_its_tables_moving_and_the_journal_view_agrees_after() {
    let f = Fixture::seeded(0.05).await;
    f.run_ok_async(&["prepare"]).await;
    let http = reqwest::Client::new();
    // Slowed down to a few seconds, so that the view is seen while the copy runs.
    let (mut copy, base, log) = start_with_view(
        &f,
        &["copy", "--ui", "127.0.0.1:0", "--max-rate", "4000"],
        &[],
    );

    // The stream: the current snapshot first, as an event `snapshot`.
    let mut stream = http.get(format!("{base}/api/stream")).send().await.unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
            .await
            .expect("an event within 5 s")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let event = text.split("\n\n").next().unwrap();
    assert!(event.starts_with("event: snapshot\ndata: "), "{event}");
    let first: Value = serde_json::from_str(event.split_once("data: ").unwrap().1).unwrap();
    assert_eq!(first["mode"], "live");
    assert_eq!(first["phase"]["name"], "copy");
    drop(stream);

    // While it runs: every table of the contract, the rows moving, a rate.
    let mut seen: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while copy.0.try_wait().unwrap().is_none() && Instant::now() < deadline {
        // The copy may end, and its view with it, between the check above and this request.
        let Some(s) = try_snapshot(&http, &base).await else {
            break;
        };
        if s["phase"]["state"] == "running" {
            seen.push(s);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let status = copy.0.wait().unwrap();
    assert!(status.success(), "copy failed:\n{}", log.lock().unwrap());
    assert!(
        seen.len() >= 3,
        "only {} snapshots of the running copy",
        seen.len()
    );
    let names: Vec<&str> = seen[0]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    for name in TABLE_NAMES {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    let moving = seen
        .windows(2)
        .filter(|w| rows_of(&w[1]) > rows_of(&w[0]))
        .count();
    assert!(
        moving >= 2,
        "the rows moved {moving} times in {} snapshots",
        seen.len()
    );
    assert!(
        seen.iter()
            .any(|s| s["totals"]["rowsPerSecond"].as_f64().unwrap() > 0.0
                && s["throughput"].as_array().unwrap().len() >= 2),
        "no rate or chart while copying"
    );
    assert!(
        seen.iter()
            .any(|s| s["tables"].as_array().unwrap().iter().any(|t| {
                t["state"] == "loading"
                    && t["rowsTotal"].as_u64().unwrap() > t["rows"].as_u64().unwrap()
            })),
        "no table seen part-way"
    );

    // After: a second operator's view of the journal.
    let (_view, base, _) = start_with_view(&f, &["dashboard", "--listen", "127.0.0.1:0"], &[]);
    let legacy = f.legacy.pool().await;
    let counts = common::counts(&legacy).await;
    let s = snapshot(&http, &base).await;
    assert_eq!(s["mode"], "journal");
    assert_eq!(s["phase"]["name"], "copy");
    assert_eq!(s["phase"]["state"], "done");
    for (name, count) in TABLE_NAMES.iter().zip(&counts) {
        let t = s["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == *name)
            .unwrap();
        assert_eq!(t["state"], "done", "{t}");
        assert_eq!(t["rows"].as_i64().unwrap(), *count, "{t}");
        assert!(t["bytes"].as_u64().unwrap() > 0, "{t}");
        assert_eq!(t["chunksDone"], t["chunks"], "{t}");
    }
    // The same figures for Prometheus.
    let metrics = metrics_text(&http, &base).await;
    let payments = counts[TABLE_NAMES.iter().position(|t| *t == "payments").unwrap()];
    assert!(
        metrics.contains(&format!(
            "mfe_migration_table_rows{{table=\"payments\",service=\"payments-service\"}} {payments}\n"
        )),
        "{metrics}"
    );
    assert!(metrics.contains(
        "mfe_migration_table_state{table=\"users\",service=\"auth-service\",state=\"done\"} 1"
    ));

    // Verify, clean, then with a row gone from its service database: the view names it.
    f.run_ok_async(&["verify"]).await;
    wait_for(&http, &base, "verify clean", |s| s["verify"]["ok"] == true).await;
    let admin_db = f.target(2).await;
    let gone: String = sqlx::query_scalar(
        "DELETE FROM audit_logs WHERE id = (SELECT min(id) FROM audit_logs) RETURNING id",
    )
    .fetch_one(&admin_db)
    .await
    .unwrap();
    let out = f.run_async(&["verify"], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let s = wait_for(&http, &base, "verify differences", |s| {
        s["verify"]["ok"] == false
    })
    .await;
    let table = s["verify"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "audit_logs")
        .unwrap();
    assert_eq!(table["ok"], false);
    assert_eq!(table["missing"], serde_json::json!([gone]), "{table}");
    assert_eq!(table["missingCount"], 1);
    assert!(
        metrics_text(&http, &base)
            .await
            .contains("mfe_migration_verify_differences{table=\"audit_logs\",kind=\"missing\"} 1")
    );

    // The freeze of a cutover, counted from when it began.
    let mut conn = legacy.acquire().await.unwrap();
    migrator::engine::freeze::freeze(&mut conn, Duration::from_secs(5))
        .await
        .unwrap();
    let s = wait_for(&http, &base, "frozen", |s| {
        s["cutover"]["state"] == "frozen"
    })
    .await;
    assert!(s["cutover"]["frozenAt"].as_str().unwrap().ends_with('Z'));
    let mut conn = legacy.acquire().await.unwrap();
    migrator::engine::freeze::thaw(&mut conn).await.unwrap();
    wait_for(&http, &base, "thawed", |s| {
        s["cutover"]["state"] == "not started"
    })
    .await;
}

async fn metrics_text(http: &reqwest::Client, base: &str) -> String {
    http.get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_view_listens_beyond_localhost_only_with_a_token_and_never_prints_it() {
    let f = Fixture::seeded(0.01).await;
    f.run_ok_async(&["prepare"]).await;

    let out = f
        .run_async(&["dashboard", "--listen", "0.0.0.0:0"], &[])
        .await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("token"), "{stderr}");

    let out = f
        .run_async(
            &["dashboard", "--listen", "0.0.0.0:0"],
            &[("MFE_UI_TOKEN", "short".into())],
        )
        .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16"));

    let token = "dashboard-secret-0123456789";
    let (_view, base, log) = start_with_view(
        &f,
        &["dashboard", "--listen", "0.0.0.0:0"],
        &[("MFE_UI_TOKEN", token)],
    );
    let base = base.replace("0.0.0.0", "127.0.0.1");
    let http = reqwest::Client::new();
    for path in ["/", "/api/snapshot", "/api/stream", "/metrics"] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
        let r = http
            .get(format!("{base}{path}?token=wrong-token-wrong-token"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = http
        .get(format!("{base}/api/snapshot?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{base}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = http
        .get(format!("{base}/?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains("/assets/app.js") || html.contains("assets/app.js"));
    for outside in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(
            !html.contains(outside),
            "an asset from elsewhere: {outside}"
        );
    }
    assert!(
        !log.lock().unwrap().contains(token),
        "the token was printed"
    );

    // --ui belongs to the long phases.
    let out = f.run_async(&["plan", "--ui", "127.0.0.1:0"], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("long phases"));
}

/// Runs `mfe migrate <args> --ui` to its end, reading the view every 100 ms meanwhile; the
/// snapshots seen, the last one after the phase's outcome was published.
async fn watch_to_the_end(f: &Fixture, args: &[&str], env: &[(&str, &str)]) -> Vec<Value> {
    let mut args = args.to_vec();
    args.extend(["--ui", "127.0.0.1:0"]);
    let (mut running, base, log) = start_with_view(f, &args, env);
    let http = reqwest::Client::new();
    let mut seen = Vec::new();
    loop {
        if let Ok(r) = http.get(format!("{base}/api/snapshot")).send().await
            && let Ok(s) = r.json::<Value>().await
        {
            seen.push(s);
        }
        if let Some(status) = running.0.try_wait().unwrap() {
            assert!(
                status.success(),
                "{args:?} failed:\n{}",
                log.lock().unwrap()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last = seen.last().expect("the view answered while the phase ran");
    assert_eq!(last["mode"], "live");
    assert_eq!(last["phase"]["name"], args[0], "{last:#}");
    assert_eq!(last["phase"]["state"], "done", "{last:#}");
    seen
}

/// `mfe migrate dashboard` (the journal alone) until its snapshot satisfies `until`.
async fn journal_view(f: &Fixture, what: &str, until: impl Fn(&Value) -> bool) -> Value {
    let (_running, base, _log) = start_with_view(f, &["dashboard", "--listen", "127.0.0.1:0"], &[]);
    wait_for(&reqwest::Client::new(), &base, what, until).await
}

/// The slots the view says keep WAL: (database, retained bytes).
fn slots(s: &Value) -> Vec<(String, i64)> {
    s["migration"]["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["database"].as_str().unwrap().to_string(),
                x["retainedBytes"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn sync_cutover_and_rollback_each_show_their_state_in_the_view() {
    let f = Fixture::seeded(0.02).await;
    let topology = std::env::temp_dir().join(format!("mfe-dash-{}.env", std::process::id()));
    let topology_env = topology.display().to_string();
    let env = [("MFE_TOPOLOGY_FILE", topology_env.as_str())];
    f.run_ok_async(&["prepare"]).await;
    f.run_ok_async(&["copy"]).await;
    f.legacy_sql(
        "UPDATE system_config SET value = '\"changed for sync\"' WHERE key = (SELECT min(key) FROM system_config)",
    )
    .await;

    let seen = watch_to_the_end(&f, &["sync"], &env).await;
    let last = seen.last().unwrap();
    assert!(
        last["sync"]["slot"].as_str().is_some(),
        "{:#}",
        last["sync"]
    );
    assert!(
        last["sync"]["lagBytes"].as_i64().is_some(),
        "{:#}",
        last["sync"]
    );
    // The change went to admin's database (system_config): its position moved.
    let positions = last["sync"]["positions"].as_array().unwrap();
    assert!(
        positions
            .iter()
            .any(|p| p["service"] == "admin-service" && p["transactions"].as_i64() >= Some(1)),
        "{:#}",
        last["sync"]
    );
    assert!(
        last["sync"]["changesPerSecond"].as_f64().is_some(),
        "sync's own figures"
    );
    let s = journal_view(&f, "syncing, with the capture slot", |s| {
        s["migration"]["state"] == "syncing"
    })
    .await;
    assert_eq!(
        slots(&s)
            .iter()
            .map(|(d, _)| d.as_str())
            .collect::<Vec<_>>(),
        ["legacy"],
        "{:#}",
        s["migration"]
    );
    assert!(slots(&s)[0].1 > 0, "the WAL the capture keeps");

    f.run_ok_async(&["verify"]).await;
    let seen = watch_to_the_end(&f, &["cutover"], &env).await;
    let last = seen.last().unwrap();
    assert_eq!(last["cutover"]["state"], "done", "{:#}", last["cutover"]);
    assert!(last["cutover"]["freezeSeconds"].as_f64().unwrap() > 0.0);
    assert!(
        seen.iter().any(|s| s["cutover"]["step"].is_string()),
        "no step of the cutover was seen while it ran"
    );
    // Only the way back keeps WAL now: the legacy capture slot went with the cutover.
    let s = journal_view(&f, "cut over", |s| s["migration"]["state"] == "cut over").await;
    let held = slots(&s);
    assert_eq!(held.len(), 4, "{:#}", s["migration"]);
    assert!(held.iter().all(|(d, b)| d != "legacy" && *b >= 0));

    let seen = watch_to_the_end(&f, &["rollback"], &env).await;
    let last = seen.last().unwrap();
    assert_eq!(last["rollback"]["state"], "done", "{:#}", last["rollback"]);
    assert!(last["rollback"]["doneAt"].as_str().is_some());
    assert!(last["rollback"]["frozenAt"].as_str().is_some());
    let s = journal_view(&f, "rolled back", |s| {
        s["migration"]["state"] == "rolled back"
    })
    .await;
    assert!(slots(&s).is_empty(), "{:#}", s["migration"]);
    let _ = std::fs::remove_file(&topology);
}

/// Without a token on localhost the view is still not readable by a web page: a `Host` that is
/// not its address (DNS rebinding) and a request from another origin are refused; a name given
/// with --ui-host is answered.
#[tokio::test]
async fn the_view_answers_only_its_own_host_and_origin() {
    let f = Fixture::seeded(0.01).await;
    f.run_ok_async(&["prepare"]).await;
    let (_view, base, _log) = start_with_view(
        &f,
        &[
            "dashboard",
            "--listen",
            "127.0.0.1:0",
            "--ui-host",
            "dash.internal.test",
        ],
        &[],
    );
    let port = base.rsplit(':').next().unwrap().to_string();
    let http = reqwest::Client::new();
    let get = |host: Option<String>, origin: Option<&'static str>, site: Option<&'static str>| {
        let mut r = http.get(format!("{base}/api/snapshot"));
        if let Some(host) = host {
            r = r.header("host", host);
        }
        if let Some(origin) = origin {
            r = r.header("origin", origin);
        }
        if let Some(site) = site {
            r = r.header("sec-fetch-site", site);
        }
        async move { r.send().await.unwrap() }
    };
    assert_eq!(get(None, None, None).await.status(), 200, "its own address");
    assert_eq!(
        get(Some(format!("localhost:{port}")), None, None)
            .await
            .status(),
        200
    );
    assert_eq!(
        get(Some(format!("dash.internal.test:{port}")), None, None)
            .await
            .status(),
        200,
        "a name given with --ui-host"
    );
    let rebound = get(Some(format!("rebind.attacker.test:{port}")), None, None).await;
    assert_eq!(
        rebound.status(),
        403,
        "a name resolved to 127.0.0.1 by an attacker"
    );
    let body: Value = rebound.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--ui-host"),
        "{body}"
    );
    assert_eq!(
        get(None, Some("http://evil.example"), None).await.status(),
        403,
        "another origin"
    );
    assert_eq!(get(None, Some("null"), None).await.status(), 403);
    assert_eq!(
        get(None, None, Some("cross-site")).await.status(),
        403,
        "a cross-site fetch without Origin"
    );
    let own = format!("http://127.0.0.1:{port}");
    let own: &'static str = Box::leak(own.into_boxed_str());
    assert_eq!(
        get(None, Some(own), Some("same-origin")).await.status(),
        200
    );
}
