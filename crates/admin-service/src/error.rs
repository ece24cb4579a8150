//! The admin service's errors and how each answers over HTTP. 5xx causes are logged by
//! [`ApiError`], never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use platform::ApiError;
use platform::error::{CommonError, code};

use crate::audit::chain::ChainError;

/// Codes of this service's own errors; clients match on them.
pub mod codes {
    pub const PRECONDITION_FAILED: &str = "precondition_failed";
    pub const PRECONDITION_REQUIRED: &str = "precondition_required";
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// RFC 9110 13.1.1: the entry changed since the caller read it (or does not exist).
    #[error("{0}")]
    PreconditionFailed(&'static str),
    /// RFC 6585: overwriting an entry needs `If-Match` with the ETag the caller read.
    #[error(
        "this key exists: send If-Match with its ETag to change it (or If-Match: * to overwrite it)"
    )]
    PreconditionRequired,
    /// Auth could not be asked, or answered something unexpected.
    #[error(transparent)]
    Auth(#[from] auth_client::ClientError),
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// Forbidden, the platform's own errors (validation, pagination), the database.
    #[error(transparent)]
    Common(#[from] CommonError),
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        let message = e.to_string();
        match e {
            AdminError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, code::NOT_FOUND, message)
            }
            AdminError::PreconditionFailed(_) => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                codes::PRECONDITION_FAILED,
                message,
            ),
            AdminError::PreconditionRequired => ApiError::new(
                StatusCode::PRECONDITION_REQUIRED,
                codes::PRECONDITION_REQUIRED,
                message,
            ),
            AdminError::Auth(e) => e.into(),
            AdminError::Common(e) => e.into(),
            AdminError::Chain(ChainError::Database(e)) => e.into(),
            AdminError::Chain(e) => ApiError::internal(e),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

platform::common_errors!(AdminError);

pub type Result<T, E = AdminError> = std::result::Result<T, E>;
