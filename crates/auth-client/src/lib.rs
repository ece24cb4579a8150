//! What every service other than auth needs from auth, in one place so that they all trust tokens
//! and ask about users the same way.
//!
//! - [`Verifier`] checks the platform's access tokens locally with the public keys auth publishes
//!   at `/.well-known/jwks.json`: a request to a service costs no round trip to auth, and a
//!   service keeps serving signed-in users for as long as it holds auth's keys.
//! - [`Caller`] is the axum extractor that turns `Authorization: Bearer` into verified claims,
//!   answering 401 (bad token) or 503 (keys unavailable) in the platform's error shape.
//! - [`AuthClient`] asks auth about users over HTTP (`/auth/me`, `/users/{id}`, `/users?email=`), with the TTL cache
//!   of the seed's section 4.3, so that a page listing many payments does not ask auth once per row.
//!
//! Both talk to auth without TLS (loopback or a private network) and with short timeouts: a slow
//! auth must turn into a quick 503, not into requests piling up behind it.

mod client;
mod extract;
mod link;
mod verify;

use std::time::Duration;

use reqwest::Url;

pub use client::{AUTH_UNAVAILABLE, AuthClient, ClientError, ServiceCredentials};
pub use extract::{Caller, CallerRejection};
pub use link::AuthLink;
pub use verify::{DEFAULT_AUDIENCE, DEFAULT_ISSUER, InvalidToken, Verifier, VerifyError};

/// Why a [`Verifier`] or an [`AuthClient`] cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the auth service URL {url:?} is not an http(s) base URL")]
    InvalidUrl { url: String },
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Default time limit of one request to auth.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

fn base_url(url: &str) -> Result<Url, BuildError> {
    let invalid = || BuildError::InvalidUrl {
        url: url.to_string(),
    };
    let mut parsed = Url::parse(url).map_err(|_| invalid())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.cannot_be_a_base() {
        return Err(invalid());
    }
    parsed.set_query(None);
    parsed.set_fragment(None);
    Ok(parsed)
}

/// `base` with `segments` appended as path segments, each percent-encoded, so that an id can
/// never change which route is called.
fn endpoint<'a>(base: &Url, segments: impl IntoIterator<Item = &'a str>) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

fn http_client() -> Result<reqwest::Client, BuildError> {
    Ok(reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(DEFAULT_TIMEOUT)
        .user_agent(concat!("mfe-auth-client/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// An error and its causes on one line: reqwest's own message hides why a connection failed.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_the_base_path_and_encode_ids() {
        let base = base_url("http://auth.local:3001/").unwrap();
        assert_eq!(
            endpoint(&base, [".well-known", "jwks.json"]).as_str(),
            "http://auth.local:3001/.well-known/jwks.json"
        );
        let prefixed = base_url("http://gw/auth?x=1").unwrap();
        assert_eq!(
            endpoint(&prefixed, ["users", "a/b?c"]).as_str(),
            "http://gw/auth/users/a%2Fb%3Fc"
        );
    }

    #[test]
    fn only_http_base_urls_are_accepted() {
        assert!(base_url("localhost:3001").is_err());
        assert!(base_url("mailto:a@b.c").is_err());
        assert!(base_url("not a url").is_err());
        assert!(base_url("https://auth").is_ok());
    }
}
