//! Reading payments: the caller's lists with filters and pages, one payment and its history,
//! names through auth's cache, and legacy rows served as they are.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::spawn;

fn ids(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn lists_filter_by_direction_status_type_and_time_and_page_without_gaps() {
    let t = spawn().await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(
            t.pay(&alice, &bob, &format!("1{i}.00")).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let declined = t.pay(&alice, &bob, "2001.00").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let received = t.pay(&bob, &alice, "3.00").await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let all = t.get("/payments?limit=100", &alice.token).await;
    assert_eq!(all.status, 200, "{}", all.body);
    let mut expected: Vec<String> = sent
        .iter()
        .cloned()
        .chain([declined.clone(), received.clone()])
        .collect();
    expected.reverse();
    assert_eq!(ids(&all.body), expected, "newest first");

    let only_sent = t
        .get("/payments?direction=sent&limit=100", &alice.token)
        .await;
    assert_eq!(ids(&only_sent.body).len(), 6);
    let only_received = t.get("/payments?direction=received", &alice.token).await;
    assert_eq!(ids(&only_received.body), std::slice::from_ref(&received));
    let failed = t.get("/payments?status=failed", &alice.token).await;
    assert_eq!(ids(&failed.body), std::slice::from_ref(&declined));
    assert!(
        failed.body["items"][0]["failureReason"]
            .as_str()
            .unwrap()
            .contains("insufficient_funds")
    );
    let scheduled = t.get("/payments?type=scheduled", &alice.token).await;
    assert_eq!(ids(&scheduled.body), Vec::<String>::new());
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let later = t
        .get(
            &format!("/payments?from={}", urlencode(&future)),
            &alice.token,
        )
        .await;
    assert_eq!(ids(&later.body), Vec::<String>::new());
    let before = t
        .get(
            &format!("/payments?to={}", urlencode(&future)),
            &alice.token,
        )
        .await;
    assert_eq!(ids(&before.body).len(), 7);

    // Pages of 2 give every payment once, in order, while new payments arrive.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/payments?limit=2&cursor={c}"),
            None => "/payments?limit=2".to_string(),
        };
        let page = t.get(&path, &alice.token).await;
        assert_eq!(page.status, 200, "{}", page.body);
        seen.extend(ids(&page.body));
        if seen.len() == 2 {
            t.pay(&alice, &bob, "1.00").await;
        }
        match page.body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, expected);

    for bad in [
        "direction=up",
        "status=done",
        "limit=0",
        "limit=101",
        "cursor=%21%21",
        "from=yesterday",
    ] {
        let reply = t.get(&format!("/payments?{bad}"), &alice.token).await;
        assert_eq!(reply.status, 422, "{bad}: {}", reply.body);
    }
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn another_users_payment_does_not_exist_for_them_but_does_for_an_admin() {
    let t = spawn().await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let eve = t.user("eve").await;
    let id = t.pay(&alice, &bob, "8.00").await["id"]
        .as_str()
        .unwrap()
        .to_string();

    for path in [
        format!("/payments/{id}"),
        format!("/payments/{id}/transactions"),
    ] {
        let reply = t.get(&path, &eve.token).await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.body);
        assert_eq!(reply.body["error"]["message"], "Payment not found");
        assert_eq!(
            t.get(&path, &bob.token).await.status,
            200,
            "the recipient sees it"
        );
    }
    let missing = t.get("/payments/no-such-payment", &eve.token).await;
    assert_eq!(
        missing.body,
        t.get(&format!("/payments/{id}"), &eve.token).await.body,
        "indistinguishable"
    );
    let cancel = t
        .post(&format!("/payments/{id}/cancel"), &eve.token, &json!({}))
        .await;
    assert_eq!(cancel.status, 404);
    assert!(ids(&t.get("/payments", &eve.token).await.body).is_empty());

    let admin = t.auth.admin().await;
    let seen = t.get(&format!("/payments/{id}"), &admin.token).await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.body["senderId"], alice.id.as_str());
}

