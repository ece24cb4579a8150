//! The provider's outcomes, each ending in the right state: declines fail with their reason,
//! delayed settlements complete through the webhook, timeouts and 500s through the reconciler;
//! never charged twice. Webhooks: forged, stale and replayed ones change nothing.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{Pace, TestPayments, WEBHOOK_SECRET, spawn, spawn_paced};

/// Webhooks off: only the reconciler can learn an outcome the charge call did not give.
async fn without_webhooks() -> TestPayments {
    spawn_paced(Pace {
        webhooks: false,
        ..Pace::default()
    })
    .await
}

async fn paid(t: &TestPayments, amount: &str) -> (String, u16, Value, String) {
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let reply = t
        .post(
            "/payments",
            &alice.token,
            &crate::helpers::instant(&bob.email, amount),
        )
        .await;
    let id = reply.body["id"].as_str().expect("a payment").to_string();
    (id, reply.status.as_u16(), reply.body, alice.token)
}

#[tokio::test]
async fn declines_fail_at_once_with_the_providers_reason() {
    let t = spawn().await;
    for (amount, reason) in [
        ("2001.50", "insufficient_funds"),
        ("2000.00", "card_declined"),
        ("2999.99", "card_declined"),
    ] {
        let (id, status, body, token) = paid(&t, amount).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["status"], "failed", "{amount}");
        assert!(
            body["failureReason"].as_str().unwrap().starts_with(reason),
            "{body}"
        );
        assert_eq!(body["pspStatus"], "declined");
        assert_eq!(
            t.history(&token, &id).await,
            ["pending", "processing", "failed"]
        );
    }
}

#[tokio::test]
async fn a_delayed_settlement_answers_202_and_completes_through_the_webhook() {
    let t = spawn().await;
    let (id, status, body, token) = paid(&t, "3000.00").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "processing");
    assert_eq!(body["pspStatus"], "pending");
    t.wait_for_status(&token, &id, "completed").await;
    assert_eq!(
        t.history(&token, &id).await,
        ["pending", "processing", "completed"]
    );

    let (id, status, _, token) = paid(&t, "3001.00").await;
    assert_eq!(status, 202);
    let failed = t.wait_for_status(&token, &id, "failed").await;
    assert!(
        failed["failureReason"]
            .as_str()
            .unwrap()
            .contains("card_declined")
    );
}

#[tokio::test]
async fn a_timed_out_charge_is_reconciled_not_retried_blindly() {
    let t = without_webhooks().await;
    let (id, status, body, token) = paid(&t, "4000.00").await;
    assert_eq!(status, 202, "the outcome is unknown: {body}");
    assert_eq!(body["status"], "processing");
    let done = t.wait_for_status(&token, &id, "completed").await;
    assert!(
        done["pspTransactionId"]
            .as_str()
            .unwrap()
            .starts_with("ch_")
    );
    let charge = t.charge(&id).await.unwrap();
    assert_eq!(
        charge["attempts"], 1,
        "asked about, never charged again: {charge}"
    );
    assert_eq!(
        t.history(&token, &id).await,
        ["pending", "processing", "completed"]
    );
}

