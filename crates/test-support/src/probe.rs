//! Checks every service's system routes answer as the platform promises.

use serde_json::Value;

/// `/health`, `/ready`, `/metrics`, `/openapi.json`, a JSON 404 and the request id header.
pub async fn assert_system_routes(base: &str, service: &str) {
    let http = reqwest::Client::new();
    let health = http
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("health answers");
    assert_eq!(health.status(), 200);
    assert!(
        health.headers().contains_key("x-request-id"),
        "every response carries a request id"
    );
    let body: Value = health.json().await.unwrap();
    assert_eq!(body["service"], service);

    // Broker connections come up in the background, so readiness may take a moment.
    let body = crate::eventually(std::time::Duration::from_secs(5), || async {
        let ready = http.get(format!("{base}/ready")).send().await.unwrap();
        if ready.status() == 200 {
            ready.json::<Value>().await.ok()
        } else {
            None
        }
    })
    .await
    .expect("/ready answers 200");
    assert_eq!(body["checks"]["database"], "ok");

    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("http_requests_total"),
        "request counter exported"
    );
    assert!(
        metrics.contains("http_request_duration_seconds_bucket"),
        "latency histogram exported"
    );
    assert!(
        metrics.contains("db_pool_connections"),
        "pool gauges exported"
    );

    let spec: Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        spec["openapi"].as_str().unwrap_or("").starts_with("3."),
        "an OpenAPI 3 document"
    );
    assert!(spec["paths"]["/health"].is_object());

    let missing = http
        .get(format!("{base}/no/such/route"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.expect("a 404 has a JSON body");
    assert_eq!(body["error"]["code"], "not_found");
}
