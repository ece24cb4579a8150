//! The profile service's errors and how each answers over HTTP. 5xx causes are logged by
//! [`ApiError`], never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use platform::ApiError;
use platform::error::code;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("a service credential has no profile")]
    NoUser,
    /// A profile its caller may not see answers the same, so profiles cannot be probed.
    #[error("Profile not found")]
    ProfileNotFound,
    /// Auth says the caller's user no longer exists.
    #[error("User not found")]
    UserNotFound,
    #[error("{0}")]
    Forbidden(&'static str),
    /// Auth could not be asked (503), or answered something unexpected.
    #[error(transparent)]
    Auth(#[from] auth_client::ClientError),
    /// Validation and pagination errors, already in the platform's shape.
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<ProfileError> for ApiError {
    fn from(e: ProfileError) -> Self {
        let message = e.to_string();
        match e {
            ProfileError::NoUser | ProfileError::Forbidden(_) => {
                ApiError::new(StatusCode::FORBIDDEN, code::FORBIDDEN, message)
            }
            ProfileError::ProfileNotFound | ProfileError::UserNotFound => {
                ApiError::new(StatusCode::NOT_FOUND, code::NOT_FOUND, message)
            }
            ProfileError::Auth(e) => e.into(),
            ProfileError::Api(api) => api,
            ProfileError::Database(e) => e.into(),
        }
    }
}

impl IntoResponse for ProfileError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

pub type Result<T, E = ProfileError> = std::result::Result<T, E>;
