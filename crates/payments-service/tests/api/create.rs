//! `POST /payments`: every validation rule, who may pay whom, and what one payment writes.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{email, instant, spawn};

fn fields(body: &Value) -> Vec<String> {
    body["error"]["fields"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .map(|f| f["field"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn every_validation_rule_answers_422_naming_the_field_and_writes_nothing() {
    let t = spawn().await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let cases: Vec<(Value, &str)> = vec![
        (json!({"amount": 10.5}), "amount"),
        (json!({"amount": 10}), "amount"),
        (json!({"amount": "0.00"}), "amount"),
        (json!({"amount": "0.001"}), "amount"),
        (json!({"amount": "100000000.00"}), "amount"),
        (json!({"amount": "-1.00"}), "amount"),
        (json!({"amount": "1e2"}), "amount"),
        (json!({"amount": "abc"}), "amount"),
        (json!({"currency": "usd"}), "currency"),
        (json!({"currency": "US"}), "currency"),
        (json!({"currency": "EURO"}), "currency"),
        (json!({"description": "x".repeat(1001)}), "description"),
        (json!({"metadata": "not an object"}), "metadata"),
        (json!({"metadata": [1, 2]}), "metadata"),
        (
            json!({"metadata": {"k": "x".repeat(16 * 1024)}}),
            "metadata",
        ),
        (json!({"recipientEmail": "nobody"}), "recipientEmail"),
        (json!({"recipientEmail": ""}), "recipientEmail"),
        (json!({"type": "weekly"}), "type"),
        (json!({"type": "scheduled"}), "scheduledAt"),
        (
            json!({"type": "scheduled", "scheduledAt": past}),
            "scheduledAt",
        ),
        (
            json!({"type": "instant", "scheduledAt": future}),
            "scheduledAt",
        ),
        (json!({"type": "recurring"}), "interval"),
        (
            json!({"type": "recurring", "interval": "hourly"}),
            "interval",
        ),
        (
            json!({"type": "scheduled", "scheduledAt": future, "interval": "day"}),
            "interval",
        ),
        (json!({"unexpected": 1}), "unexpected"),
    ];
    for (change, field) in cases {
        let mut body = instant(&bob.email, "10.00");
        body.as_object_mut()
            .unwrap()
            .extend(change.as_object().unwrap().clone());
        let reply = t.post("/payments", &alice.token, &body).await;
        assert_eq!(reply.status, 422, "{change}: {}", reply.body);
        assert_eq!(reply.error_code(), "validation_failed", "{change}");
        let named = fields(&reply.body);
        assert!(
            named.iter().any(|f| f == field)
                || reply.body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains(field),
            "{change} should name {field}: {}",
            reply.body
        );
    }
    let missing = json!({"amount": "1.00", "type": "instant"});
    let reply = t.post("/payments", &alice.token, &missing).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(
        t.count(
            "SELECT count(*) FROM payments WHERE sender_id = $1",
            &alice.id
        )
        .await,
        0
    );
}

#[tokio::test]
async fn an_instant_payment_completes_through_the_provider_with_its_history_and_names() {
    let t = spawn().await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let mut events = t
        .broker
        .watch(&["payment.created", "payment.status_changed"])
        .await;

    let body = json!({"recipientEmail": bob.email.to_uppercase(), "amount": "12.3", "type": "instant",
        "description": "lunch", "metadata": {"order": 42}});
    let reply = t.post("/payments", &alice.token, &body).await;

    assert_eq!(reply.status, 201, "{}", reply.body);
    let payment = &reply.body;
    assert_eq!(payment["status"], "completed");
    assert_eq!(payment["amount"], "12.30");
    assert_eq!(payment["currency"], "USD");
    assert_eq!(payment["senderId"], alice.id.as_str());
    assert_eq!(payment["recipientId"], bob.id.as_str());
    assert_eq!(payment["senderName"], "Test User");
    assert_eq!(payment["recipientName"], "Test User");
    assert_eq!(payment["metadata"], json!({"order": 42}));
    assert_eq!(payment["pspStatus"], "succeeded");
    assert!(
        payment["pspTransactionId"]
            .as_str()
            .unwrap()
            .starts_with("ch_")
    );
    assert!(payment["completedAt"].is_string());
    let id = payment["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
    assert_eq!(
        t.history(&alice.token, id).await,
        ["pending", "processing", "completed"]
    );
    let charge = t.charge(id).await.expect("the sandbox has the charge");
    assert_eq!(charge["amount"], "12.30");

    let seen = events.drain(Duration::from_secs(5)).await;
    let types: Vec<_> = seen.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "payment.created",
            "payment.status_changed",
            "payment.status_changed"
        ]
    );
    assert_eq!(seen[0].data["paymentId"], id);
    assert_eq!(seen[0].data["amount"], "12.30");
    assert_eq!(seen[1].data["from"], "pending");
    assert_eq!(seen[1].data["to"], "processing");
    assert_eq!(seen[2].data["to"], "completed");
}

#[tokio::test]
async fn unknown_recipients_deleted_senders_self_payments_and_services_are_refused() {
    let t = spawn().await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;

    let reply = t
        .post(
            "/payments",
            &alice.token,
            &instant(&email("nobody"), "1.00"),
        )
        .await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(reply.body["error"]["message"], "Recipient not found");

    let reply = t
        .post("/payments", &alice.token, &instant(&alice.email, "1.00"))
        .await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(fields(&reply.body), ["recipientEmail"]);

    let service = t.auth.service_token().await;
    let reply = t
        .post("/payments", &service, &instant(&bob.email, "1.00"))
        .await;
    assert_eq!(reply.status, 403, "{}", reply.body);

    let reply = t
        .api
        .post("/payments", None, &instant(&bob.email, "1.00"))
        .await;
    assert_eq!(reply.status, 401, "{}", reply.body);

    // Bob is deleted in auth; his token still verifies until it expires, but auth no longer
    // knows him as a sender.
    let admin = t.auth.admin().await;
    let deleted = t
        .auth
        .api
        .call(
            reqwest::Method::DELETE,
            &format!("/users/{}", bob.id),
            Some(&admin.token),
            None,
        )
        .await;
    assert!(deleted.status.is_success(), "{}", deleted.body);
    let reply = t
        .post("/payments", &bob.token, &instant(&alice.email, "1.00"))
        .await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(reply.body["error"]["message"], "Sender not found");
    assert_eq!(
        t.count(
            "SELECT count(*) FROM payments WHERE sender_id = $1",
            &alice.id
        )
        .await,
        0
    );
    assert_eq!(
        t.count(
            "SELECT count(*) FROM payments WHERE sender_id = $1",
            &bob.id
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_scheduled_payment_waits_for_its_time_then_completes() {
    let t = spawn().await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let body = json!({"recipientEmail": bob.email, "amount": "5.00", "type": "scheduled",
        "scheduledAt": at.to_rfc3339()});

    let reply = t.post("/payments", &alice.token, &body).await;

    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["status"], "pending");
    assert_eq!(reply.body["type"], "scheduled");
    let id = reply.body["id"].as_str().unwrap();
    assert!(t.charge(id).await.is_none(), "not charged before its time");
    let done = t.wait_for_status(&alice.token, id, "completed").await;
    let completed_at: chrono::DateTime<chrono::Utc> =
        done["completedAt"].as_str().unwrap().parse().unwrap();
    assert!(
        completed_at >= at - chrono::Duration::milliseconds(5),
        "{completed_at} < {at}"
    );
}

#[tokio::test]
async fn a_recurring_payment_makes_linked_occurrences_until_cancelled() {
    let t = spawn().await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let body = json!({"recipientEmail": bob.email, "amount": "7.00", "type": "recurring",
        "interval": "day", "metadata": {"plan": "gold"}});

    let reply = t.post("/payments", &alice.token, &body).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["interval"], "day");
    let parent = reply.body["id"].as_str().unwrap().to_string();

    let child = test_support::eventually(Duration::from_secs(10), || async {
        let list = t
            .get("/payments?direction=sent&status=completed", &alice.token)
            .await;
        list.body["items"]
            .as_array()
            .and_then(|items| items.first().cloned())
    })
    .await
    .expect("the first occurrence is made and charged");
    assert_eq!(child["metadata"]["recurringParentId"], parent.as_str());
    assert_eq!(child["metadata"]["occurrence"], 1);
    assert_eq!(child["metadata"]["plan"], "gold");
    assert_eq!(child["amount"], "7.00");
    let pool = t.pool.clone();
    let next_due = |parent: String| {
        let pool = pool.clone();
        async move {
            let due: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
                "SELECT due_at FROM payments.jobs WHERE payment_id = $1 AND kind = 'occurrence'",
            )
            .bind(parent)
            .fetch_one(&pool)
            .await
            .unwrap();
            due
        }
    };
    let started: chrono::DateTime<chrono::Utc> =
        reply.body["scheduledAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        next_due(parent.clone()).await,
        started + chrono::Duration::days(1)
    );

    // A day passes (the job is made due now): the second occurrence, then the third is a day
    // after the second.
    sqlx::query("UPDATE payments.jobs SET due_at = now() WHERE payment_id = $1")
        .bind(&parent)
        .execute(&t.pool)
        .await
        .unwrap();
    let second = test_support::eventually(Duration::from_secs(10), || async {
        let list = t
            .get("/payments?direction=sent&status=completed", &alice.token)
            .await;
        list.body["items"].as_array().and_then(|items| {
            items
                .iter()
                .find(|p| p["metadata"]["occurrence"] == 2)
                .cloned()
        })
    })
    .await
    .expect("the second occurrence is made and charged");
    assert_eq!(second["metadata"]["recurringParentId"], parent.as_str());
    assert_eq!(
        next_due(parent.clone()).await,
        started + chrono::Duration::days(2)
    );

    let cancel = t
        .post(
            &format!("/payments/{parent}/cancel"),
            &alice.token,
            &json!({}),
        )
        .await;
    assert_eq!(cancel.status, 200, "{}", cancel.body);
    assert_eq!(cancel.body["status"], "cancelled");
    assert_eq!(
        t.count(
            "SELECT count(*) FROM payments.jobs WHERE payment_id = $1",
            &parent
        )
        .await,
        0,
        "a cancelled recurring payment makes no more occurrences"
    );
}
