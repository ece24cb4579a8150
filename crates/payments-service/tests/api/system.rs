use crate::helpers::{Pace, spawn, spawn_paced};

#[tokio::test]
async fn system_routes_answer() {
    let t = spawn().await;
    test_support::probe::assert_system_routes(&t.api.base, "payments-service").await;
}

#[tokio::test]
async fn ready_checks_the_database_the_broker_and_auth() {
    let t = spawn_paced(Pace::default()).await;
    let ready = t.api.get("/ready", None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    for check in ["database", "broker", "auth"] {
        assert_eq!(ready.body["checks"][check], "ok", "{}", ready.body);
    }
    t.auth.stop().await;
    let ready = t.api.get("/ready", None).await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_ne!(ready.body["checks"]["auth"], "ok");
}

#[tokio::test]
async fn metrics_show_payments_by_status_psp_latency_and_the_cache() {
    let t = spawn().await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    t.pay(&alice, &bob, "10.00").await;
    t.pay(&alice, &bob, "11.00").await;
    let text = t.api.get("/metrics", None).await.text;
    for metric in [
        "psp_request_duration_seconds",
        "payments_transitions_total",
        "auth_client_user_lookups_total",
        "payments_created_total",
    ] {
        assert!(text.contains(metric), "{metric} missing from:\n{text}");
    }
    assert!(
        text.contains("result=\"hit\""),
        "the second payment's users come from the cache:\n{text}"
    );
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let t = spawn().await;
    let spec = t.api.get("/openapi.json", None).await.body;
    for path in [
        "/payments",
        "/payments/{id}",
        "/payments/{id}/cancel",
        "/payments/{id}/transactions",
        "/psp/webhooks",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} missing");
    }
}

// Found by scripts/schemathesis.sh: `direction` pointed at no schema, the cancel's 422 (a bad
// Idempotency-Key) was not documented, nor bodies' 400/413/415.
#[tokio::test]
async fn the_openapi_document_is_complete() {
    let t = spawn().await;
    let spec = t.api.get("/openapi.json", None).await.body;
    test_support::openapi::assert_complete(&spec);
    let cancel = &spec["paths"]["/payments/{id}/cancel"]["post"];
    assert!(cancel["responses"]["422"].is_object());
    let key = cancel["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .unwrap();
    assert_eq!(key["schema"]["pattern"], r"^[\x21-\x7e]{1,255}$");
}
