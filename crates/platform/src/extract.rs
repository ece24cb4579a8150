//! `Json` and `Query` extractors whose rejections use the platform's error body: malformed JSON is
//! 400, a missing field or a wrong type is 422 naming the field, a body over the limit is 413.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

/// JSON request body or response.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                crate::error::code::UNSUPPORTED_MEDIA_TYPE,
                "expected a request with Content-Type: application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| json_rejection(e.into()))?;
        // Every body of the platform is a JSON object; serde would fill a struct from an array
        // by position (`[null, "x"]`), which no client means.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(ApiError::validation(vec![FieldError::new(
                "body",
                "must be a JSON object",
            )]));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(Json(value)),
            // serde_json calls a value of the wrong type for an enum (`"kind": 5`) a syntax error;
            // the body is JSON all the same, so it is the field's error.
            Err(JsonRejection::JsonSyntaxError(e))
                if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok() =>
            {
                Err(shape_error(
                    source_text(&e).replace("expected ident", "expected one of its values"),
                ))
            }
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// `application/json` or `application/<anything>+json`, parameters aside (as axum's `Json`).
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5
                && subtype.is_char_boundary(subtype.len() - 5)
                && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => shape_error(source_text(&e)),
        JsonRejection::JsonSyntaxError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            crate::error::code::MALFORMED_JSON,
            format!("malformed JSON: {}", source_text(&e)),
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            crate::error::code::UNSUPPORTED_MEDIA_TYPE,
            "expected a request with Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                crate::error::code::PAYLOAD_TOO_LARGE,
                "the request body is too large",
            )
        }
        other => ApiError::new(
            other.status(),
            crate::error::code::BAD_REQUEST,
            other.body_text(),
        ),
    }
}

/// Query string parameters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                let detail = source_text(&e);
                let field = field_of(&detail);
                Err(ApiError {
                    fields: vec![FieldError::new(field, detail.clone())],
                    ..ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        crate::error::code::VALIDATION_FAILED,
                        format!("invalid query string: {detail}"),
                    )
                })
            }
            Err(other) => Err(ApiError::new(
                other.status(),
                crate::error::code::BAD_REQUEST,
                other.body_text(),
            )),
        }
    }
}

/// serde's own message under axum's rejection text; for data errors it starts with the field's
/// path ("email: invalid type: ...").
/// JSON that is not what the route takes: 422 naming the field.
fn shape_error(detail: String) -> ApiError {
    let field = field_of(&detail);
    let message = format!("the body does not match the expected shape: {detail}");
    ApiError {
        fields: vec![FieldError::new(field, detail)],
        ..ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            crate::error::code::VALIDATION_FAILED,
            message,
        )
    }
}

fn source_text(e: &dyn std::error::Error) -> String {
    e.source()
        .map(|s| s.to_string())
        .unwrap_or_else(|| e.to_string())
}

/// The field a serde message is about: the path prefix (`amount: invalid type`) or the name in
/// "missing field `email`".
fn field_of(detail: &str) -> String {
    if let Some(start) = detail.find("missing field `") {
        let rest = &detail[start + "missing field `".len()..];
        if let Some(end) = rest.find('`') {
            let prefix = detail[..start].trim_end_matches(": ").trim_end_matches('.');
            let name = &rest[..end];
            return if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            };
        }
    }
    match detail.split_once(": ") {
        Some((path, _)) if !path.contains(' ') && path != "." => path.to_string(),
        _ => "body".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::field_of;

    #[test]
    fn field_names_come_from_serde_messages() {
        assert_eq!(
            field_of("missing field `email` at line 1 column 2"),
            "email"
        );
        assert_eq!(
            field_of("password: invalid type: integer `5`, expected a string at line 1"),
            "password"
        );
        assert_eq!(
            field_of("preferences.theme: invalid type"),
            "preferences.theme"
        );
        assert_eq!(
            field_of("invalid type: integer `1`, expected struct Foo"),
            "body"
        );
    }

    /// A value outside an enum's variants is a field's error (422 naming it), not malformed JSON.
    #[tokio::test]
    async fn an_unknown_enum_value_is_a_validation_error_of_its_field() {
        use axum::extract::FromRequest;

        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        enum Kind {
            Instant,
            Scheduled,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Body {
            kind: Kind,
        }
        for body in [
            r#"{"kind":"Later"}"#,
            r#"{"kind":5}"#,
            r#"{"kind":null}"#,
            r#"{"kind":[]}"#,
        ] {
            let request = axum::http::Request::builder()
                .method("POST")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body))
                .unwrap();
            let error = super::Json::<Body>::from_request(request, &())
                .await
                .unwrap_err();
            assert_eq!(
                error.status,
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "{body}"
            );
            assert_eq!(error.fields[0].field, "kind", "{body}");
        }
        // Not JSON at all stays 400.
        let request = axum::http::Request::builder()
            .method("POST")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(r#"{"kind":"#))
            .unwrap();
        let error = super::Json::<Body>::from_request(request, &())
            .await
            .unwrap_err();
        assert_eq!(error.status, axum::http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn the_client_address_is_the_hop_the_trusted_proxy_appended() {
        let request = axum::http::Request::builder()
            .header("x-forwarded-for", "6.6.6.6, 203.0.113.9")
            .header("user-agent", "curl/8")
            .body(())
            .unwrap();
        let (parts, _) = request.into_parts();
        let trusted = super::ClientInfo::of(&parts, true);
        assert_eq!(trusted.ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(trusted.user_agent.as_deref(), Some("curl/8"));
        assert_eq!(
            super::ClientInfo::of(&parts, false).ip,
            None,
            "no peer, header ignored"
        );
    }
}

/// The client's address and user agent, for audit trails.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl ClientInfo {
    /// The peer's address, or the last hop of `X-Forwarded-For` when `trust_forwarded_for`: the
    /// address the trusted proxy in front saw and appended (earlier hops are whatever the client
    /// sent, so they prove nothing). Only behind such a proxy. The user agent is cut to 512
    /// characters.
    pub fn of(parts: &axum::http::request::Parts, trust_forwarded_for: bool) -> Self {
        let forwarded = trust_forwarded_for
            .then(|| {
                parts
                    .headers
                    .get("x-forwarded-for")
                    .and_then(|v| v.to_str().ok())
            })
            .flatten()
            .and_then(|v| v.rsplit(',').next())
            .map(|ip| ip.trim().to_string())
            .filter(|ip| !ip.is_empty());
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|axum::extract::ConnectInfo(addr)| addr.ip().to_string());
        let user_agent = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(512).collect());
        ClientInfo {
            ip: forwarded.or(peer),
            user_agent,
        }
    }
}
