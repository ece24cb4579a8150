//! Payments in the shared topology, where the legacy keys `payments.sender_id` (RESTRICT) and
//! `payments.recipient_id` (SET NULL) `-> users` stay: a user auth knows but `users` no longer
//! has is a 404, never a 500, and a recurring payment whose recipient was deleted ends.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{instant, spawn_shared};

#[tokio::test]
async fn in_the_shared_topology_a_user_missing_from_users_is_a_404_that_frees_the_key() {
    let t = spawn_shared().await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    t.add_legacy_user(&alice).await;
    // Bob is known to auth, not to the legacy `users` (as if deleted since auth was asked).
    let body = instant(&bob.email, "4.20");
    let refused = t.post_keyed(&alice.token, "shared-key-1", &body).await;
    assert_eq!(refused.status, 404, "{}", refused.body);
    assert_eq!(refused.body["error"]["code"], "not_found");
    assert_eq!(refused.body["error"]["message"], "Recipient not found");
    assert_eq!(
        t.count(
            "SELECT count(*) FROM payments WHERE sender_id = $1",
            &alice.id
        )
        .await,
        0
    );

    let refused = t
        .post("/payments", &bob.token, &instant(&alice.email, "1.00"))
        .await;
    assert_eq!(refused.status, 404, "{}", refused.body);
    assert_eq!(refused.body["error"]["message"], "Sender not found");

    // The key was released: once bob is there, the same request goes through and completes,
    // with its history in the legacy payment_transactions.
    t.add_legacy_user(&bob).await;
    let paid = t.post_keyed(&alice.token, "shared-key-1", &body).await;
    assert!(paid.status == 201 || paid.status == 202, "{}", paid.body);
    let id = paid.body["id"].as_str().unwrap();
    t.wait_for_status(&alice.token, id, "completed").await;
    assert_eq!(
        t.history(&alice.token, id).await,
        ["pending", "processing", "completed"]
    );
    assert_eq!(
        t.count(
            "SELECT count(*) FROM payment_transactions WHERE payment_id = $1",
            id
        )
        .await,
        3
    );
}

#[tokio::test]
async fn in_the_shared_topology_a_recurring_payment_whose_recipient_is_deleted_ends() {
    let t = spawn_shared().await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    t.add_legacy_user(&alice).await;
    t.add_legacy_user(&bob).await;
    let body = json!({"recipientEmail": bob.email, "amount": "3.00", "type": "recurring",
        "interval": "day"});
    let reply = t.post("/payments", &alice.token, &body).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let parent = reply.body["id"].as_str().unwrap().to_string();
    test_support::eventually(Duration::from_secs(10), || async {
        let n = t
            .count(
                "SELECT count(*) FROM payments WHERE metadata->>'recurringParentId' = $1 \
                 AND status = 'completed'",
                &parent,
            )
            .await;
        (n == 1).then_some(())
    })
    .await
    .expect("the first occurrence is made and charged");

    // Bob is deleted from the legacy database: the key sets the recipient of his payments to
    // NULL. The next occurrence is due.
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(&bob.id)
        .execute(&t.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE payments.jobs SET due_at = now() WHERE payment_id = $1")
        .bind(&parent)
        .execute(&t.pool)
        .await
        .unwrap();

    let ended = t.wait_for_status(&alice.token, &parent, "cancelled").await;
    assert_eq!(ended["recipientId"], serde_json::Value::Null, "{ended}");
    assert_eq!(
        t.count(
            "SELECT count(*) FROM payments.jobs WHERE payment_id = $1",
            &parent
        )
        .await,
        0,
        "no more occurrences"
    );
    assert_eq!(
        t.count(
            "SELECT count(*) FROM payments WHERE metadata->>'recurringParentId' = $1",
            &parent
        )
        .await,
        1
    );
    let message: String = sqlx::query_scalar(
        "SELECT status_message FROM payment_transactions WHERE payment_id = $1 \
         AND status = 'cancelled'",
    )
    .bind(&parent)
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert!(message.contains("recipient no longer exists"), "{message}");
}
