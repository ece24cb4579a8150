//! The rules of a new payment's fields. Every broken rule is reported at once (422 naming each
//! field), before anything is claimed or written.

use chrono::{DateTime, Utc};
use platform::ApiError;
use platform::error::Validator;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::money::Amount;

pub const MAX_DESCRIPTION_CHARS: usize = 1000;
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
const MAX_EMAIL_LEN: usize = 254;

/// The legacy `"PaymentType"` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PaymentType {
    /// Charged at once.
    Instant,
    /// Charged at `scheduledAt`.
    Scheduled,
    /// One child payment per `interval`, from `scheduledAt` (or now), until cancelled.
    Recurring,
}

impl PaymentType {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentType::Instant => "instant",
            PaymentType::Scheduled => "scheduled",
            PaymentType::Recurring => "recurring",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Day,
    Week,
    Month,
}

impl Interval {
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
        }
    }

    /// `at` plus `n` intervals; months keep the day where the month has it, else its last day.
    pub fn after(self, at: DateTime<Utc>, n: u32) -> DateTime<Utc> {
        match self {
            Interval::Day => at + chrono::Duration::days(i64::from(n)),
            Interval::Week => at + chrono::Duration::weeks(i64::from(n)),
            Interval::Month => at
                .checked_add_months(chrono::Months::new(n))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }
}

/// The body of `POST /payments`. The sender is the caller.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewPayment {
    /// Found through auth, regardless of case.
    pub recipient_email: String,
    /// A decimal string, 0.01 to 99999999.99, at most 2 decimals (`"12.34"`). A JSON number is
    /// refused: it may already have lost a cent.
    pub amount: String,
    /// Three upper-case letters; `USD` when absent.
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(rename = "type")]
    pub payment_type: PaymentType,
    /// At most 1000 characters.
    #[serde(default)]
    pub description: Option<String>,
    /// A JSON object of at most 16 KiB.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// Required (and in the future) for `scheduled`; optional for `recurring` (the first
    /// occurrence; now when absent); refused for `instant`.
    #[serde(default)]
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Required for `recurring`, refused otherwise.
    #[serde(default)]
    pub interval: Option<Interval>,
}

/// A new payment whose fields follow the rules.
#[derive(Debug, Clone)]
pub struct ValidPayment {
    pub recipient_email: String,
    pub amount: Amount,
    pub currency: String,
    pub payment_type: PaymentType,
    pub description: Option<String>,
    pub metadata: Option<Value>,
    /// When the first charge (or occurrence) is due.
    pub due_at: DateTime<Utc>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub interval: Option<Interval>,
}

pub fn new_payment(p: NewPayment, now: DateTime<Utc>) -> Result<ValidPayment, ApiError> {
    let mut v = Validator::new();
    let email = p.recipient_email.trim().to_string();
    v.check(
        !email.is_empty()
            && email.len() <= MAX_EMAIL_LEN
            && email.contains('@')
            && !email.chars().any(|c| c.is_whitespace() || c.is_control()),
        "recipientEmail",
        "must be an email address",
    );
    let amount = match Amount::parse(&p.amount) {
        Ok(amount) => Some(amount),
        Err(e) => {
            v.push("amount", e.to_string());
            None
        }
    };
    let currency = p.currency.unwrap_or_else(|| "USD".to_string());
    v.check(
        currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase()),
        "currency",
        "must be three upper-case letters (ISO 4217), e.g. USD",
    );
    if let Some(description) = &p.description {
        v.check(
            description.chars().count() <= MAX_DESCRIPTION_CHARS,
            "description",
            "must be at most 1000 characters",
        );
        v.check(
            !description.contains('\0'),
            "description",
            "must not contain NUL characters",
        );
    }
    if let Some(metadata) = &p.metadata {
        check_metadata(&mut v, metadata);
    }
    check_timing(
        &mut v,
        p.payment_type,
        p.scheduled_at,
        p.interval.is_some(),
        now,
    );
    v.finish()?;
    let amount = amount.ok_or_else(|| ApiError::internal("amount validated but missing"))?;
    let scheduled_at = match p.payment_type {
        PaymentType::Instant => None,
        _ => Some(p.scheduled_at.unwrap_or(now)),
    };
    Ok(ValidPayment {
        recipient_email: email,
        amount,
        currency,
        payment_type: p.payment_type,
        description: p.description,
        metadata: p.metadata,
        due_at: scheduled_at.unwrap_or(now),
        scheduled_at,
        interval: p.interval,
    })
}

