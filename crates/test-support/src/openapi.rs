//! Checks of a service's `/openapi.json` that hold for every service: what schemathesis
//! (`scripts/schemathesis.sh`) needs to test an API against its document without false alarms.

use serde_json::Value;

/// Every `$ref` names a schema the document has, and every operation with a request body
/// documents what the platform's JSON extractor answers before the handler runs: 400 (malformed
/// JSON), 413 (too large), 415 (not `application/json`) and 422 (wrong shape).
pub fn assert_complete(doc: &Value) {
    let mut problems = Vec::new();
    dangling_refs(doc, doc, "#", &mut problems);
    let paths = doc["paths"].as_object().expect("the document has paths");
    for (path, item) in paths {
        for (method, operation) in item.as_object().into_iter().flatten() {
            if operation.get("requestBody").is_none() {
                continue;
            }
            for status in ["400", "413", "415", "422"] {
                if operation["responses"].get(status).is_none() {
                    problems.push(format!("{method} {path} does not document {status}"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the OpenAPI document:\n{}",
        problems.join("\n")
    );
}

fn dangling_refs(doc: &Value, node: &Value, at: &str, problems: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            for (key, value) in map {
                if key == "$ref"
                    && let Some(target) = value.as_str()
                {
                    let pointer = target.trim_start_matches('#');
                    if doc.pointer(pointer).is_none() {
                        problems.push(format!("{at}: $ref {target} names nothing"));
                    }
                }
                dangling_refs(doc, value, &format!("{at}/{key}"), problems);
            }
        }
        Value::Array(items) => {
            for (i, value) in items.iter().enumerate() {
                dangling_refs(doc, value, &format!("{at}/{i}"), problems);
            }
        }
        _ => {}
    }
}
