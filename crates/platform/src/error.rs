//! The one error shape of every HTTP API of the platform:
//! `{"error": {"code": "not_found", "message": "...", "fields": [...]}}`.
//!
//! Services keep their own `thiserror` enums and convert them into [`ApiError`]; a 5xx cause is
//! logged here and never sent to the client. The codes every service shares are in [`code`]; a
//! service's own codes are listed in its error enum, and nowhere else.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The `code` of the errors every service answers with. Clients match on these: never rename one.
pub mod code {
    pub const BAD_REQUEST: &str = "bad_request";
    pub const MALFORMED_JSON: &str = "malformed_json";
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const FORBIDDEN: &str = "forbidden";
    pub const NOT_FOUND: &str = "not_found";
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    pub const CONFLICT: &str = "conflict";
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    pub const VALIDATION_FAILED: &str = "validation_failed";
    pub const TOO_MANY_REQUESTS: &str = "too_many_requests";
    pub const INTERNAL: &str = "internal";
    pub const UNAVAILABLE: &str = "unavailable";
    pub const TIMEOUT: &str = "timeout";
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable code, e.g. `not_found`, `validation_failed`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// The offending fields of a validation error (422).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// The field's name as it appears in the request (camelCase), e.g. `email`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An HTTP error response.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub fields: Vec<FieldError>,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: Vec::new(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code::UNAUTHORIZED, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code::FORBIDDEN, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code::CONFLICT, message)
    }

    /// 422 with the offending fields.
    pub fn validation(fields: Vec<FieldError>) -> Self {
        let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        let message = format!("invalid request: {}", names.join(", "));
        Self {
            fields,
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code::VALIDATION_FAILED,
                message,
            )
        }
    }

    pub fn too_many_requests(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                code::TOO_MANY_REQUESTS,
                message,
            )
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code::UNAVAILABLE, message)
    }

    /// A 503 for a service at its capacity: retry after `retry_after_secs`.
    pub fn busy(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs.max(1)),
            ..Self::unavailable(message)
        }
    }

    /// A 500 whose cause is logged with its whole chain and replaced by a generic message.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            code::INTERNAL,
            "internal server error",
        )
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message.clone(),
                fields: self.fields.clone(),
            },
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// The failures every service has, answered the same way by each: a service's error enum
/// carries them in one variant (`Common`), beside its own, and [`common_errors!`] lets `?`
/// take them.
#[derive(Debug, thiserror::Error)]
pub enum CommonError {
    /// The caller may not do this: 403 `forbidden`.
    #[error("{0}")]
    Forbidden(&'static str),
    /// Already in the platform's shape: validation, pagination, a bad request.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// 500 (503 for an outage), the cause logged and never sent.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<CommonError> for ApiError {
    fn from(e: CommonError) -> Self {
        match e {
            CommonError::Forbidden(why) => ApiError::forbidden(why),
            CommonError::Api(api) => api,
            CommonError::Database(e) => e.into(),
        }
    }
}

/// For a service's error enum `$t` with a variant `Common(CommonError)`: `?` on a database
/// error or an [`ApiError`], and `$t::forbidden(why)`.
#[macro_export]
macro_rules! common_errors {
    ($t:ty) => {
        impl From<sqlx::Error> for $t {
            fn from(e: sqlx::Error) -> Self {
                Self::Common($crate::error::CommonError::Database(e))
            }
        }

        impl From<$crate::ApiError> for $t {
            fn from(e: $crate::ApiError) -> Self {
                Self::Common($crate::error::CommonError::Api(e))
            }
        }

        impl $t {
            /// The caller may not do this (403).
            pub fn forbidden(why: &'static str) -> Self {
                Self::Common($crate::error::CommonError::Forbidden(why))
            }
        }
    };
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::from_db(&e)
    }
}

impl ApiError {
    /// The answer to a database error: 503 when the database is unreachable or the pool is
    /// exhausted (the request may succeed later), 422 for text it cannot store, else 500.
    pub fn from_db(e: &sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut => {
                tracing::warn!("database pool exhausted");
                Self::unavailable("the service is overloaded, retry later")
            }
            // The database is down or restarting: the request may succeed later, so 503, not 500.
            sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
                tracing::warn!(error = %e, "the database is unreachable");
                Self::unavailable("the database is unavailable, retry later")
            }
            sqlx::Error::Database(db)
                if db.code().is_some_and(|c| {
                    c.starts_with("08") || c.starts_with("53") || c.starts_with("57P")
                }) =>
            {
                tracing::warn!(error = %e, "the database is unavailable");
                Self::unavailable("the database is unavailable, retry later")
            }
            // 22021 (text with a NUL byte) and 22P05 (jsonb with \u0000): input PostgreSQL cannot
            // store, which a service let through; the client's to fix, not a server error.
            sqlx::Error::Database(db)
                if db.code().is_some_and(|c| c == "22021" || c == "22P05") =>
            {
                tracing::warn!(error = %e, "input the database cannot store");
                Self::validation(vec![FieldError::new(
                    "body",
                    "text must not contain the NUL character (U+0000)",
                )])
            }
            other => Self::internal(other),
        }
    }
}

/// Collects field errors so that one 422 lists every problem of a request, not just the first.
#[derive(Debug, Default)]
pub struct Validator {
    fields: Vec<FieldError>,
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `message` for `field` unless `ok`.
    pub fn check(&mut self, ok: bool, field: &str, message: &str) -> &mut Self {
        if !ok {
            self.fields.push(FieldError::new(field, message));
        }
        self
    }

    pub fn push(&mut self, field: &str, message: impl Into<String>) -> &mut Self {
        self.fields.push(FieldError::new(field, message));
        self
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.fields.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.fields))
        }
    }
}
