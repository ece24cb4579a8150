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
async fn a_key_still_being_processed_is_in_use_until_its_lease_runs_out() {
    let t = spawn_paced(Pace {
        idempotency_lease_secs: 1,
        ..Pace::default()
    })
    .await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let key = key();
    let body = instant(&bob.email, "3.00");
    // A request that claimed the key and died: the row it left, as the service writes it.
    let print = fingerprint("POST", "/payments", &request_value(&body));
    sqlx::query(
        "INSERT INTO payments.idempotency_keys (caller, key, fingerprint, owner, locked_until) \
         VALUES ($1, $2, $3, gen_random_uuid(), now() + interval '1 second')",
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

    let taken_over = test_support::eventually(std::time::Duration::from_secs(5), || async {
        let reply = t.post_keyed(&alice.token, &key, &body).await;
        (reply.status == 201).then_some(reply)
    })
    .await
    .expect("the key is taken over once the lease ran out");
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
