//! Every admin route is for ADMINs: 401 without a valid token, 403 for anyone else (customers,
//! vendors, service credentials). A refused request is itself audited: `admin.access_denied`
//! through admin's outbox, with the caller, the route and the address. So that a flood of bad
//! requests cannot flood the log, each address gets a number of such rows a minute; the refusals
//! past it are counted into the next row written for that address.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use auth_client::Caller;
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use contracts::events::{ADMIN_ACCESS_DENIED, AccessDenied};
use platform::ApiError;
use platform::extract::ClientInfo;

use crate::AppState;
use crate::outbox::OUTBOX;

/// The ADMIN calling an admin route (put there by [`require_admin`]).
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl Admin {
    /// The ADMIN's user id (`updatedBy`).
    pub fn id(&self) -> &str {
        self.0.subject()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Admin>()
            .cloned()
            .ok_or_else(|| ApiError::internal("an admin route is missing its access check"))
    }
}

/// The layer on every admin route.
pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let caller = match Caller::from_request_parts(&mut parts, &state).await {
        Ok(caller) => caller,
        Err(rejection) => {
            // 503 (auth's keys cannot be fetched) is not a refusal of the caller.
            if rejection.0.status == StatusCode::UNAUTHORIZED {
                record(&state, &parts, None, StatusCode::UNAUTHORIZED).await;
            }
            return rejection.into_response();
        }
    };
    if !caller.is_admin() {
        record(&state, &parts, Some(&caller), StatusCode::FORBIDDEN).await;
        return ApiError::forbidden("admin routes are for ADMIN users only").into_response();
    }
    parts.extensions.insert(Admin(caller));
    next.run(Request::from_parts(parts, body)).await
}

async fn record(state: &AppState, parts: &Parts, caller: Option<&Caller>, status: StatusCode) {
    let client = ClientInfo::of(parts, state.settings.trust_forwarded_for);
    let address = client.ip.clone().unwrap_or_default();
    let Some(suppressed) = state.denials.admit(&address) else {
        metrics::counter!("admin_access_denied_total", "audited" => "false").increment(1);
        return;
    };
    metrics::counter!("admin_access_denied_total", "audited" => "true").increment(1);
    let denied = AccessDenied {
        user_id: caller.and_then(|c| c.user_id()).map(str::to_string),
        role: caller.map(|c| match (c.role(), c.service_id()) {
            (Some(role), _) => role.as_str().to_string(),
            (None, Some(service)) => format!("service:{service}"),
            (None, None) => "unknown".to_string(),
        }),
        method: parts.method.to_string(),
        route: parts
            .extensions
            .get::<MatchedPath>()
            .map_or_else(|| parts.uri.path().to_string(), |m| m.as_str().to_string()),
        path: parts.uri.path().chars().take(512).collect(),
        status: status.as_u16(),
        ip_address: client.ip,
        user_agent: client.user_agent,
        suppressed,
    };
    let written = async {
        let mut tx = state.pool.begin().await?;
        OUTBOX.record(&mut tx, ADMIN_ACCESS_DENIED, &denied).await?;
        tx.commit().await
    };
    // The refusal is answered whether or not it could be recorded.
    if let Err(e) = written.await {
        tracing::warn!(error = %e, "a refused admin request could not be audited");
    }
}

/// Per address, how many refusals were audited in the current minute and how many were not.
pub struct DenialLimiter {
    per_minute: u32,
    windows: Mutex<HashMap<String, Window>>,
}

struct Window {
    started: Instant,
    audited: u32,
    suppressed: u64,
}

const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; past it, windows that ended are forgotten, and while none has
/// ended, new addresses share one window (key ""), so memory stays bounded under a flood from many
/// addresses and the log gets `per_minute` rows for all of them together.
const MAX_ADDRESSES: usize = 10_000;

impl DenialLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(refusals suppressed since the last audited one)` when this refusal is to be audited.
    pub fn admit(&self, address: &str) -> Option<u64> {
        let now = Instant::now();
        let mut windows = self.windows.lock().expect("denial limiter lock");
        let mut key = address;
        if windows.len() >= MAX_ADDRESSES && !windows.contains_key(address) {
            windows.retain(|k, w| k.is_empty() || now.duration_since(w.started) < WINDOW);
            if windows.len() >= MAX_ADDRESSES {
                key = "";
            }
        }
        let window = windows.entry(key.to_string()).or_insert(Window {
            started: now,
            audited: 0,
            suppressed: 0,
        });
        if now.duration_since(window.started) >= WINDOW {
            window.started = now;
            window.audited = 0;
        }
        if window.audited < self.per_minute {
            window.audited += 1;
            Some(std::mem::take(&mut window.suppressed))
        } else {
            window.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_past_the_limit_are_counted_into_the_next_audited_one() {
        let limiter = DenialLimiter::new(2);
        assert_eq!(limiter.admit("a"), Some(0));
        assert_eq!(limiter.admit("a"), Some(0));
        assert_eq!(limiter.admit("a"), None);
        assert_eq!(limiter.admit("a"), None);
        assert_eq!(limiter.admit("b"), Some(0), "addresses are counted apart");
        let mut windows = limiter.windows.lock().unwrap();
        windows.get_mut("a").unwrap().started -= WINDOW;
        drop(windows);
        assert_eq!(limiter.admit("a"), Some(2));
    }
}
