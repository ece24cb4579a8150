//! What every service's OpenAPI document says the same way.
//!
//! [`crate::Json`] answers every operation that reads a JSON body with 400 (malformed JSON), 413
//! (over [`crate::http::BODY_LIMIT`]), 415 (no `Content-Type: application/json`) and 422 (valid
//! JSON of the wrong shape) before its handler runs; [`document_json_bodies`] adds those answers
//! to each such operation, so that no handler has to list them and none can forget one.

use utoipa::openapi::path::Operation;
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

/// The answers of the [`crate::Json`] extractor, by status.
const JSON_BODY_ANSWERS: [(&str, &str); 4] = [
    ("400", "`malformed_json`: the body is not JSON"),
    ("413", "`payload_too_large`: the body is over the limit"),
    (
        "415",
        "`unsupported_media_type`: no `Content-Type: application/json`",
    ),
    (
        "422",
        "`validation_failed`: the body does not match its schema",
    ),
];

/// Adds 400, 413, 415 and 422 (the platform's `ErrorBody`) to every operation with a request
/// body that does not document them already.
pub fn document_json_bodies(doc: &mut OpenApi) {
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            add_json_body_answers(operation);
        }
    }
}

fn add_json_body_answers(operation: &mut Operation) {
    if operation.request_body.is_none() {
        return;
    }
    for (status, description) in JSON_BODY_ANSWERS {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description(description)
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build(),
                        )
                        .build(),
                )
            });
    }
}
