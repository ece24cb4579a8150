//! The payments service's errors and how each answers over HTTP. 5xx causes are logged by
//! [`ApiError`], never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use platform::ApiError;
use platform::error::{CommonError, code};

use crate::status::Status;

/// Codes of this service's own errors; clients match on them.
pub mod codes {
    pub const INVALID_TRANSITION: &str = "invalid_transition";
    pub const IDEMPOTENCY_KEY_REUSED: &str = "idempotency_key_reused";
    pub const IDEMPOTENCY_KEY_IN_USE: &str = "idempotency_key_in_use";
    pub const INVALID_SIGNATURE: &str = "invalid_signature";
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("a service credential cannot make payments")]
    NoUser,
    #[error("Sender not found")]
    SenderNotFound,
    #[error("Recipient not found")]
    RecipientNotFound,
    /// Also what a payment its caller may not see answers, so payments cannot be probed.
    #[error("Payment not found")]
    PaymentNotFound,
    #[error("a {from} payment cannot become {to}")]
    InvalidTransition { from: Status, to: Status },
    #[error("this Idempotency-Key was used with another request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed; retry later")]
    IdempotencyKeyInUse,
    #[error("webhook refused: {0}")]
    InvalidSignature(&'static str),
    /// Auth could not be asked (503 `auth_unavailable`), or answered something unexpected.
    #[error(transparent)]
    Auth(#[from] auth_client::ClientError),
    /// Forbidden, the platform's own errors (validation, pagination), the database.
    #[error(transparent)]
    Common(#[from] CommonError),
}

impl From<PaymentError> for ApiError {
    fn from(e: PaymentError) -> Self {
        let message = e.to_string();
        match e {
            PaymentError::NoUser => ApiError::new(StatusCode::FORBIDDEN, code::FORBIDDEN, message),
            PaymentError::SenderNotFound
            | PaymentError::RecipientNotFound
            | PaymentError::PaymentNotFound => {
                ApiError::new(StatusCode::NOT_FOUND, code::NOT_FOUND, message)
            }
            PaymentError::InvalidTransition { .. } => {
                ApiError::new(StatusCode::CONFLICT, codes::INVALID_TRANSITION, message)
            }
            PaymentError::IdempotencyKeyReused => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                codes::IDEMPOTENCY_KEY_REUSED,
                message,
            ),
            PaymentError::IdempotencyKeyInUse => ApiError {
                retry_after: Some(1),
                ..ApiError::new(StatusCode::CONFLICT, codes::IDEMPOTENCY_KEY_IN_USE, message)
            },
            PaymentError::InvalidSignature(_) => {
                ApiError::new(StatusCode::UNAUTHORIZED, codes::INVALID_SIGNATURE, message)
            }
            PaymentError::Auth(e) => e.into(),
            PaymentError::Common(e) => e.into(),
        }
    }
}

impl IntoResponse for PaymentError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

platform::common_errors!(PaymentError);

pub type Result<T, E = PaymentError> = std::result::Result<T, E>;
