//! Auth down: cached users still resolve, an uncached lookup is 503 `auth_unavailable` (never a
//! 500), and nothing is half-written.

use crate::helpers::{instant, spawn};

#[tokio::test]
async fn cached_users_still_pay_and_uncached_ones_get_503_with_nothing_written() {
    let t = spawn().await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let carol = t.user("carol").await;
    let first = t.pay(&alice, &bob, "1.00").await;
    let id = first["id"].as_str().unwrap().to_string();

    t.auth.stop().await;

    let cached = t
        .post("/payments", &alice.token, &instant(&bob.email, "2.00"))
        .await;
    assert_eq!(
        cached.status, 201,
        "alice and bob are cached: {}",
        cached.body
    );
    assert_eq!(cached.body["status"], "completed");
    assert_eq!(cached.body["recipientName"], "Test User");
    let read = t.get(&format!("/payments/{id}"), &alice.token).await;
    assert_eq!(read.status, 200, "names come from the cache: {}", read.body);

    let uncached = t
        .post_keyed(&alice.token, "outage-key", &instant(&carol.email, "3.00"))
        .await;
    assert_eq!(uncached.status, 503, "{}", uncached.body);
    assert_eq!(uncached.error_code(), "auth_unavailable");
    let sender_uncached = t
        .post_keyed(&carol.token, "outage-key", &instant(&bob.email, "3.00"))
        .await;
    assert_eq!(sender_uncached.status, 503, "{}", sender_uncached.body);
    assert_eq!(sender_uncached.error_code(), "auth_unavailable");

    assert_eq!(
        t.count(
            "SELECT count(*) FROM payments WHERE sender_id = $1",
            &alice.id
        )
        .await,
        2
    );
    assert_eq!(
        t.count(
            "SELECT count(*) FROM payments WHERE sender_id = $1",
            &carol.id
        )
        .await,
        0
    );
    // The keys were let go before the 503s were answered: a retry starts afresh.
    for caller in [&alice.id, &carol.id] {
        let keys = t
            .count(
                "SELECT count(*) FROM payments.idempotency_keys WHERE caller = $1",
                caller,
            )
            .await;
        assert_eq!(keys, 0, "no key left held or stored");
    }
}
