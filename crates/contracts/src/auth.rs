//! The access token: its claims, what they mean, and how it travels (`Authorization: Bearer`).
//! Auth signs tokens and every other service verifies them; both read them through this module so
//! that a token means the same thing everywhere.

use serde::{Deserialize, Serialize};

use crate::users::Role;

/// `role` of a token issued to a service client (client credentials), never to an end user.
pub const SERVICE_ROLE: &str = "SERVICE";
/// A service credential's subject is `service:<client id>`.
pub const SERVICE_SUBJECT_PREFIX: &str = "service:";
/// `iss` of auth's tokens unless `AUTH_JWT_ISSUER` says otherwise.
pub const DEFAULT_ISSUER: &str = "mfe-auth";
/// `aud` of auth's tokens unless `AUTH_JWT_AUDIENCE` says otherwise.
pub const DEFAULT_AUDIENCE: &str = "mfe-platform";

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

impl AccessClaims {
    /// The service client's id of a service credential; `None` for an end user.
    pub fn service_id(&self) -> Option<&str> {
        if self.role == SERVICE_ROLE {
            self.sub.strip_prefix(SERVICE_SUBJECT_PREFIX)
        } else {
            None
        }
    }

    /// A service credential (client credentials), not an end user.
    pub fn is_service(&self) -> bool {
        self.service_id().is_some()
    }

    /// The end user's id; `None` for a service credential, whose subject is no user.
    pub fn user_id(&self) -> Option<&str> {
        (self.role != SERVICE_ROLE).then_some(self.sub.as_str())
    }

    /// The end user's role; `None` for a service credential (or a role this version does not
    /// know, which then grants nothing).
    pub fn user_role(&self) -> Option<Role> {
        self.user_id()?;
        self.role.parse().ok()
    }

    pub fn is_admin(&self) -> bool {
        self.user_role() == Some(Role::Admin)
    }
}

/// The token of an `Authorization` header value `Bearer <token>` (RFC 6750: the scheme is
/// case-insensitive, surrounding blanks are ignored); `None` for any other shape.
pub fn bearer_token(header_value: &str) -> Option<&str> {
    let (scheme, token) = header_value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str, role: &str) -> AccessClaims {
        AccessClaims {
            sub: sub.into(),
            email: None,
            role: role.into(),
            iss: DEFAULT_ISSUER.into(),
            aud: DEFAULT_AUDIENCE.into(),
            exp: 0,
            iat: 0,
            jti: "j".into(),
        }
    }

    #[test]
    fn a_bearer_header_is_read_whatever_the_scheme_case() {
        for value in ["Bearer abc", "bearer abc", "BEARER abc", "  Bearer   abc  "] {
            assert_eq!(bearer_token(value), Some("abc"), "{value:?}");
        }
        for value in ["Basic abc", "Bearer", "Bearer ", "abc", "Bearer a b", ""] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }

    #[test]
    fn roles_mean_the_same_everywhere() {
        let admin = claims("u1", "ADMIN");
        assert!(admin.is_admin() && !admin.is_service());
        assert_eq!(admin.user_id(), Some("u1"));
        let service = claims("service:payments", SERVICE_ROLE);
        assert!(service.is_service() && !service.is_admin());
        assert_eq!(service.service_id(), Some("payments"));
        assert_eq!(service.user_id(), None);
        assert_eq!(service.user_role(), None);
        // A SERVICE role without the service subject is neither a service nor a user.
        let odd = claims("u2", SERVICE_ROLE);
        assert!(!odd.is_service() && odd.user_id().is_none());
        assert_eq!(claims("u3", "ROOT").user_role(), None);
    }
}
