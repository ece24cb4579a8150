//! The sandbox's errors and how each answers over HTTP. Like every API of the platform, errors
//! are `{"error": {"code", "message"}}`; 5xx causes are logged, never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use platform::ApiError;
use platform::error::code;
use rust_decimal::Decimal;

/// The code of a 409 for a reference already charged with another amount or currency.
pub const REFERENCE_REUSED: &str = "reference_reused";

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The reference already names a charge of another amount or currency.
    #[error("this reference was already used for a charge of {amount} {currency}")]
    ReferenceReused { amount: Decimal, currency: String },
    #[error("no charge has this reference")]
    NotFound,
    /// The deliberate failure of a 5000.xx charge's first POST.
    #[error("simulated processor failure: nothing was charged; retry with the same reference")]
    SimulatedFailure,
    #[error("cannot write the data file {0}")]
    DataFile(String),
    #[error("a charge's processing stopped unexpectedly: {0}")]
    Crashed(String),
    /// Validation errors, already in the platform's shape.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<SandboxError> for ApiError {
    fn from(e: SandboxError) -> Self {
        let message = e.to_string();
        match e {
            SandboxError::ReferenceReused { .. } => {
                ApiError::new(StatusCode::CONFLICT, REFERENCE_REUSED, message)
            }
            SandboxError::NotFound => ApiError::not_found(message),
            SandboxError::SimulatedFailure => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, code::INTERNAL, message)
            }
            SandboxError::DataFile(_) | SandboxError::Crashed(_) => ApiError::internal(message),
            SandboxError::Api(api) => api,
        }
    }
}

impl IntoResponse for SandboxError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

pub type Result<T, E = SandboxError> = std::result::Result<T, E>;
