//! The live view in a real browser (Debian's chromium, driven by playwright-core from
//! crates/dashboard/ui-tests): the page of `mfe migrate copy --ui` loads, shows the tables of the
//! running copy, and its progress moves without a reload. Screenshots (laptop and phone) are kept
//! as artifacts under the target directory's tmp/ (the path is printed).
//!
//! Needs `bash scripts/ui-deps.sh` (chromium and the npm packages); scripts/test.sh runs it.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::Fixture;

#[tokio::test]
async fn the_page_shows_a_running_copy_and_its_progress_moves() {
    let ui_tests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dashboard/ui-tests");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists()
            && ui_tests.join("node_modules/playwright-core").exists(),
        "the browser test needs chromium ({chromium}) and playwright-core: run `bash scripts/ui-deps.sh`"
    );

    let f = Fixture::seeded(0.05).await;
    f.run_ok_async(&["prepare"]).await;
    // Slow enough to be watched for half a minute.
    let mut copy = f.command(&[
        "copy",
        "--ui",
        "127.0.0.1:0",
        "--max-rate",
        "800",
        "--jobs",
        "2",
    ]);
    copy.stderr(Stdio::piped()).stdout(Stdio::null());
    let mut copy = copy.spawn().expect("mfe starts");
    let stderr = copy.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("mfe announces its view")
            .expect("stderr is text");
        if let Some(url) = line.strip_prefix("live view: ") {
            break url.trim().to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));

    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("copy.png");
    let out = tokio::task::spawn_blocking({
        let shot = shot.clone();
        move || {
            Command::new("node")
                .current_dir(&ui_tests)
                .arg("page.mjs")
                .arg(&url)
                .arg(&shot)
                .arg("--expect-moving")
                .env("CHROMIUM", chromium)
                .output()
                .expect("node runs")
        }
    })
    .await
    .unwrap();
    let still_copying = copy.try_wait().unwrap().is_none();
    let _ = copy.kill();
    let _ = copy.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the page check failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        still_copying,
        "the copy ended before the page was checked: it did not watch a running copy"
    );
    for table in common::TABLE_NAMES {
        assert!(
            stdout.contains(table),
            "the page did not show {table}:\n{stdout}"
        );
    }
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "no screenshot"
    );
    eprintln!("screenshots: {} and its -phone twin", shot.display());
}
