//! The access token's claims: what every service reads from a verified JWT.

use serde::{Deserialize, Serialize};

/// `role` of a token issued to a service client (client credentials), never to an end user.
pub const SERVICE_ROLE: &str = "SERVICE";

/// Claims of an access token signed by auth (EdDSA, `kid` in the header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// User id, or `service:<client id>` for a service credential.
    pub sub: String,
    /// The user's email; absent for a service credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `ADMIN`, `CUSTOMER`, `VENDOR`, or `SERVICE`.
    pub role: String,
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
}
