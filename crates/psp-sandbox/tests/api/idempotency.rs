//! `reference` is an idempotency key: one charge per reference, however often and however
//! concurrently it is POSTed.

use std::time::Duration;

use axum::http::StatusCode;
use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::{charge, reference, spawn};

#[tokio::test]
async fn a_repeated_post_returns_the_same_charge_without_charging_again() {
    let (sandbox, receiver) = spawn().await;
    let reference = reference();
    let (status, replayed, first) = sandbox.create(&charge(&reference, "12.34")).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(!replayed);
    receiver.accepted(&reference).await;

    let (status, replayed, second) = sandbox.create(&charge(&reference, "12.34")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(replayed);
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["attempts"], 2);
    assert_eq!(second["createdAt"], first["createdAt"]);

    let (_, list) = sandbox.get("/charges").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(sandbox.charge(&reference).await["attempts"], 2);

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.deliveries_for(&reference).len(),
        1,
        "a replay sends no second webhook"
    );
}

#[tokio::test]
async fn the_same_amount_written_differently_is_the_same_charge() {
    let (sandbox, _receiver) = spawn().await;
    let reference = reference();
    let (_, _, first) = sandbox.create(&charge(&reference, "12.3")).await;
    assert_eq!(first["amount"], "12.30");
    let (status, replayed, second) = sandbox.create(&charge(&reference, "12.30")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(replayed);
    assert_eq!(second["id"], first["id"]);
}

#[tokio::test]
async fn a_reference_reused_for_another_amount_or_currency_is_a_conflict() {
    let (sandbox, _receiver) = spawn().await;
    let reference = reference();
    let (status, _, created) = sandbox.create(&charge(&reference, "12.34")).await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, _, body) = sandbox.create(&charge(&reference, "12.35")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "reference_reused");
    assert!(body["error"]["message"].is_string());

    let other_currency = json!({"reference": reference, "amount": "12.34", "currency": "EUR"});
    let (status, _, body) = sandbox.create(&other_currency).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "reference_reused");

    assert_eq!(sandbox.charge(&reference).await, created);
}

#[tokio::test]
async fn twenty_concurrent_identical_posts_create_exactly_one_charge() {
    let (sandbox, receiver) = spawn().await;
    let reference = reference();
    let body = charge(&reference, "42.00");
    let posts = (0..20).map(|_| sandbox.create(&body));
    let answers = join_all(posts).await;

    let created = answers
        .iter()
        .filter(|(status, _, _)| *status == StatusCode::CREATED)
        .count();
    let replayed = answers
        .iter()
        .filter(|(status, replayed, _)| *status == StatusCode::OK && *replayed)
        .count();
    assert_eq!((created, replayed), (1, 19));
    let id = &answers[0].2["id"];
    assert!(answers.iter().all(|(_, _, charge)| &charge["id"] == id));

    let (_, list) = sandbox.get("/charges").await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["attempts"], 20);

    receiver.accepted(&reference).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.deliveries_for(&reference).len(), 1);
}
