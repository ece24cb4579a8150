//! The adapter for `psp-sandbox` (crates/psp-sandbox): `POST /charges`, `GET /charges/{ref}`,
//! and webhooks signed like Stripe's (`PSP-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
//! "<t>.<body>">`).

use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use hmac::{Hmac, Mac};
use platform::config::{ExposeSecret, SecretString};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{Charge, ChargeRequest, ChargeStatus, PaymentProvider, PspError, WebhookError};

/// The most `v1` signatures of one header that are checked.
const MAX_SIGNATURES: usize = 5;

/// The header a webhook's signature comes in.
pub const SIGNATURE_HEADER: &str = "psp-signature";

pub struct SandboxProvider {
    base: String,
    http: reqwest::Client,
    secret: SecretString,
    tolerance: Duration,
}

impl SandboxProvider {
    pub fn new(
        base: &str,
        secret: SecretString,
        timeout: Duration,
        tolerance: Duration,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(2).min(timeout))
                .timeout(timeout)
                .user_agent(concat!("mfe-payments/", env!("CARGO_PKG_VERSION")))
                .build()?,
            secret,
            tolerance,
        })
    }

    fn charges_url(&self, reference: Option<&str>) -> Result<reqwest::Url, PspError> {
        let mut url = reqwest::Url::parse(&format!("{}/charges", self.base)).map_err(|e| {
            PspError::Refused {
                status: 0,
                message: format!("bad provider URL: {e}"),
            }
        })?;
        if let Some(reference) = reference
            && let Ok(mut segments) = url.path_segments_mut()
        {
            segments.push(reference);
        }
        Ok(url)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChargeBody<'a> {
    reference: &'a str,
    amount: String,
    currency: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCharge {
    id: String,
    reference: String,
    status: String,
    decline_code: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct WireEvent {
    data: WireCharge,
}

impl WireCharge {
    fn into_charge(self) -> Result<Charge, String> {
        let status = match self.status.as_str() {
            "succeeded" => ChargeStatus::Succeeded,
            "pending" => ChargeStatus::Pending,
            "declined" => ChargeStatus::Declined,
            other => return Err(format!("unknown charge status {other:?}")),
        };
        Ok(Charge {
            id: self.id,
            reference: self.reference,
            status,
            decline_code: self.decline_code,
            message: self.message,
        })
    }
}

/// Answers after which a charge may exist: 5xx, 429, 408 (timed out), and 409 (a charge under
/// this reference exists, or the same request is still being processed). The reconciler looks
/// the charge up instead of the payment being failed.
fn is_unknown(status: StatusCode) -> bool {
    status.is_server_error()
        || matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT | StatusCode::CONFLICT
        )
}

fn observe(call: &'static str, started: Instant, outcome: &'static str) {
    metrics::histogram!("psp_request_duration_seconds", "call" => call, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
}

async fn read_charge(response: reqwest::Response) -> Result<Charge, PspError> {
    let wire: WireCharge = response
        .json()
        .await
        .map_err(|e| PspError::Unknown(format!("unreadable answer: {e}")))?;
    wire.into_charge().map_err(PspError::Unknown)
}

async fn refused(response: reqwest::Response) -> PspError {
    let status = response.status().as_u16();
    let message = response.text().await.unwrap_or_default();
    PspError::Refused {
        status,
        message: message.chars().take(500).collect(),
    }
}

impl PaymentProvider for SandboxProvider {
    fn charge<'a>(&'a self, request: &'a ChargeRequest) -> BoxFuture<'a, Result<Charge, PspError>> {
        Box::pin(async move {
            let started = Instant::now();
            let body = ChargeBody {
                reference: &request.reference,
                amount: crate::money::show(request.amount),
                currency: &request.currency,
                description: request.description.as_deref(),
            };
            let url = self.charges_url(None)?;
            let request = self.http.post(url).json(&body);
            let response = match platform::otel::send("POST /charges", request).await {
                Ok(response) => response,
                Err(e) => {
                    observe("charge", started, "unknown");
                    return Err(PspError::Unknown(e.to_string()));
                }
            };
            let status = response.status();
            if status.is_success() {
                let charge = read_charge(response).await;
                observe(
                    "charge",
                    started,
                    if charge.is_ok() { "ok" } else { "unknown" },
                );
                charge
            } else if is_unknown(status) {
                observe("charge", started, "unknown");
                Err(PspError::Unknown(format!("the provider answered {status}")))
            } else {
                observe("charge", started, "refused");
                Err(refused(response).await)
            }
        })
    }

    fn charge_status<'a>(
        &'a self,
        reference: &'a str,
    ) -> BoxFuture<'a, Result<Option<Charge>, PspError>> {
        Box::pin(async move {
            let started = Instant::now();
            let url = self.charges_url(Some(reference))?;
            let request = self.http.get(url);
            let response = match platform::otel::send("GET /charges/{reference}", request).await {
                Ok(response) => response,
                Err(e) => {
                    observe("status", started, "unknown");
                    return Err(PspError::Unknown(e.to_string()));
                }
            };
            let status = response.status();
            let result = if status == StatusCode::NOT_FOUND {
                Ok(None)
            } else if status.is_success() {
                read_charge(response).await.map(Some)
            } else if is_unknown(status) {
                Err(PspError::Unknown(format!("the provider answered {status}")))
            } else {
                Err(refused(response).await)
            };
            observe(
                "status",
                started,
                if result.is_ok() { "ok" } else { "unknown" },
            );
            result
        })
    }

    fn read_webhook(
        &self,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<Charge, WebhookError> {
        verify_signature(
            self.secret.expose_secret().as_bytes(),
            signature,
            body,
            now,
            self.tolerance,
        )?;
        let event: WireEvent = serde_json::from_slice(body).map_err(|_| WebhookError::Malformed)?;
        event
            .data
            .into_charge()
            .map_err(|_| WebhookError::Malformed)
    }
}

/// Checks `t=<unix>,v1=<hex>` (several `v1` allowed, as during a secret rotation): the HMAC of
/// `"<t>.<body>"` must match one of them, in constant time, and `t` must be within `tolerance`
/// of `now` either way.
pub fn verify_signature(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), WebhookError> {
    let header = header.ok_or(WebhookError::MissingSignature)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            // A handful covers a secret rotation; more would only cost HMACs.
            Some(("v1", v)) if signatures.len() < MAX_SIGNATURES => {
                signatures.extend(hex::decode(v).ok())
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(WebhookError::BadSignature)?;
    if signatures.is_empty() {
        return Err(WebhookError::BadSignature);
    }
    let age = now.abs_diff(timestamp);
    if age > tolerance.as_secs() {
        return Err(WebhookError::Stale);
    }
    let matches = signatures.iter().any(|signature| {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
            return false;
        };
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(signature).is_ok()
    });
    if matches {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
    }

    const TOLERANCE: Duration = Duration::from_secs(300);

    #[test]
    fn a_fresh_signature_of_the_body_passes() {
        let header = sign(b"secret", 1000, b"{}");
        assert_eq!(
            verify_signature(b"secret", Some(&header), b"{}", 1100, TOLERANCE),
            Ok(())
        );
        let rotated = format!("{},v1=00ff", header);
        assert_eq!(
            verify_signature(b"secret", Some(&rotated), b"{}", 1000, TOLERANCE),
            Ok(())
        );
    }

    #[test]
    fn forged_stale_or_missing_signatures_are_refused() {
        let header = sign(b"secret", 1000, b"{}");
        let check = |h: Option<&str>, body: &[u8], now| {
            verify_signature(b"secret", h, body, now, TOLERANCE)
        };
        assert_eq!(
            check(None, b"{}", 1000),
            Err(WebhookError::MissingSignature)
        );
        assert_eq!(
            check(Some(&header), b"{ }", 1000),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(check(Some(&header), b"{}", 1301), Err(WebhookError::Stale));
        assert_eq!(check(Some(&header), b"{}", 699), Err(WebhookError::Stale));
        let other = sign(b"other", 1000, b"{}");
        assert_eq!(
            check(Some(&other), b"{}", 1000),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            check(Some("t=1000"), b"{}", 1000),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            check(Some("garbage"), b"{}", 1000),
            Err(WebhookError::BadSignature)
        );
        // The timestamp is signed too: moving it breaks the signature.
        let moved = header.replace("t=1000", "t=1001");
        assert_eq!(
            check(Some(&moved), b"{}", 1000),
            Err(WebhookError::BadSignature)
        );
    }
}
