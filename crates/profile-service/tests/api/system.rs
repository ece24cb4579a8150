use crate::helpers::spawn_platform;

#[tokio::test]
async fn system_routes_answer() {
    let platform = spawn_platform().await;
    test_support::probe::assert_system_routes(&platform.profile.base, "profile-service").await;
}

#[tokio::test]
async fn readiness_names_the_broker_connections() {
    let platform = spawn_platform().await;
    let ready: serde_json::Value = platform.profile.get("/ready", None).await.body;
    assert_eq!(ready["checks"]["broker"], "ok", "{ready}");
}

#[tokio::test]
async fn the_openapi_document_describes_the_profile_routes() {
    let platform = spawn_platform().await;
    let doc: serde_json::Value = platform.profile.get("/openapi.json", None).await.body;
    let me = &doc["paths"]["/profile/me"];
    for method in ["get", "put", "patch"] {
        assert!(me[method].is_object(), "{method} /profile/me missing");
    }
    assert!(doc["paths"]["/profiles/{userId}"]["get"].is_object());
    assert!(doc["components"]["schemas"]["Profile"].is_object());
}
