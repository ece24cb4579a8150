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

// Found by scripts/schemathesis.sh: bodies' 400/413/415 were not documented, and the field rules
// the service checks were not in the schema (so valid-looking requests got 422).
#[tokio::test]
async fn the_openapi_document_is_complete_and_states_the_field_rules() {
    let platform = spawn_platform().await;
    let doc: serde_json::Value = platform.profile.get("/openapi.json", None).await.body;
    test_support::openapi::assert_complete(&doc);
    let fields = &doc["components"]["schemas"]["ProfileChanges"]["properties"];
    assert_eq!(fields["phone"]["pattern"], r"^\+[1-9][0-9]{1,14}$");
    assert_eq!(fields["address"]["maxLength"], 500);
    assert_eq!(fields["bio"]["maxLength"], 1000);
    assert_eq!(fields["avatarUrl"]["maxLength"], 2048);
    let limit = doc["paths"]["/profiles"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap()["schema"]
        .clone();
    assert_eq!(limit["maximum"], 100);
}
