//! The broker stopped for ten seconds and started again while users register: every event is
//! delivered, none twice. This stops the shared RabbitMQ, so it runs alone (nextest profile
//! `outages`, after every other test; see scripts/test.sh) and always restarts the broker, even
//! when it fails.

use std::process::Command;
use std::time::Duration;

use e2e::Platform;
use test_support::eventually;

const USERS: usize = 200;

fn rabbitmqctl(action: &str) {
    let status = Command::new("rabbitmqctl")
        .arg(action)
        .status()
        .unwrap_or_else(|e| panic!("cannot run rabbitmqctl {action}: {e}"));
    assert!(status.success(), "rabbitmqctl {action} failed");
}

/// Starts the broker again when dropped, so a failing test never leaves it stopped.
struct RestartOnDrop;

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").status();
        let _ = Command::new("rabbitmqctl")
            .args(["await_startup", "--timeout", "60"])
            .status();
    }
}

#[tokio::test]
async fn users_registered_while_the_broker_restarts_all_get_exactly_one_profile() {
    let platform = Platform::new();
    let (auth, profile) = platform.start_ready().await;

    let registrations =
        e2e::register_in_background(auth.base.clone(), "outage", USERS, Duration::ZERO);

    let guard = RestartOnDrop;
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::spawn_blocking(|| rabbitmqctl("stop_app"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ready = reqwest::get(format!("{}/ready", profile.base))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "readiness reports the broker down");
    // Ten seconds down in all (the outage), registrations going on meanwhile.
    tokio::time::sleep(Duration::from_secs(8)).await;
    tokio::task::spawn_blocking(|| {
        rabbitmqctl("start_app");
        rabbitmqctl("await_startup");
    })
    .await
    .unwrap();
    drop(guard);

    let ids = registrations.await.unwrap();
    assert_eq!(ids.len(), USERS);
    let profiles = platform.profiles().await;
    let all_there = eventually(Duration::from_secs(90), || async {
        (sqlx::query_scalar::<_, i64>("SELECT count(*) FROM user_profiles")
            .fetch_one(&profiles)
            .await
            .unwrap_or(0)
            == USERS as i64)
            .then_some(())
    })
    .await
    .is_some();
    let count: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT user_id) FROM user_profiles WHERE user_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_one(&profiles)
    .await
    .unwrap();
    assert!(
        all_there && count == USERS as i64,
        "{count} of {USERS} profiles\n--- profile logs:\n{}\n--- auth logs:\n{}",
        profile.logs(),
        auth.logs()
    );
    let applied: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM profile.processed_events WHERE event_type = 'user.registered'",
    )
    .fetch_one(&profiles)
    .await
    .unwrap();
    assert_eq!(applied, USERS as i64, "each registration applied once");

    let auth_pool = platform.auth_pool().await;
    let drained = eventually(Duration::from_secs(30), || async {
        (e2e::auth_backlog(&auth_pool).await == 0).then_some(())
    })
    .await
    .is_some();
    assert!(
        drained,
        "auth's outbox is not empty; auth logs:\n{}",
        auth.logs()
    );
    profile.wait_ready(Duration::from_secs(30)).await;
    auth.wait_ready(Duration::from_secs(30)).await;
}
