//! Auth and profile as real processes, talking only through HTTP and the event hub.

use std::time::Duration;

use e2e::{Platform, auth_backlog, profile_count};
use test_support::{Api, eventually};

#[tokio::test]
async fn a_user_registered_through_auth_has_a_profile_within_two_seconds() {
    let platform = Platform::new();
    let (auth, profile) = platform.start_ready().await;

    let user = platform.register(&auth, "e2e@example.com").await;
    let profiles = platform.profiles().await;
    let created = eventually(Duration::from_secs(2), || async {
        (profile_count(&profiles, &user).await == 1).then_some(())
    })
    .await
    .is_some();
    assert!(
        created,
        "no profile 2 s after registration; profile logs:\n{}",
        profile.logs()
    );
}

#[tokio::test]
async fn an_event_committed_before_a_crash_is_delivered_after_the_restart() {
    let platform = Platform::new();
    // Auth cannot reach the broker: its registration commits with the event in its outbox, and
    // nothing is published.
    let mut unreachable_env = platform.auth_env();
    unreachable_env.retain(|(k, _)| k != "RABBITMQ_URL");
    unreachable_env.push((
        "RABBITMQ_URL".into(),
        "amqp://guest:guest@127.0.0.1:1/%2f".into(),
    ));
    let mut auth = e2e::ServiceProcess::start("auth-service", &unreachable_env);
    let profile = platform.start_profile(&auth);
    profile.wait_ready(Duration::from_secs(10)).await;

    let user = platform.register(&auth, "crash@example.com").await;
    let auth_pool = platform.auth_pool().await;
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM auth.outbox WHERE event_type = 'user.registered' AND published_at IS NULL",
    )
    .fetch_one(&auth_pool)
    .await
    .unwrap();
    assert!(pending >= 1, "the event waits in the outbox");
    auth.kill();

    let auth = platform.start_auth();
    let profiles = platform.profiles().await;
    let delivered = eventually(Duration::from_secs(10), || async {
        (profile_count(&profiles, &user).await == 1).then_some(())
    })
    .await
    .is_some();
    assert!(delivered, "the event was lost; auth logs:\n{}", auth.logs());
    let backlog = eventually(Duration::from_secs(5), || async {
        (auth_backlog(&auth_pool).await == 0).then_some(())
    })
    .await
    .is_some();
    assert!(backlog, "the outbox is empty after the restart");
}

#[tokio::test]
async fn metrics_show_the_hub_at_work() {
    let platform = Platform::new();
    let (auth, profile) = platform.start_ready().await;
    let user = platform.register(&auth, "metrics@example.com").await;
    let profiles = platform.profiles().await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            (profile_count(&profiles, &user).await == 1).then_some(())
        })
        .await
        .is_some()
    );
    // The backlog gauge is set by the relay's next pass: wait for it rather than race it.
    let auth_metrics = eventually(Duration::from_secs(10), || async {
        let text = Api::new(auth.base.clone()).get("/metrics", None).await.text;
        text.contains("events_outbox_backlog").then_some(text)
    })
    .await
    .unwrap_or_default();
    assert!(
        auth_metrics
            .contains("events_published_total{source=\"auth-service\",type=\"user.registered\"}"),
        "{auth_metrics}"
    );
    assert!(
        auth_metrics.contains("events_outbox_backlog"),
        "{auth_metrics}"
    );
    let profile_metrics = Api::new(profile.base.clone())
        .get("/metrics", None)
        .await
        .text;
    assert!(
        profile_metrics.contains("events_consumed_total"),
        "{profile_metrics}"
    );
    assert!(
        profile_metrics.contains("outcome=\"applied\""),
        "{profile_metrics}"
    );
}
