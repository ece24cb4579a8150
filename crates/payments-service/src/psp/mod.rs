//! The payment service provider, a third party, behind a trait: the worker, the reconciler and
//! the webhook endpoint speak [`PaymentProvider`], and [`sandbox::SandboxProvider`] is the adapter
//! for `psp-sandbox` over HTTP. A real provider would be one more adapter.
//!
//! Every charge carries a reference (the payment's id) that the provider deduplicates on, so
//! asking again with the same reference can never charge twice.

pub mod sandbox;

use futures_util::future::BoxFuture;
use rust_decimal::Decimal;

/// What to charge.
#[derive(Debug, Clone)]
pub struct ChargeRequest {
    /// The idempotency reference: the payment's id.
    pub reference: String,
    pub amount: Decimal,
    pub currency: String,
    pub description: Option<String>,
}

/// How a charge stands at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeStatus {
    Succeeded,
    /// Accepted, not settled yet: a webhook or the reconciler learns the end.
    Pending,
    Declined,
}

impl ChargeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ChargeStatus::Succeeded => "succeeded",
            ChargeStatus::Pending => "pending",
            ChargeStatus::Declined => "declined",
        }
    }
}

/// A charge as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The provider's id (`psp_transaction_id`).
    pub id: String,
    pub reference: String,
    pub status: ChargeStatus,
    /// Why it was declined (`insufficient_funds`, `card_declined`, ...).
    pub decline_code: Option<String>,
    pub message: Option<String>,
}

impl Charge {
    /// The payment's `failure_reason` for a declined charge.
    pub fn failure_reason(&self) -> String {
        match (&self.decline_code, &self.message) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.clone(),
            (None, Some(message)) => message.clone(),
            (None, None) => "declined by the provider".to_string(),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PspError {
    /// Timed out, unreachable or a 5xx: the charge may or may not exist. Never retried blindly;
    /// the reconciler asks for it by reference.
    #[error("the provider's answer is unknown: {0}")]
    Unknown(String),
    /// The provider refused the request itself (4xx): asking again the same way will not help.
    #[error("the provider refused the request ({status}): {message}")]
    Refused { status: u16, message: String },
}

/// Why a webhook is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("no signature")]
    MissingSignature,
    #[error("the signature does not match")]
    BadSignature,
    #[error("the signature's timestamp is outside the tolerance")]
    Stale,
    #[error("the body is not an event this service understands")]
    Malformed,
}

/// A payment service provider.
pub trait PaymentProvider: Send + Sync + 'static {
    /// Creates the charge, or returns the one already made with this reference.
    fn charge<'a>(&'a self, request: &'a ChargeRequest) -> BoxFuture<'a, Result<Charge, PspError>>;

    /// The charge made with `reference`; `None` when the provider never received it.
    fn charge_status<'a>(
        &'a self,
        reference: &'a str,
    ) -> BoxFuture<'a, Result<Option<Charge>, PspError>>;

    /// Checks a webhook's signature (`signature` is the provider's signature header) and reads
    /// the charge it reports. `now` is the Unix time in seconds.
    fn read_webhook(
        &self,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<Charge, WebhookError>;
}