/// `scheduledAt` and `interval` as the payment's type wants them.
fn check_timing(
    v: &mut Validator,
    payment_type: PaymentType,
    scheduled_at: Option<DateTime<Utc>>,
    has_interval: bool,
    now: DateTime<Utc>,
) {
    match payment_type {
        PaymentType::Instant => {
            v.check(
                scheduled_at.is_none(),
                "scheduledAt",
                "only scheduled and recurring payments have one",
            );
        }
        PaymentType::Scheduled => match scheduled_at {
            None => {
                v.push("scheduledAt", "is required for a scheduled payment");
            }
            Some(at) => {
                v.check(at > now, "scheduledAt", "must be in the future");
            }
        },
        PaymentType::Recurring => {
            if let Some(at) = scheduled_at {
                v.check(at > now, "scheduledAt", "must be in the future");
            }
            v.check(
                has_interval,
                "interval",
                "is required for a recurring payment (day, week or month)",
            );
        }
    }
    if payment_type != PaymentType::Recurring {
        v.check(
            !has_interval,
            "interval",
            "only recurring payments have one",
        );
    }
}

fn check_metadata(v: &mut Validator, metadata: &Value) {
    if !metadata.is_object() {
        v.push("metadata", "must be a JSON object");
        return;
    }
    let text = metadata.to_string();
    v.check(
        text.len() <= MAX_METADATA_BYTES,
        "metadata",
        "must be at most 16 KiB serialized",
    );
    // PostgreSQL's jsonb cannot hold \u0000.
    v.check(
        !text.contains("\\u0000"),
        "metadata",
        "must not contain NUL characters",
    );
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(extra: Value) -> NewPayment {
        let mut base =
            json!({"recipientEmail": "bob@example.com", "amount": "10.00", "type": "instant"});
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    fn fields(result: Result<ValidPayment, ApiError>) -> Vec<String> {
        result
            .unwrap_err()
            .fields
            .into_iter()
            .map(|f| f.field)
            .collect()
    }

    #[test]
    fn a_minimal_instant_payment_is_usd_and_due_now() {
        let now = Utc::now();
        let valid = new_payment(body(json!({})), now).unwrap();
        assert_eq!(valid.currency, "USD");
        assert_eq!(valid.due_at, now);
        assert_eq!(valid.scheduled_at, None);
    }

    #[test]
    fn every_broken_rule_is_named() {
        let now = Utc::now();
        let bad = body(json!({
            "recipientEmail": "not-an-email",
            "amount": "0.001",
            "currency": "usd",
            "description": "x".repeat(1001),
            "metadata": [1],
            "scheduledAt": now.to_rfc3339(),
        }));
        assert_eq!(
            fields(new_payment(bad, now)),
            [
                "recipientEmail",
                "amount",
                "currency",
                "description",
                "metadata",
                "scheduledAt"
            ]
        );
    }

    #[test]
    fn schedules_follow_the_type() {
        let now = Utc::now();
        let past = (now - chrono::Duration::seconds(1)).to_rfc3339();
        let future = (now + chrono::Duration::hours(1)).to_rfc3339();
        let scheduled = |extra| new_payment(body(extra), now);
        assert_eq!(
            fields(scheduled(json!({"type": "scheduled"}))),
            ["scheduledAt"]
        );
        assert_eq!(
            fields(scheduled(json!({"type": "scheduled", "scheduledAt": past}))),
            ["scheduledAt"]
        );
        assert!(scheduled(json!({"type": "scheduled", "scheduledAt": future})).is_ok());
        assert_eq!(
            fields(scheduled(json!({"type": "recurring"}))),
            ["interval"]
        );
        assert_eq!(
            fields(scheduled(
                json!({"type": "scheduled", "scheduledAt": future, "interval": "day"})
            )),
            ["interval"]
        );
        let recurring = scheduled(json!({"type": "recurring", "interval": "week"})).unwrap();
        assert_eq!(recurring.due_at, now);
    }

    #[test]
    fn metadata_is_a_small_object_without_nul() {
        let now = Utc::now();
        let big = json!({"k": "x".repeat(MAX_METADATA_BYTES)});
        assert_eq!(
            fields(new_payment(body(json!({"metadata": big})), now)),
            ["metadata"]
        );
        let nul = json!({"k": "a\u{0}b"});
        assert_eq!(
            fields(new_payment(body(json!({"metadata": nul})), now)),
            ["metadata"]
        );
        assert!(new_payment(body(json!({"metadata": {"order": 42}})), now).is_ok());
    }

    #[test]
    fn months_keep_their_day_or_end_of_month() {
        let jan31: DateTime<Utc> = "2026-01-31T10:00:00Z".parse().unwrap();
        assert_eq!(
            Interval::Month.after(jan31, 1).to_rfc3339(),
            "2026-02-28T10:00:00+00:00"
        );
        assert_eq!(
            Interval::Week.after(jan31, 2).to_rfc3339(),
            "2026-02-14T10:00:00+00:00"
        );
    }
}
