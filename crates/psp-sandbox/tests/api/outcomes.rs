//! Each range of the outcome table ends as the README documents it.

use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::helpers::{charge, reference, spawn};

#[tokio::test]
async fn an_ordinary_amount_succeeds_at_once_and_is_announced() {
    let (sandbox, receiver) = spawn().await;
    let reference = reference();
    let (status, replayed, body) = sandbox.create(&charge(&reference, "12.34")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(!replayed);
    let id = body["id"].as_str().unwrap();
    assert!(id.starts_with("ch_") && id.len() == 35, "{id}");
    assert_eq!(body["reference"], reference.as_str());
    assert_eq!(body["amount"], "12.34");
    assert_eq!(body["currency"], "USD");
    assert_eq!(body["status"], "succeeded");
    assert!(body["declineCode"].is_null());
    assert!(body["message"].is_null());
    assert_eq!(body["attempts"], 1);
    assert!(body["createdAt"].is_string());
    assert!(body["settledAt"].is_string());
    assert_eq!(sandbox.charge(&reference).await, body);

    let delivery = receiver.accepted(&reference).await;
    assert_eq!(delivery.event["type"], "charge.succeeded");
    assert_eq!(delivery.event["data"], body);
}

#[tokio::test]
async fn the_decline_ranges_decline_with_their_codes() {
    let (sandbox, receiver) = spawn().await;
    for (amount, code) in [
        ("2000.00", "card_declined"),
        ("2000.99", "card_declined"),
        ("2001.00", "insufficient_funds"),
        ("2001.99", "insufficient_funds"),
        ("2002.00", "card_declined"),
        ("2999.99", "card_declined"),
    ] {
        let reference = reference();
        let (status, _, body) = sandbox.create(&charge(&reference, amount)).await;
        assert_eq!(status, StatusCode::CREATED, "{amount}: {body}");
        assert_eq!(body["status"], "declined", "{amount}");
        assert_eq!(body["declineCode"], code, "{amount}");
        assert!(body["message"].is_string(), "{amount}");
        assert!(body["settledAt"].is_string(), "{amount}");
        let delivery = receiver.accepted(&reference).await;
        assert_eq!(delivery.event["type"], "charge.declined", "{amount}");
        assert_eq!(delivery.event["data"]["declineCode"], code, "{amount}");
    }
}

#[tokio::test]
async fn amounts_beside_the_reserved_ranges_are_approved() {
    let (sandbox, _receiver) = spawn().await;
    for amount in [
        "0.01",
        "1999.99",
        "3002.00",
        "3999.99",
        "4001.00",
        "4999.99",
        "5001.00",
        "99999999.99",
    ] {
        let (status, _, body) = sandbox.create(&charge(&reference(), amount)).await;
        assert_eq!(status, StatusCode::CREATED, "{amount}: {body}");
        assert_eq!(body["status"], "succeeded", "{amount}");
    }
}

#[tokio::test]
async fn a_3000_charge_is_pending_then_succeeds_and_only_then_is_announced() {
    let (sandbox, receiver) = spawn().await;
    let reference = reference();
    let (status, _, body) = sandbox.create(&charge(&reference, "3000.50")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "pending");
    assert!(body["settledAt"].is_null());
    assert!(body["declineCode"].is_null());
    assert!(receiver.deliveries_for(&reference).is_empty());

    let settled = sandbox.settled(&reference, "succeeded").await;
    assert!(settled["settledAt"].is_string());
    assert_eq!(settled["id"], body["id"]);
    let delivery = receiver.accepted(&reference).await;
    assert_eq!(delivery.event["type"], "charge.succeeded");
    assert_eq!(delivery.event["data"], settled);
    assert_eq!(receiver.deliveries_for(&reference).len(), 1);
}

#[tokio::test]
async fn a_3001_charge_is_pending_then_declined() {
    let (sandbox, receiver) = spawn().await;
    let reference = reference();
    let (status, _, body) = sandbox.create(&charge(&reference, "3001.00")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "pending");

    let settled = sandbox.settled(&reference, "declined").await;
    assert_eq!(settled["declineCode"], "card_declined");
    let delivery = receiver.accepted(&reference).await;
    assert_eq!(delivery.event["type"], "charge.declined");
}

#[tokio::test]
async fn a_4000_charge_is_made_while_its_response_hangs_past_the_client_timeout() {
    let (sandbox, receiver) = spawn().await;
    let reference = reference();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = impatient
        .post(format!("{}/charges", sandbox.base))
        .json(&charge(&reference, "4000.00"))
        .send()
        .await
        .expect_err("the response is held past the client's timeout");
    assert!(err.is_timeout(), "{err}");

    let made = sandbox.charge(&reference).await;
    assert_eq!(made["status"], "succeeded");
    let delivery = receiver.accepted(&reference).await;
    assert_eq!(delivery.event["type"], "charge.succeeded");

    let started = Instant::now();
    let (status, replayed, again) = sandbox.create(&charge(&reference, "4000.00")).await;
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "a replay answers at once"
    );
    assert_eq!(status, StatusCode::OK);
    assert!(replayed);
    assert_eq!(again["id"], made["id"]);
    assert_eq!(again["attempts"], 2);
}

#[tokio::test]
async fn a_4000_charge_answers_after_the_hang_to_a_patient_client() {
    let (sandbox, _receiver) = spawn().await;
    let started = Instant::now();
    let (status, _, body) = sandbox.create(&charge(&reference(), "4000.99")).await;
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["status"], "succeeded");
}

#[tokio::test]
async fn a_5000_charge_fails_its_first_post_without_charging_then_succeeds() {
    let (sandbox, receiver) = spawn().await;
    let reference = reference();
    let (status, _, body) = sandbox.create(&charge(&reference, "5000.00")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(body["error"]["code"], "internal");
    let (status, body) = sandbox.get(&format!("/charges/{reference}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");

    let (status, replayed, body) = sandbox.create(&charge(&reference, "5000.00")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(!replayed);
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["attempts"], 2);
    receiver.accepted(&reference).await;

    let (status, replayed, again) = sandbox.create(&charge(&reference, "5000.00")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(replayed);
    assert_eq!(again["attempts"], 3);
}
