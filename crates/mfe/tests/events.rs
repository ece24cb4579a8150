//! `mfe events dlq`: listing and replaying dead-lettered events on a real broker.

use std::process::{Command, Output};

use serde_json::Value;
use test_support::TestBroker;

const BIN: &str = env!("CARGO_BIN_EXE_mfe");

fn mfe(broker: &TestBroker, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RABBITMQ_URL", &broker.url)
        .output()
        .expect("mfe runs")
}

async fn broker_with_dead_letters(ids: &[&str]) -> (TestBroker, String) {
    let broker = TestBroker::new();
    let config = test_support::spawn::config(platform::Service::Profile, "postgresql://unused/x");
    let settings = broker.settings(&config);
    broker
        .declare_consumer(&settings, &["user.registered"])
        .await;
    for id in ids {
        let body = format!(
            r#"{{"id":"{id}","type":"user.registered","source":"auth-service","occurredAt":"2026-11-24T00:00:00Z","data":{{}}}}"#
        );
        broker
            .send_to_queue(&settings.dead_letter_queue(), body.as_bytes(), id)
            .await;
    }
    (broker, settings.queue.clone())
}

const FIRST: &str = "11111111-1111-4111-8111-111111111111";
const SECOND: &str = "22222222-2222-4222-8222-222222222222";

#[tokio::test]
async fn list_shows_dead_letters_and_leaves_them_in_place() {
    let (broker, queue) = broker_with_dead_letters(&[FIRST, SECOND]).await;
    let out = mfe(
        &broker,
        &["--json", "events", "dlq", "list", "--queue", &queue],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [FIRST, SECOND]);
    assert_eq!(listed[0]["eventType"], "user.registered");

    let text = mfe(&broker, &["events", "dlq", "list", "--queue", &queue]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains(FIRST) && stdout.contains("2 dead-lettered"),
        "{stdout}"
    );
    assert_eq!(broker.depth(&format!("{queue}.dlq")).await, 2);
}

#[tokio::test]
async fn replay_moves_the_chosen_event_back_into_the_service_queue() {
    let (broker, queue) = broker_with_dead_letters(&[FIRST, SECOND]).await;
    let out = mfe(
        &broker,
        &["events", "dlq", "replay", "--queue", &queue, "--id", SECOND],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("replayed {SECOND}")));
    assert_eq!(broker.depth(&format!("{queue}.dlq")).await, 1);
    assert_eq!(broker.depth(&queue).await, 1);

    let all = mfe(
        &broker,
        &["events", "dlq", "replay", "--queue", &queue, "--all"],
    );
    assert!(all.status.success());
    assert_eq!(broker.depth(&format!("{queue}.dlq")).await, 0);
    assert_eq!(broker.depth(&queue).await, 2);
}

#[tokio::test]
async fn replaying_an_id_that_is_not_there_fails_naming_it() {
    let (broker, queue) = broker_with_dead_letters(&[FIRST]).await;
    let out = mfe(
        &broker,
        &["events", "dlq", "replay", "--queue", &queue, "--id", SECOND],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(SECOND));
    assert_eq!(
        broker.depth(&format!("{queue}.dlq")).await,
        1,
        "nothing else moved"
    );
}

#[tokio::test]
async fn bad_targets_are_refused_with_a_clear_message() {
    let broker = TestBroker::new();
    let missing = mfe(
        &broker,
        &["events", "dlq", "list", "--service", "nobody-service"],
    );
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nobody-service.events.dlq"));

    let unreachable = Command::new(BIN)
        .args(["events", "dlq", "list", "--service", "profile-service"])
        .env("RABBITMQ_URL", "amqp://guest:sekret@127.0.0.1:1/%2f")
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        stderr.contains("127.0.0.1:1") && !stderr.contains("sekret"),
        "{stderr}"
    );

    let usage = mfe(
        &broker,
        &["events", "dlq", "replay", "--service", "profile-service"],
    );
    assert_eq!(usage.status.code(), Some(2), "neither --id nor --all");
}

#[tokio::test]
async fn declare_creates_the_consumer_queues_so_early_events_wait_for_their_service() {
    let broker = TestBroker::new();
    let queue = broker.queue_for("profile-service");
    // Registered so the test's broker deletes them too.
    let audit_queue = broker.queue_for("admin-service");
    broker.queue_for("payments-service");
    let out = mfe(
        &broker,
        &[
            "events",
            "declare",
            "--exchange",
            &broker.exchange,
            "--prefix",
            &broker.prefix,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&queue));
    broker
        .publish_raw("user.registered", b"{}", Some("early-1"))
        .await;
    assert_eq!(
        broker.depth(&queue).await,
        1,
        "the event waits in the queue"
    );
    assert_eq!(
        broker.depth(&audit_queue).await,
        1,
        "admin's queue is bound to every event"
    );
    let again = mfe(
        &broker,
        &[
            "events",
            "declare",
            "--exchange",
            &broker.exchange,
            "--prefix",
            &broker.prefix,
        ],
    );
    assert!(again.status.success(), "declaring twice is harmless");
    assert_eq!(broker.depth(&queue).await, 1);
}
