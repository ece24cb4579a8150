//! The profile service's consumer against a real broker: duplicates and poison messages.

use std::time::Duration;

use chrono::Utc;
use events::Envelope;
use serde_json::json;
use test_support::eventually;

use crate::helpers::spawn_platform;

fn registered(user_id: &str) -> Envelope {
    Envelope {
        id: uuid::Uuid::new_v4(),
        event_type: "user.registered".into(),
        source: "auth-service".into(),
        occurred_at: Utc::now(),
        data: json!({"userId": user_id, "email": "x@example.com", "name": "X", "role": "CUSTOMER"}),
    }
}

#[tokio::test]
async fn the_same_envelope_delivered_twice_gives_one_profile() {
    let platform = spawn_platform().await;
    let envelope = registered("dup-user");
    platform.broker.publish(&envelope).await;
    platform.broker.publish(&envelope).await;
    // A later event is a barrier: once it is applied, both copies before it were handled.
    let barrier = registered("barrier-user");
    platform.broker.publish(&barrier).await;
    platform
        .wait_for_profiles("barrier-user", 1, Duration::from_secs(5))
        .await
        .expect("the barrier event is applied");
    assert_eq!(platform.profile_count("dup-user").await, 1);
    let recorded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM profile.processed_events WHERE event_id = $1")
            .bind(envelope.id)
            .fetch_one(&platform.pool)
            .await
            .unwrap();
    assert_eq!(recorded, 1);
}

#[tokio::test]
async fn a_malformed_message_is_dead_lettered_after_its_retries_and_consumption_goes_on() {
    let platform = spawn_platform().await;
    let queue = platform.broker.queue_for("profile-service");
    let dlq = format!("{queue}.dlq");
    platform
        .broker
        .publish_raw("user.registered", b"{not json", Some("poison-1"))
        .await;
    let bad_payload = Envelope {
        data: json!({"userId": 42}),
        ..registered("ignored")
    };
    platform.broker.publish(&bad_payload).await;

    eventually(Duration::from_secs(10), || async {
        (platform.broker.depth(&dlq).await == 2).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("both poison messages reach {dlq}"));

    let letters = events::dlq::list(&platform.broker.url, &queue, 10)
        .await
        .unwrap();
    assert_eq!(letters.len(), 2, "listing leaves them in place");
    assert_eq!(platform.broker.depth(&dlq).await, 2);
    let malformed = letters
        .iter()
        .find(|l| l.id.as_deref() == Some("poison-1"))
        .unwrap();
    assert_eq!(
        malformed.retries, 2,
        "retried EVENTS_MAX_RETRIES times first"
    );
    assert!(
        malformed
            .error
            .as_deref()
            .unwrap()
            .contains("malformed envelope")
    );
    assert_eq!(malformed.routing_key.as_deref(), Some("user.registered"));

    let good = registered("after-poison");
    platform.broker.publish(&good).await;
    platform
        .wait_for_profiles("after-poison", 1, Duration::from_secs(5))
        .await
        .expect("good messages are still consumed");

    let metrics = platform.profile.get("/metrics", None).await.text;
    let line = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains(&queue))
            .unwrap_or_else(|| panic!("no {name} for {queue} in:\n{metrics}"))
            .to_string()
    };
    // Both poison messages, each retried EVENTS_MAX_RETRIES (2) times, under their event type.
    let retried = line("events_retried_total");
    assert!(
        retried.contains("type=\"user.registered\"") && retried.ends_with(" 4"),
        "{retried}"
    );
    let dead = line("events_dead_lettered_total");
    assert!(dead.ends_with(" 2"), "{dead}");
}

#[tokio::test]
async fn a_registration_arriving_after_the_deletion_does_not_bring_the_profile_back() {
    let platform = spawn_platform().await;
    let deleted = Envelope {
        event_type: "user.deleted".into(),
        data: json!({"userId": "late-user"}),
        ..registered("late-user")
    };
    platform.broker.publish(&deleted).await;
    platform.broker.publish(&registered("late-user")).await;
    let barrier = registered("barrier-user");
    platform.broker.publish(&barrier).await;
    platform
        .wait_for_profiles("barrier-user", 1, Duration::from_secs(5))
        .await
        .expect("the barrier event is applied");
    assert_eq!(platform.profile_count("late-user").await, 0);
}
