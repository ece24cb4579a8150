//! The state machine, pair by pair, against the real database: an allowed transition writes the
//! payment, one history row and one event together; a refused one writes nothing.

use std::sync::Arc;

use payments_service::error::PaymentError;
use payments_service::lifecycle::{Change, transition};
use payments_service::status::Status;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::spawn;

async fn payment_in(pool: &PgPool, status: Status) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO payments (id, sender_id, recipient_id, amount, currency, status, type, updated_at) \
         VALUES ($1, 's', 'r', 1.00, 'USD', $2::text::\"PaymentStatus\", 'instant', now())",
    )
    .bind(&id)
    .bind(status.as_str())
    .execute(pool)
    .await
    .unwrap();
    id
}

async fn writes(pool: &PgPool, id: &str) -> (String, i64, i64) {
    sqlx::query_as(
        "SELECT p.status::text, \
           (SELECT count(*) FROM payment_transactions WHERE payment_id = p.id), \
           (SELECT count(*) FROM payments.outbox WHERE payload->>'paymentId' = p.id) \
         FROM payments p WHERE p.id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn every_status_pair_is_allowed_or_refused_as_the_machine_says() {
    let t = spawn().await;
    for from in Status::ALL {
        for to in Status::ALL {
            let id = payment_in(&t.pool, from).await;
            let mut tx = t.pool.begin().await.unwrap();
            let change = Change {
                message: "test",
                failure_reason: (to == Status::Failed).then_some("because"),
                ..Change::default()
            };
            let result = transition(&mut tx, &id, to, change).await;
            let allowed = from.can_become(to);
            match result {
                Ok(row) => {
                    assert!(allowed, "{from} -> {to} must be refused");
                    assert_eq!(row.status(), to);
                    tx.commit().await.unwrap();
                    let (status, history, events) = writes(&t.pool, &id).await;
                    assert_eq!(
                        (status.as_str(), history, events),
                        (to.as_str(), 1, 1),
                        "{from} -> {to}"
                    );
                }
                Err(PaymentError::InvalidTransition { from: f, to: tt }) => {
                    assert!(!allowed, "{from} -> {to} must be allowed");
                    assert_eq!((f, tt), (from, to));
                    tx.commit().await.unwrap();
                    let (status, history, events) = writes(&t.pool, &id).await;
                    assert_eq!(
                        (status.as_str(), history, events),
                        (from.as_str(), 0, 0),
                        "{from} -> {to}"
                    );
                }
                Err(e) => panic!("{from} -> {to}: {e}"),
            }
        }
    }
}

#[tokio::test]
async fn two_concurrent_transitions_of_one_payment_never_both_win() {
    let t = spawn().await;
    for _ in 0..10 {
        let id = payment_in(&t.pool, Status::Pending).await;
        let attempt = |to: Status| {
            let (pool, id) = (t.pool.clone(), id.clone());
            tokio::spawn(async move {
                let mut tx = pool.begin().await.unwrap();
                let result = transition(
                    &mut tx,
                    &id,
                    to,
                    Change {
                        message: "race",
                        ..Change::default()
                    },
                )
                .await;
                tx.commit().await.unwrap();
                result.is_ok()
            })
        };
        let (a, b) = tokio::join!(attempt(Status::Cancelled), attempt(Status::Processing));
        assert!(a.unwrap() ^ b.unwrap(), "exactly one wins");
        let (_, history, _) = writes(&t.pool, &id).await;
        assert_eq!(history, 1);
    }
}

#[tokio::test]
async fn a_cancel_racing_the_charge_either_cancels_before_any_charge_or_loses_with_409() {
    let t = Arc::new(spawn().await);
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let (mut cancelled, mut completed) = (0, 0);
    for _ in 0..6 {
        let at = chrono::Utc::now() + chrono::Duration::milliseconds(400);
        let body = json!({"recipientEmail": bob.email, "amount": "4.00", "type": "scheduled",
            "scheduledAt": at.to_rfc3339()});
        let id = t.post("/payments", &alice.token, &body).await.body["id"]
            .as_str()
            .unwrap()
            .to_string();
        tokio::time::sleep(std::time::Duration::from_millis(380)).await;
        let path = format!("/payments/{id}/cancel");
        let cancel = loop {
            let reply = t.post(&path, &alice.token, &json!({})).await;
            assert!(
                !reply.status.is_server_error(),
                "a cancel racing the charge: {} {}",
                reply.status,
                reply.body
            );
            if reply.status == 200 || reply.status == 409 {
                break reply;
            }
        };
        let history = t.history(&alice.token, &id).await;
        if cancel.status == 200 {
            cancelled += 1;
            assert_eq!(history, ["pending", "cancelled"]);
            assert!(
                t.charge(&id).await.is_none(),
                "a cancelled payment is never charged"
            );
        } else {
            assert_eq!(cancel.status, 409, "{}", cancel.body);
            let done = t.wait_for_status(&alice.token, &id, "completed").await;
            assert_eq!(done["status"], "completed");
            completed += 1;
            assert_eq!(
                t.history(&alice.token, &id).await,
                ["pending", "processing", "completed"]
            );
        }
    }
    assert_eq!(cancelled + completed, 6);
}

#[tokio::test]
async fn replicas_never_charge_the_same_payment() {
    let t = spawn().await;
    let _second = t.spawn_replica().await;
    let _third = t.spawn_replica().await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let mut ids = Vec::new();
    for i in 0..30 {
        let body = json!({"recipientEmail": bob.email, "amount": format!("{}.00", 10 + i),
            "type": "scheduled", "scheduledAt": at.to_rfc3339()});
        let reply = t.post("/payments", &alice.token, &body).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        ids.push(reply.body["id"].as_str().unwrap().to_string());
    }
    // All come due at once, and three replicas' workers go for them.
    for id in &ids {
        t.wait_for_status(&alice.token, id, "completed").await;
        let charge = t.charge(id).await.expect("charged");
        assert_eq!(charge["attempts"], 1, "sent once: {charge}");
        assert_eq!(
            t.history(&alice.token, id).await,
            ["pending", "processing", "completed"]
        );
    }
}
