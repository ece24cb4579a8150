//! Idempotency-Key with Stripe's semantics.

use std::sync::Arc;

use payments_service::idempotency::fingerprint;
use serde_json::{Value, json};

use crate::helpers::{Pace, instant, spawn, spawn_paced};

fn key() -> String {
    format!("key-{}", uuid::Uuid::new_v4())
}

#[tokio::test]
async fn a_retry_with_the_same_key_and_body_gets_the_first_answer_again() {
    let t = spawn().await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let key = key();
    let body = instant(&bob.email, "10.00");

    let first = t.post_keyed(&alice.token, &key, &body).await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert!(first.headers.get("idempotent-replayed").is_none());
    // The same JSON, written in another order, is the same request.
    let reordered: Value = serde_json::from_str(&format!(
        r#"{{"type":"instant","amount":"10.00","recipientEmail":"{}"}}"#,
        bob.email
    ))
    .unwrap();
    let again = t.post_keyed(&alice.token, &key, &reordered).await;

    assert_eq!(again.status, 201);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body, first.body, "the stored answer, status and body");
    assert_eq!(
        t.count(
            "SELECT count(*) FROM payments WHERE sender_id = $1",
            &alice.id
        )
        .await,
        1
    );
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused_and_keys_belong_to_their_caller() {
    let t = spawn().await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let key = key();
    assert_eq!(
        t.post_keyed(&alice.token, &key, &instant(&bob.email, "10.00"))
            .await
            .status,
        201
    );

    let other = t
        .post_keyed(&alice.token, &key, &instant(&bob.email, "10.01"))
        .await;
    assert_eq!(other.status, 422, "{}", other.body);
    assert_eq!(other.error_code(), "idempotency_key_reused");

    // Bob's key of the same name is his own.
    let bobs = t
        .post_keyed(&bob.token, &key, &instant(&alice.email, "10.01"))
        .await;
    assert_eq!(bobs.status, 201, "{}", bobs.body);
    assert!(bobs.headers.get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn fifty_concurrent_identical_requests_make_one_payment() {
    let t = Arc::new(spawn().await);
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let key = key();
    let body = instant(&bob.email, "25.00");

    let requests = (0..50).map(|_| {
        let (t, token, key, body) = (t.clone(), alice.token.clone(), key.clone(), body.clone());
        tokio::spawn(async move { t.post_keyed(&token, &key, &body).await })
    });
    let replies: Vec<_> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    let ids: std::collections::HashSet<_> = replies
        .iter()
        .filter(|r| r.status.is_success())
        .map(|r| r.body["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1, "every success is the same payment");
    for reply in &replies {
        assert!(
            reply.status.is_success() || reply.status == 409,
            "{} {}",
            reply.status,
            reply.body
        );
        if reply.status == 409 {
            assert_eq!(reply.error_code(), "idempotency_key_in_use");
            assert!(reply.headers.contains_key("retry-after"));
        }
    }
    assert_eq!(
        t.count(
            "SELECT count(*) FROM payments WHERE sender_id = $1",
            &alice.id
        )
        .await,
        1
    );
    let id = ids.into_iter().next().unwrap();
    let charge = t.charge(&id).await.expect("charged");
    assert_eq!(charge["attempts"], 1, "charged once: {charge}");
}

#[tokio::test]
async fn a_failed_request_is_not_stored_so_its_key_can_be_retried() {
    let t = spawn().await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let key = key();

    let invalid = t
        .post_keyed(&alice.token, &key, &instant(&bob.email, "0.001"))
        .await;
    assert_eq!(invalid.status, 422);
    let unknown = t
        .post_keyed(&alice.token, &key, &instant("ghost@example.com", "1.00"))
        .await;
    assert_eq!(unknown.status, 404);
    // Both failed: the key holds nothing, even for another body.
    let good = t
        .post_keyed(&alice.token, &key, &instant(&bob.email, "1.00"))
        .await;
    assert_eq!(good.status, 201, "{}", good.body);
}

#[tokio::test]
async fn a_key_left_by_a_request_that_died_is_taken_over_once_its_lease_ran_out() {
    let t = spawn().await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let key = key();
    let body = instant(&bob.email, "3.00");
    // A request that claimed the key and died before writing anything: the row it left, as the
    // service writes it.
    let print = fingerprint("POST", "/payments", &request_value(&body));
    sqlx::query(
        "INSERT INTO payments.idempotency_keys (caller, key, fingerprint, owner, locked_until) \
         VALUES ($1, $2, $3, gen_random_uuid(), now() + interval '1 hour')",
    )
    .bind(&alice.id)
    .bind(&key)
    .bind(&print)
    .execute(&t.pool)
    .await
    .unwrap();

    let busy = t.post_keyed(&alice.token, &key, &body).await;
    assert_eq!(busy.status, 409, "{}", busy.body);
    assert_eq!(busy.error_code(), "idempotency_key_in_use");

    sqlx::query("UPDATE payments.idempotency_keys SET locked_until = now() - interval '1 second'")
        .execute(&t.pool)
        .await
        .unwrap();
    let taken_over = t.post_keyed(&alice.token, &key, &body).await;
    assert_eq!(taken_over.status, 201, "{}", taken_over.body);
    assert_eq!(taken_over.body["status"], "completed");
    assert_eq!(
        t.count(
            "SELECT count(*) FROM payments WHERE sender_id = $1",
            &alice.id
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_retry_while_an_instant_payment_is_charged_waits_then_gets_the_final_answer() {
    let t = spawn_paced(Pace {
        psp_timeout_ms: 1500,
        webhooks: false,
        ..Pace::default()
    })
    .await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let key = key();
    // 4000.00: the provider holds its answer past the timeout, so the charge takes 1.5 s.
    let body = instant(&bob.email, "4000.00");
    let first = {
        let (t, token, key, body) = (&t, alice.token.clone(), key.clone(), body.clone());
        async move { t.post_keyed(&token, &key, &body).await }
    };
    let retry = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        t.post_keyed(&alice.token, &key, &body).await
    };
    let (first, retry) = tokio::join!(first, retry);

    assert_eq!(first.status, 202, "{}", first.body);
    assert_eq!(
        retry.status, 409,
        "not the provisional answer: {}",
        retry.body
    );
    assert_eq!(retry.error_code(), "idempotency_key_in_use");
    let replay = t.post_keyed(&alice.token, &key, &body).await;
    assert_eq!(replay.status, 202);
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(replay.body, first.body, "the answer the first caller got");
}

#[tokio::test]
async fn keyed_instant_payments_as_many_as_the_pool_has_connections_do_not_starve_it() {
    // A request used to hold a connection while storing its final answer took another one: as
    // many such requests as the pool has connections waited on each other until the acquire
    // timeout, and were answered 503 after their payment was made and charged.
    let t = spawn_paced(Pace {
        db_max_connections: Some(3),
        ..Pace::default()
    })
    .await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let requests = (0..12).map(|n| {
        let (t, token, body) = (
            &t,
            alice.token.clone(),
            instant(&bob.email, &format!("1{n}.00")),
        );
        async move { t.post_keyed(&token, &key(), &body).await }
    });
    for reply in futures_util::future::join_all(requests).await {
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
}

#[tokio::test]
async fn a_stored_answer_of_a_request_that_died_is_replayed_once_its_lease_ran_out() {
    let t = spawn().await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let key = key();
    let body = instant(&bob.email, "6.00");
    let print = fingerprint("POST", "/payments", &request_value(&body));
    let stored = json!({"id": "stored-payment", "status": "pending"});
    sqlx::query(
        "INSERT INTO payments.idempotency_keys \
           (caller, key, fingerprint, owner, locked_until, response_status, response_body) \
         VALUES ($1, $2, $3, gen_random_uuid(), now() - interval '1 second', 201, $4)",
    )
    .bind(&alice.id)
    .bind(&key)
    .bind(&print)
    .bind(&stored)
    .execute(&t.pool)
    .await
    .unwrap();

    let replay = t.post_keyed(&alice.token, &key, &body).await;

    assert_eq!(replay.status, 201, "{}", replay.body);
    assert_eq!(replay.body, stored, "its payment exists: no second one");
    assert_eq!(
        t.count(
            "SELECT count(*) FROM payments WHERE sender_id = $1",
            &alice.id
        )
        .await,
        0
    );
}

/// The body as the service reads it (absent optional fields as null).
fn request_value(body: &Value) -> Value {
    let parsed: payments_service::validate::NewPayment =
        serde_json::from_value(body.clone()).unwrap();
    serde_json::to_value(parsed).unwrap()
}

#[tokio::test]
async fn cancelling_takes_a_key_too() {
    let t = spawn().await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let body = json!({"recipientEmail": bob.email, "amount": "9.00", "type": "scheduled", "scheduledAt": at});
    let id = t.post("/payments", &alice.token, &body).await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let key = key();
    let cancel = |key: String| {
        let request = t
            .api
            .http
            .post(t.api.url(&format!("/payments/{id}/cancel")))
            .bearer_auth(&alice.token)
            .header("Idempotency-Key", key);
        async move { test_support::Reply::read(request.send().await.unwrap()).await }
    };
    let first = cancel(key.clone()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let again = cancel(key.clone()).await;
    assert_eq!(again.status, 200, "a replay, not a 409: {}", again.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let fresh = cancel(self::key()).await;
    assert_eq!(fresh.status, 409, "without the key it is a second cancel");
    assert_eq!(fresh.error_code(), "invalid_transition");
}
