//! Webhooks: a charge's final state, POSTed to the payments service and signed the way Stripe
//! signs, so that the receiver can tell the sandbox from anyone else who knows its URL.
//!
//! `PSP-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. The timestamp
//! is inside the signed text so that a captured request cannot be replayed later; every attempt is
//! therefore signed afresh. Delivery retries with a doubling backoff, like a real provider: a
//! receiver that is down for a minute still gets the event.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use platform::config::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::Semaphore;
use utoipa::ToSchema;

use crate::charges::{Charge, ChargeStatus};
use crate::shutdown::Shutdown;

pub const SIGNATURE_HEADER: &str = "PSP-Signature";
/// Attempts per event, the first included.
pub const MAX_ATTEMPTS: u32 = 8;
/// The wait after the first failed attempt; it doubles after each further one.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// How long one attempt may take before it counts as failed.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries in flight at once; more wait their turn rather than open unbounded connections.
const CONCURRENT_DELIVERIES: usize = 32;

/// The `PSP-Signature` header value for `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    #[serde(rename = "charge.succeeded")]
    ChargeSucceeded,
    #[serde(rename = "charge.declined")]
    ChargeDeclined,
}

/// What a webhook carries: the charge as it was when it reached its final state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// `evt_` and a UUID without dashes; the same on every attempt, so receivers can deduplicate.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub created_at: DateTime<Utc>,
    pub data: Charge,
}

impl Event {
    /// The event announcing `charge`'s final state; `None` while it is pending.
    pub fn for_charge(charge: &Charge, at: DateTime<Utc>) -> Option<Self> {
        let kind = match charge.status {
            ChargeStatus::Succeeded => EventType::ChargeSucceeded,
            ChargeStatus::Declined => EventType::ChargeDeclined,
            ChargeStatus::Pending => return None,
        };
        Some(Self {
            id: format!("evt_{}", uuid::Uuid::new_v4().simple()),
            kind,
            created_at: at,
            data: charge.clone(),
        })
    }
}

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed; the event is given up.
    Abandoned,
    /// The sandbox is stopping; the event is neither delivered nor given up.
    Interrupted,
}

/// Sends events to the configured URL.
#[derive(Clone)]
pub struct Webhooks {
    client: reqwest::Client,
    url: String,
    secret: Arc<SecretString>,
    slots: Arc<Semaphore>,
}

impl Webhooks {
    pub fn new(url: String, secret: SecretString) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the webhook client: {e}"))?;
        Ok(Self {
            client,
            url,
            secret: Arc::new(secret),
            slots: Arc::new(Semaphore::new(CONCURRENT_DELIVERIES)),
        })
    }

    /// Delivers `event`, retrying a non-2xx answer or a connection error up to
    /// [`MAX_ATTEMPTS`] times, each attempt signed with a fresh timestamp.
    pub async fn deliver(&self, event: &Event, shutdown: &Shutdown) -> Delivery {
        let body = match serde_json::to_vec(event) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(event = %event.id, error = %e, "cannot serialise a webhook event");
                return Delivery::Abandoned;
            }
        };
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=MAX_ATTEMPTS {
            let outcome = tokio::select! {
                outcome = self.attempt(&body) => outcome,
                () = shutdown.wait() => return Delivery::Interrupted,
            };
            match outcome {
                Ok(()) => {
                    tracing::info!(
                        event = %event.id, reference = %event.data.reference, attempt,
                        "webhook delivered"
                    );
                    return Delivery::Delivered;
                }
                Err(reason) if attempt < MAX_ATTEMPTS => {
                    tracing::warn!(
                        event = %event.id, attempt, %reason,
                        retry_in_ms = backoff.as_millis() as u64, "webhook attempt failed"
                    );
                }
                Err(reason) => {
                    tracing::error!(
                        event = %event.id, reference = %event.data.reference, attempt, %reason,
                        "webhook abandoned"
                    );
                    return Delivery::Abandoned;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.wait() => return Delivery::Interrupted,
            }
            backoff = backoff.saturating_mul(2);
        }
        Delivery::Abandoned
    }

    async fn attempt(&self, body: &[u8]) -> Result<(), String> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| "the delivery slots are closed".to_string())?;
        let signature = sign(
            self.secret.expose_secret().as_bytes(),
            Utc::now().timestamp(),
            body,
        );
        let request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body.to_vec());
        let response = platform::otel::send("POST webhook", request)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered {status}"))
        }
    }
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").field("url", &self.url).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_stripes_scheme() {
        // Computed independently: Python's hmac.new(secret, b"1700000000.{}", sha256).hexdigest().
        let header = sign(b"whsec_test_secret_0123", 1_700_000_000, b"{}");
        assert_eq!(
            header,
            "t=1700000000,v1=a775949c9d573b4191ed89341b629d170bf8c26606ee418e5b521f069dfb5262"
        );
        assert_ne!(
            sign(b"whsec_test_secret_0123", 1_700_000_001, b"{}"),
            header
        );
        assert_ne!(sign(b"another_secret_012345", 1_700_000_000, b"{}"), header);
    }
}
