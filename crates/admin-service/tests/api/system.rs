use crate::helpers::spawn;

#[tokio::test]
async fn system_routes_answer() {
    let admin = spawn().await;
    test_support::probe::assert_system_routes(&admin.api.base, "admin-service").await;
}

// Found by scripts/schemathesis.sh: the export's `format` and the response body of a config
// entry pointed at no schema or the wrong one (`value` is any JSON, `null` included), NDJSON
// exports were undocumented, and bodies' 400/413/415 were not listed.
#[tokio::test]
async fn the_openapi_document_is_complete() {
    let admin = spawn().await;
    let doc = admin.api.get("/openapi.json", None).await.body;
    test_support::openapi::assert_complete(&doc);
    let export = &doc["paths"]["/admin/audit-logs/export"]["get"]["responses"]["200"]["content"];
    assert!(export["text/csv"].is_object() && export["application/x-ndjson"].is_object());
    let value = &doc["components"]["schemas"]["ConfigEntryView"]["properties"]["value"];
    assert!(value.get("type").is_none(), "any JSON value: {value}");
    let key = doc["paths"]["/admin/config/{key}"]["put"]["parameters"][0].clone();
    assert_eq!(key["schema"]["pattern"], "^[a-z0-9_.-]{1,128}$");
    let write = &doc["components"]["schemas"]["ConfigWrite"];
    assert_eq!(write["required"], serde_json::json!(["value"]));
}
