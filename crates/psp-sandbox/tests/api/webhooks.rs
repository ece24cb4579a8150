//! Webhooks are signed with the shared secret, retried until the receiver takes them, and sent
//! once per final state.

use std::time::Duration;

use axum::http::StatusCode;
use psp_sandbox::sign;

use crate::helpers::{SECRET, charge, reference, spawn, verify};

#[tokio::test]
async fn a_webhook_is_signed_with_the_shared_secret() {
    let (sandbox, receiver) = spawn().await;
    let reference = reference();
    let (_, _, created) = sandbox.create(&charge(&reference, "12.34")).await;

    let delivery = receiver.accepted(&reference).await;
    assert!(delivery.signed, "the receiver verified the signature");
    assert_eq!(delivery.content_type.as_deref(), Some("application/json"));
    let event = &delivery.event;
    let id = event["id"].as_str().unwrap();
    assert!(id.starts_with("evt_") && id.len() == 36, "{id}");
    assert_eq!(event["type"], "charge.succeeded");
    assert!(event["createdAt"].is_string());
    assert_eq!(event["data"], created);
}

#[test]
fn a_signature_made_with_another_secret_or_time_does_not_verify() {
    let now = chrono::Utc::now().timestamp();
    let body = br#"{"id":"evt_1"}"#;
    assert_eq!(
        verify(SECRET.as_bytes(), &sign(SECRET.as_bytes(), now, body), body),
        Some(now)
    );
    let forged = sign(b"not-the-shared-secret", now, body);
    assert_eq!(verify(SECRET.as_bytes(), &forged, body), None);
    let stale = sign(SECRET.as_bytes(), now - 3600, body);
    assert_eq!(verify(SECRET.as_bytes(), &stale, body), None);
    let tampered = sign(SECRET.as_bytes(), now, body);
    assert_eq!(
        verify(SECRET.as_bytes(), &tampered, br#"{"id":"evt_2"}"#),
        None
    );
}

#[tokio::test]
async fn a_refused_webhook_is_retried_with_a_fresh_signature() {
    let (sandbox, receiver) = spawn().await;
    receiver.fail_next(2);
    let reference = reference();
    sandbox.create(&charge(&reference, "12.34")).await;

    let accepted = receiver.accepted(&reference).await;
    let deliveries = receiver.deliveries_for(&reference);
    assert_eq!(deliveries.len(), 3, "{deliveries:?}");
    assert_eq!(deliveries[0].answered, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(deliveries[1].answered, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(deliveries.iter().all(|d| d.signed));
    assert!(
        deliveries[2].timestamp > deliveries[0].timestamp,
        "each attempt is signed afresh: {deliveries:?}"
    );
    assert!(
        deliveries
            .iter()
            .all(|d| d.event["id"] == accepted.event["id"]),
        "every attempt carries the same event"
    );

    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        receiver.deliveries_for(&reference).len(),
        3,
        "no attempt after success"
    );
}

#[tokio::test]
async fn a_delayed_settlement_is_announced_once_settled() {
    let (sandbox, receiver) = spawn().await;
    let reference = reference();
    sandbox.create(&charge(&reference, "3000.00")).await;
    let delivery = receiver.accepted(&reference).await;
    assert!(delivery.signed);
    assert_eq!(delivery.event["type"], "charge.succeeded");
    assert_eq!(delivery.event["data"]["status"], "succeeded");
    assert_eq!(delivery.event["data"], sandbox.charge(&reference).await);
}
