//! The auth service's errors and how each answers over HTTP. 5xx causes are logged, never sent.

use axum::response::{IntoResponse, Response};
use platform::error::CommonError;
use platform::{ApiError, FieldError};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Unknown email or wrong password: one message for both, so emails cannot be enumerated.
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("invalid or expired refresh token")]
    InvalidRefreshToken,
    #[error("missing or invalid access token")]
    Unauthenticated,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("a user with this email already exists")]
    EmailTaken,
    /// In the shared topology the legacy foreign keys stay: a user still referenced by a row
    /// whose key is `ON DELETE RESTRICT` (a payment's sender) cannot be deleted.
    #[error("the user cannot be deleted: {}", still_referenced_by(.constraint))]
    UserReferenced { constraint: String },
    #[error("too many failed attempts, retry later")]
    Throttled { retry_after_secs: u64 },
    /// Every password-hashing worker is busy and the queue is full.
    #[error("too many sign-ins at once, retry shortly")]
    Busy { retry_after_secs: u64 },
    #[error("invalid request")]
    Validation(Vec<FieldError>),
    /// Forbidden, the platform's own errors (validation, pagination), the database.
    #[error(transparent)]
    Common(#[from] CommonError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let message = e.to_string();
        match e {
            AuthError::InvalidCredentials => ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                message,
            ),
            AuthError::InvalidRefreshToken => ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "invalid_refresh_token",
                message,
            ),
            AuthError::Unauthenticated => ApiError::unauthorized(message),
            AuthError::NotFound(_) => ApiError::not_found(message),
            AuthError::EmailTaken => {
                ApiError::new(axum::http::StatusCode::CONFLICT, "email_taken", message)
            }
            AuthError::UserReferenced { .. } => {
                ApiError::new(axum::http::StatusCode::CONFLICT, "user_referenced", message)
            }
            AuthError::Throttled { retry_after_secs } => {
                ApiError::too_many_requests(message, retry_after_secs)
            }
            AuthError::Busy { retry_after_secs } => ApiError::busy(message, retry_after_secs),
            AuthError::Validation(fields) => ApiError::validation(fields),
            AuthError::Common(e) => e.into(),
            AuthError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

/// Why a foreign key keeps a user, for the 409's message.
fn still_referenced_by(constraint: &str) -> String {
    match constraint {
        "payments_sender_id_fkey" => "they sent payments, and the shared database keeps every \
             payment's sender (payments_sender_id_fkey, ON DELETE RESTRICT)"
            .to_string(),
        other => format!("rows of another table still reference them ({other})"),
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let mut response = ApiError::from(self).into_response();
        if response.status() == axum::http::StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

platform::common_errors!(AuthError);

pub type Result<T, E = AuthError> = std::result::Result<T, E>;