#[tokio::test]
async fn only_the_sender_cancels_and_only_while_pending() {
    let t = spawn().await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let body = json!({"recipientEmail": bob.email, "amount": "9.00", "type": "scheduled", "scheduledAt": at});
    let id = t.post("/payments", &alice.token, &body).await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/payments/{id}/cancel");

    assert_eq!(t.post(&path, &bob.token, &json!({})).await.status, 403);
    let cancelled = t.post(&path, &alice.token, &json!({})).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    let again = t.post(&path, &alice.token, &json!({})).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.error_code(), "invalid_transition");
    assert_eq!(t.history(&alice.token, &id).await, ["pending", "cancelled"]);

    let done = t.pay(&alice, &bob, "1.00").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let late = t
        .post(
            &format!("/payments/{done}/cancel"),
            &alice.token,
            &json!({}),
        )
        .await;
    assert_eq!(late.status, 409, "a completed payment cannot be cancelled");
    assert_eq!(
        t.history(&alice.token, &done).await,
        ["pending", "processing", "completed"]
    );
}

#[tokio::test]
async fn legacy_rows_are_served_as_they_are_with_names_from_auth() {
    let t = spawn().await;
    let alice = t.user("alice").await;
    // Rows as the migration copies them: an id that is no UUID, no recipient, JSON null metadata,
    // a recipient auth does not know.
    for (id, recipient, metadata) in [
        ("legacy-pay-0001", None, "null"),
        (
            "legacy-pay-0002",
            Some("legacy-user-gone"),
            "{\"note\": \"old\"}",
        ),
    ] {
        sqlx::query(
            "INSERT INTO payments (id, sender_id, recipient_id, amount, currency, status, type, \
               metadata, created_at, updated_at) \
             VALUES ($1, $2, $3, 99.5, 'EUR', 'completed', 'instant', $4::jsonb, \
               '2023-05-01 10:00:00', '2023-05-01 10:00:00')",
        )
        .bind(id)
        .bind(&alice.id)
        .bind(recipient)
        .bind(metadata)
        .execute(&t.pool)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO payment_transactions (id, payment_id, status, status_message, created_at) \
         VALUES ('legacy-tx-1', 'legacy-pay-0001', 'completed', NULL, '2023-05-01 10:00:01')",
    )
    .execute(&t.pool)
    .await
    .unwrap();

    let list = t.get("/payments?direction=sent", &alice.token).await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(ids(&list.body), ["legacy-pay-0002", "legacy-pay-0001"]);
    let first = &list.body["items"][1];
    assert_eq!(first["recipientId"], Value::Null);
    assert_eq!(first["recipientName"], Value::Null);
    assert_eq!(first["metadata"], Value::Null);
    assert_eq!(first["amount"], "99.50");
    assert_eq!(first["senderName"], "Test User");
    assert_eq!(first["createdAt"], "2023-05-01T10:00:00Z");
    let second = &list.body["items"][0];
    assert_eq!(second["recipientId"], "legacy-user-gone");
    assert_eq!(
        second["recipientName"],
        Value::Null,
        "a user auth no longer knows has no name"
    );
    assert_eq!(second["metadata"], json!({"note": "old"}));
    let history = t
        .get("/payments/legacy-pay-0001/transactions", &alice.token)
        .await;
    assert_eq!(history.body["items"][0]["id"], "legacy-tx-1");
}

#[tokio::test]
async fn a_renamed_user_is_shown_renamed_at_once_through_the_user_updated_event() {
    let t = spawn().await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let id = t.pay(&alice, &bob, "2.00").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/payments/{id}");
    assert_eq!(
        t.get(&path, &alice.token).await.body["recipientName"],
        "Test User"
    );

    let admin = t.auth.admin().await;
    let renamed = t
        .auth
        .api
        .call(
            Method::PATCH,
            &format!("/users/{}", bob.id),
            Some(&admin.token),
            Some(&json!({"name": "Robert"})),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);

    let seen = test_support::eventually(Duration::from_secs(10), || async {
        let reply = t.get(&path, &alice.token).await;
        (reply.body["recipientName"] == "Robert").then_some(())
    })
    .await;
    assert!(
        seen.is_some(),
        "the cached name (5 min TTL) was dropped by the event"
    );
    let names: HashSet<_> = [t.get(&path, &bob.token).await.body["recipientName"].clone()].into();
    assert_eq!(names, HashSet::from([json!("Robert")]));
}
