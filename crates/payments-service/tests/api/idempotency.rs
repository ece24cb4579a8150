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

/// Polls a future until it has waited `limit` times, then gives up on it (it is dropped, as a
/// client hanging up or a timeout drops a request): `None`. `Some` when it finished before.
struct DropAfter<F: std::future::Future> {
    fut: std::pin::Pin<Box<F>>,
    waits: usize,
    limit: usize,
}

impl<F: std::future::Future> std::future::Future for DropAfter<F> {
    type Output = Option<F::Output>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.fut.as_mut().poll(cx) {
            std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
            std::task::Poll::Pending => {
                self.waits += 1;
                if self.waits >= self.limit {
                    std::task::Poll::Ready(None)
                } else {
                    std::task::Poll::Pending
                }
            }
        }
    }
}

/// A keyed POST /payments dropped at each point where it waits (the claim, the lookups at auth,
/// each statement, the COMMIT, the charge), then retried with the same key until it gets an
/// answer: every time one payment, charged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_dropped_at_any_await_point_then_retried_makes_one_payment_charged_once() {
    use tower::ServiceExt;
    let t = spawn_paced(Pace {
        idempotency_lease_secs: 1,
        ..Pace::default()
    })
    .await;
    let (alice, bob) = (t.user("drop-a").await, t.user("drop-b").await);
    let router = t.router().await;
    let mut made = Vec::new();
    for limit in 1.. {
        let key = format!("drop-{limit}");
        let amount = format!("{}.{:02}", 1 + limit / 100, limit % 100);
        let body = instant(&bob.email, &amount);
        let request = axum::http::Request::post("/payments")
            .header("authorization", format!("Bearer {}", alice.token))
            .header("idempotency-key", &key)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        let outcome = DropAfter {
            fut: Box::pin(router.clone().oneshot(request)),
            waits: 0,
            limit,
        }
        .await;
        let finished = outcome.is_some();
        // The retry, until the key answers: 409 while the first request's key is held (its lease
        // runs out within a second when the request died holding it).
        let answer = test_support::eventually(std::time::Duration::from_secs(20), || async {
            let reply = t.post_keyed(&alice.token, &key, &body).await;
            (reply.status != 409).then_some(reply)
        })
        .await
        .unwrap_or_else(|| panic!("dropped after {limit} waits: the key never answered"));
        assert!(
            answer.status == 201 || answer.status == 200 || answer.status == 202,
            "dropped after {limit} waits: {} {}",
            answer.status,
            answer.body
        );
        let id = answer.body["id"].as_str().unwrap().to_string();
        let payments: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM payments WHERE sender_id = $1 AND amount = $2::numeric",
        )
        .bind(&alice.id)
        .bind(&amount)
        .fetch_one(&t.pool)
        .await
        .unwrap();
        assert_eq!(payments, 1, "dropped after {limit} waits: one payment");
        made.push((limit, id));
        if finished {
            break;
        }
    }
    assert!(
        made.len() >= 5,
        "the request waits at several points: {made:?}"
    );
    // Each charged once: by the request, or by the worker when the request died first.
    for (limit, id) in &made {
        let charge = test_support::eventually(std::time::Duration::from_secs(20), || async {
            t.charge(id).await.filter(|c| c["status"] != "pending")
        })
        .await
        .unwrap_or_else(|| panic!("dropped after {limit} waits: payment {id} never charged"));
        assert_eq!(
            charge["attempts"], 1,
            "dropped after {limit} waits: {charge}"
        );
    }
    let charges = t.psp.get("/charges", None).await.body;
    for (limit, id) in &made {
        let same = charges["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["reference"] == id.as_str())
            .count();
        assert_eq!(same, 1, "dropped after {limit} waits: one charge for {id}");
    }
}

/// The case the sweep above cannot time: the request dropped (a client hanging up, the 30 s
/// timeout) while its COMMIT runs on the server, so the payment commits but the request never
/// learns it. Its key must not be released: the retry gets the stored answer, and the payment
/// is charged once (by the worker, the request being gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_dropped_while_its_commit_runs_keeps_its_key_and_is_charged_once() {
    use tower::ServiceExt;
    let t = spawn_paced(Pace {
        idempotency_lease_secs: 1,
        ..Pace::default()
    })
    .await;
    let (alice, bob) = (t.user("commit-a").await, t.user("commit-b").await);
    // A COMMIT that takes a while: a deferred trigger sleeps in it.
    sqlx::raw_sql(
        "CREATE FUNCTION public.slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_sleep(0.5); RETURN NULL; END $$;
         CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON payments
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.slow_commit();",
    )
    .execute(&t.pool)
    .await
    .unwrap();
    let router = t.router().await;
    let key = "dropped-in-commit";
    let body = instant(&bob.email, "7.77");
    let request = axum::http::Request::post("/payments")
        .header("authorization", format!("Bearer {}", alice.token))
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let in_commit = async {
        loop {
            let committing: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() \
                 AND state = 'active' AND query = 'COMMIT' AND pid <> pg_backend_pid())",
            )
            .fetch_one(&t.pool)
            .await
            .unwrap();
            if committing {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    tokio::select! {
        reply = router.oneshot(request) => panic!("the request finished before its COMMIT was seen: {:?}", reply.map(|r| r.status())),
        () = in_commit => {}
    }
    // The request is dropped now, its COMMIT still running.
    let answer = test_support::eventually(std::time::Duration::from_secs(15), || async {
        let reply = t.post_keyed(&alice.token, key, &body).await;
        (reply.status != 409).then_some(reply)
    })
    .await
    .expect("the key answers");
    assert!(
        answer.status.is_success(),
        "{} {}",
        answer.status,
        answer.body
    );
    assert_eq!(
        answer
            .headers
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap()),
        Some("true"),
        "the retry gets the committed payment's answer: {}",
        answer.body
    );
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM payments WHERE sender_id = $1")
        .bind(&alice.id)
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(payments, 1, "one payment");
    let id = answer.body["id"].as_str().unwrap().to_string();
    let charge = test_support::eventually(std::time::Duration::from_secs(20), || async {
        t.charge(&id).await.filter(|c| c["status"] != "pending")
    })
    .await
    .expect("the worker charges it");
    assert_eq!(charge["attempts"], 1, "{charge}");
}