#[tokio::test]
async fn a_500_from_the_provider_is_reconciled_under_the_same_reference() {
    let t = without_webhooks().await;
    let (id, status, body, token) = paid(&t, "5000.00").await;
    assert_eq!(status, 202, "never a 500: {body}");
    t.wait_for_status(&token, &id, "completed").await;
    let charge = t.charge(&id).await.unwrap();
    assert_eq!(charge["reference"], id.as_str());
    assert_eq!(
        charge["attempts"], 2,
        "the failed attempt and the reconciler's: {charge}"
    );
    let charges = t.psp.get("/charges", None).await.body;
    let same: Vec<_> = charges["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["reference"] == id.as_str())
        .collect();
    assert_eq!(same.len(), 1, "one charge");
}

#[tokio::test]
async fn a_late_settlement_without_its_webhook_is_found_by_the_reconciler() {
    let t = without_webhooks().await;
    let (id, status, _, token) = paid(&t, "3000.00").await;
    assert_eq!(status, 202);
    t.wait_for_status(&token, &id, "completed").await;
    let (id, _, _, token) = paid(&t, "3001.00").await;
    let failed = t.wait_for_status(&token, &id, "failed").await;
    assert!(
        failed["failureReason"]
            .as_str()
            .unwrap()
            .contains("card_declined")
    );
    assert_eq!(
        t.history(&token, &id).await,
        ["pending", "processing", "failed"]
    );
}

fn sign(t: i64, body: &str, secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn webhook(t: &TestPayments, signature: Option<String>, body: &str) -> test_support::Reply {
    let mut request = t
        .api
        .http
        .post(t.api.url("/psp/webhooks"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(signature) = signature {
        request = request.header("PSP-Signature", signature);
    }
    test_support::Reply::read(request.send().await.unwrap()).await
}

#[tokio::test]
async fn forged_stale_and_replayed_webhooks_change_nothing() {
    let t = spawn().await;
    // A payment held processing: the provider has it pending (settles in 300 ms).
    let (id, _, _, token) = paid(&t, "3000.00").await;
    let event =
        json!({"id": "evt_forged", "type": "charge.declined", "createdAt": chrono::Utc::now(),
        "data": {"id": "ch_forged", "reference": id, "amount": "3000.00", "currency": "USD",
                 "status": "declined", "declineCode": "card_declined", "message": "forged",
                 "attempts": 1, "createdAt": chrono::Utc::now(), "settledAt": chrono::Utc::now()}})
        .to_string();
    let now = chrono::Utc::now().timestamp();

    let unsigned = webhook(&t, None, &event).await;
    assert_eq!(unsigned.status, 401);
    assert_eq!(unsigned.error_code(), "invalid_signature");
    let forged = webhook(&t, Some(sign(now, &event, "not-the-secret-at-all")), &event).await;
    assert_eq!(forged.status, 401);
    let stale = webhook(&t, Some(sign(now - 600, &event, WEBHOOK_SECRET)), &event).await;
    assert_eq!(stale.status, 401);
    let tampered = webhook(
        &t,
        Some(sign(now, &event, WEBHOOK_SECRET)),
        &event.replace("forged", "f0rged"),
    )
    .await;
    assert_eq!(tampered.status, 401);

    let done = t.wait_for_status(&token, &id, "completed").await;
    assert_eq!(
        done["status"], "completed",
        "the real webhook settled it, the forged ones did not"
    );

    // The real event again (as the provider's retry would send it): acknowledged, no change.
    let charge = t.charge(&id).await.unwrap();
    let real = json!({"id": "evt_again", "type": "charge.succeeded", "createdAt": chrono::Utc::now(), "data": charge}).to_string();
    for _ in 0..3 {
        let replay = webhook(
            &t,
            Some(sign(chrono::Utc::now().timestamp(), &real, WEBHOOK_SECRET)),
            &real,
        )
        .await;
        assert_eq!(replay.status, 200, "{}", replay.body);
        assert_eq!(replay.body["outcome"], "unchanged");
    }
    // A correctly signed decline of a completed payment cannot undo it.
    let late = webhook(
        &t,
        Some(sign(chrono::Utc::now().timestamp(), &event, WEBHOOK_SECRET)),
        &event,
    )
    .await;
    assert_eq!(late.body["outcome"], "unchanged", "{}", late.body);
    assert_eq!(
        t.history(&token, &id).await,
        ["pending", "processing", "completed"]
    );
}

#[tokio::test]
async fn webhooks_racing_each_other_and_the_reconciler_settle_once() {
    let t = spawn().await;
    let (id, _, _, token) = paid(&t, "3000.00").await;
    let charge = test_support::eventually(std::time::Duration::from_secs(5), || async {
        t.charge(&id).await.filter(|c| c["status"] == "succeeded")
    })
    .await
    .unwrap();
    let body = json!({"id": "evt_race", "type": "charge.succeeded", "createdAt": chrono::Utc::now(), "data": charge}).to_string();
    let signature = sign(chrono::Utc::now().timestamp(), &body, WEBHOOK_SECRET);
    let deliveries = (0..10).map(|_| webhook(&t, Some(signature.clone()), &body));
    let replies = futures_util::future::join_all(deliveries).await;
    let completed = replies
        .iter()
        .filter(|r| r.body["outcome"] == "completed")
        .count();
    assert!(
        completed <= 1,
        "at most one delivery wins (the sandbox's own may be first)"
    );
    assert!(replies.iter().all(|r| r.status == 200));
    t.wait_for_status(&token, &id, "completed").await;
    assert_eq!(
        t.history(&token, &id).await,
        ["pending", "processing", "completed"]
    );
}

#[tokio::test]
async fn a_webhook_for_an_unknown_payment_is_acknowledged_and_ignored() {
    let t = spawn().await;
    let body = json!({"id": "evt_x", "type": "charge.succeeded", "createdAt": chrono::Utc::now(),
        "data": {"id": "ch_x", "reference": "no-such-payment", "status": "succeeded"}})
    .to_string();
    let reply = webhook(
        &t,
        Some(sign(chrono::Utc::now().timestamp(), &body, WEBHOOK_SECRET)),
        &body,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["outcome"], "ignored");
    let garbage = "{\"not\": \"an event\"}";
    let reply = webhook(
        &t,
        Some(sign(
            chrono::Utc::now().timestamp(),
            garbage,
            WEBHOOK_SECRET,
        )),
        garbage,
    )
    .await;
    assert_eq!(reply.status, 422);
}

#[tokio::test]
async fn a_processing_payment_that_lost_its_job_is_adopted_at_start_and_a_legacy_one_is_not() {
    let t = without_webhooks().await;
    let (id, status, _, token) = paid(&t, "4000.00").await;
    assert_eq!(status, 202);
    // The job gone (a safety net for what should never happen), and a legacy payment left
    // `processing` by the old platform, never sent by this service.
    sqlx::query("DELETE FROM payments.jobs")
        .execute(&t.pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO payments (id, sender_id, amount, currency, status, type, updated_at) \
         VALUES ('legacy-processing', 'legacy-user', 1.00, 'USD', 'processing', 'instant', now())",
    )
    .execute(&t.pool)
    .await
    .unwrap();

    // A start (here: another replica's) looks for them.
    let _replica = t.spawn_replica().await;

    t.wait_for_status(&token, &id, "completed").await;
    let legacy: (String, i64) = sqlx::query_as(
        "SELECT status::text, (SELECT count(*) FROM payments.jobs WHERE payment_id = p.id) \
         FROM payments p WHERE id = 'legacy-processing'",
    )
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!(
        legacy,
        ("processing".to_string(), 0),
        "never sent to our provider"
    );
    assert!(t.charge("legacy-processing").await.is_none());
}

#[tokio::test]
async fn a_client_hanging_up_mid_charge_does_not_abandon_the_charge() {
    // The provider takes 600 ms and its timeout is 5 s away: had the charge been dropped with the
    // request, only the reconciler would settle it, after those 5 s.
    let t = spawn_paced(Pace {
        psp_latency_ms: 600,
        psp_timeout_ms: 5_000,
        ..Pace::default()
    })
    .await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(200))
        .build()
        .unwrap();
    let sent = impatient
        .post(t.api.url("/payments"))
        .bearer_auth(&alice.token)
        .json(&crate::helpers::instant(&bob.email, "12.00"))
        .send()
        .await;
    assert!(sent.is_err(), "the client gave up before the answer");

    let completed = test_support::eventually(std::time::Duration::from_secs(3), || async {
        sqlx::query_scalar::<_, String>(
            "SELECT id FROM payments WHERE sender_id = $1 AND status = 'completed'",
        )
        .bind(&alice.id)
        .fetch_optional(&t.pool)
        .await
        .unwrap()
    })
    .await
    .expect("the charge went on without the client and completed");
    let charge = t.charge(&completed).await.unwrap();
    assert_eq!(charge["attempts"], 1, "charged once: {charge}");
}
