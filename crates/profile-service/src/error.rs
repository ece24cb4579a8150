//! The profile service's errors and how each answers over HTTP. 5xx causes are logged by
//! [`ApiError`], never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use platform::ApiError;
use platform::error::{CommonError, code};

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
    /// Auth could not be asked (503), or answered something unexpected.
    #[error(transparent)]
    Auth(#[from] auth_client::ClientError),
    /// Forbidden, the platform's own errors (validation, pagination), the database.
    #[error(transparent)]
    Common(#[from] CommonError),
}

impl From<ProfileError> for ApiError {
    fn from(e: ProfileError) -> Self {
        let message = e.to_string();
        match e {
            ProfileError::NoUser => ApiError::new(StatusCode::FORBIDDEN, code::FORBIDDEN, message),
            ProfileError::ProfileNotFound | ProfileError::UserNotFound => {
                ApiError::new(StatusCode::NOT_FOUND, code::NOT_FOUND, message)
            }
            ProfileError::Auth(e) => e.into(),
            ProfileError::Common(e) => e.into(),
        }
    }
}

impl IntoResponse for ProfileError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

platform::common_errors!(ProfileError);

pub type Result<T, E = ProfileError> = std::result::Result<T, E>;
