//! A charge as the provider shows it, and the rules a request must meet to create one.
//!
//! Amounts travel as decimal strings and are held as [`Decimal`] with two places: money is never
//! a float, and `"12.3"` and `"12.30"` are the same charge.

use chrono::{DateTime, Utc};
use platform::{ApiError, Validator};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::outcomes::Outcome;

pub const MAX_REFERENCE_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 1000;
/// Whole units of the largest amount, 99999999.99.
const MAX_AMOUNT_UNIT_DIGITS: usize = 8;

/// A charge, as every route and every webhook shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Charge {
    /// The provider's id: `ch_` and a UUID without dashes.
    #[schema(example = "ch_0b6f8a8e2c7d4f0c9a51c2d7e4f3a1b2")]
    pub id: String,
    /// The caller's idempotency reference, e.g. its payment id.
    pub reference: String,
    /// A decimal string with two places.
    #[schema(value_type = String, example = "12.34")]
    pub amount: Decimal,
    /// ISO 4217, upper case.
    #[schema(example = "USD")]
    pub currency: String,
    pub description: Option<String>,
    pub status: ChargeStatus,
    /// Why a `declined` charge was declined; `null` otherwise.
    pub decline_code: Option<DeclineCode>,
    /// Human-readable detail for a declined or pending charge; `null` for a succeeded one.
    pub message: Option<String>,
    /// How many POSTs this reference has received, the first included (a POST that failed with
    /// the simulated 500 counts; one refused with 409 or 422 does not).
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    /// When the charge reached its final state (`succeeded` or `declined`); `null` while pending.
    pub settled_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChargeStatus {
    Succeeded,
    Pending,
    Declined,
}

impl ChargeStatus {
    /// `succeeded` and `declined` never change again; only they are announced by webhook.
    pub fn is_final(self) -> bool {
        self != ChargeStatus::Pending
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeclineCode {
    InsufficientFunds,
    CardDeclined,
}

impl DeclineCode {
    pub fn message(self) -> &'static str {
        match self {
            DeclineCode::InsufficientFunds => "The card has insufficient funds.",
            DeclineCode::CardDeclined => "The card was declined.",
        }
    }
}

/// What a charge looks like right after it is created (and, for a pending one, once the
/// settlement delay is over): status, decline code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: ChargeStatus,
    pub decline_code: Option<DeclineCode>,
    pub message: Option<String>,
}

impl Verdict {
    fn succeeded() -> Self {
        Self {
            status: ChargeStatus::Succeeded,
            decline_code: None,
            message: None,
        }
    }

    fn declined(code: DeclineCode) -> Self {
        Self {
            status: ChargeStatus::Declined,
            decline_code: Some(code),
            message: Some(code.message().to_string()),
        }
    }

    /// The state of a new charge with this outcome.
    pub fn at_creation(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Approved | Outcome::Timeout | Outcome::FailsFirst => Self::succeeded(),
            Outcome::Declined(code) => Self::declined(code),
            Outcome::SettlesApproved | Outcome::SettlesDeclined(_) => Self {
                status: ChargeStatus::Pending,
                decline_code: None,
                message: Some("The charge is awaiting settlement.".to_string()),
            },
        }
    }

    /// The final state of a pending charge with this outcome.
    pub fn at_settlement(outcome: Outcome) -> Self {
        match outcome {
            Outcome::SettlesDeclined(code) | Outcome::Declined(code) => Self::declined(code),
            Outcome::Approved
            | Outcome::SettlesApproved
            | Outcome::Timeout
            | Outcome::FailsFirst => Self::succeeded(),
        }
    }
}

/// The body of `POST /charges`. Fields are taken as strings so that a JSON number for `amount`
/// is refused rather than rounded through a float.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChargeRequest {
    /// The caller's idempotency reference (1-200 characters), e.g. its payment id. A repeated
    /// POST with the same reference returns the existing charge.
    #[schema(example = "pay_7f3c2a", pattern = r"^[^\x00-\x1f\x7f-\x9f]{1,200}$")]
    pub reference: String,
    /// A decimal string from 0.01 to 99999999.99 with at most two decimals; a JSON number is
    /// refused.
    #[schema(
        example = "12.34",
        pattern = r"^0*(?:[1-9][0-9]{0,7}(?:\.[0-9]{1,2})?|0\.(?:0[1-9]|[1-9][0-9]?))$"
    )]
    pub amount: String,
    /// ISO 4217: three upper-case letters.
    #[schema(example = "USD", pattern = r"^[A-Z]{3}$")]
    pub currency: String,
    /// Free text, at most 1000 characters.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub description: Option<String>,
}

/// A request that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCharge {
    pub reference: String,
    pub amount: Decimal,
    pub currency: String,
    pub description: Option<String>,
}

impl ChargeRequest {
    /// Checks every field; one 422 lists all that are wrong.
    pub fn validate(self) -> Result<NewCharge, ApiError> {
        let mut v = Validator::new();
        let reference_chars = self.reference.chars().count();
        v.check(
            (1..=MAX_REFERENCE_CHARS).contains(&reference_chars),
            "reference",
            "must be 1 to 200 characters",
        );
        v.check(
            !self.reference.chars().any(char::is_control),
            "reference",
            "must not contain control characters",
        );
        let amount = match parse_amount(&self.amount) {
            Ok(amount) => Some(amount),
            Err(message) => {
                v.push("amount", message);
                None
            }
        };
        v.check(
            self.currency.len() == 3 && self.currency.bytes().all(|b| b.is_ascii_uppercase()),
            "currency",
            "must be an ISO 4217 code of three upper-case letters, e.g. USD",
        );
        if let Some(description) = &self.description {
            v.check(
                description.chars().count() <= MAX_DESCRIPTION_CHARS,
                "description",
                "must be at most 1000 characters",
            );
        }
        v.finish()?;
        let amount = amount.ok_or_else(|| ApiError::internal("a valid amount did not parse"))?;
        Ok(NewCharge {
            reference: self.reference,
            amount,
            currency: self.currency,
            description: self.description,
        })
    }
}

/// `"12.34"`-style text as an amount with two places, or why it is not one.
pub fn parse_amount(text: &str) -> Result<Decimal, &'static str> {
    const SHAPE: &str = "must be a decimal string with at most two decimals, e.g. \"12.34\"";
    const RANGE: &str = "must be between 0.01 and 99999999.99";
    let (units, cents) = match text.split_once('.') {
        Some((units, cents)) => (units, cents),
        None => (text, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if units.is_empty() || !digits(units) || !digits(cents) || text.ends_with('.') {
        return Err(SHAPE);
    }
    if cents.len() > 2 {
        return Err(SHAPE);
    }
    if units.trim_start_matches('0').len() > MAX_AMOUNT_UNIT_DIGITS {
        return Err(RANGE);
    }
    let mut amount: Decimal = text.parse().map_err(|_| SHAPE)?;
    amount.rescale(2);
    if amount < Decimal::new(1, 2) {
        return Err(RANGE);
    }
    Ok(amount)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(reference: &str, amount: &str, currency: &str) -> ChargeRequest {
        ChargeRequest {
            reference: reference.into(),
            amount: amount.into(),
            currency: currency.into(),
            description: None,
        }
    }

    #[test]
    fn amounts_are_held_with_two_places() {
        assert_eq!(parse_amount("12.3").unwrap().to_string(), "12.30");
        assert_eq!(parse_amount("12").unwrap().to_string(), "12.00");
        assert_eq!(parse_amount("0.01").unwrap().to_string(), "0.01");
        assert_eq!(
            parse_amount("99999999.99").unwrap().to_string(),
            "99999999.99"
        );
        assert_eq!(parse_amount("0012.34").unwrap().to_string(), "12.34");
    }

    #[test]
    fn malformed_and_out_of_range_amounts_are_refused() {
        for text in [
            "", ".5", "5.", "1.234", "-1.00", "+1.00", "1e3", " 1.00", "1,00", "12.3a", "NaN",
        ] {
            assert!(parse_amount(text).is_err(), "{text:?}");
        }
        for text in [
            "0",
            "0.00",
            "100000000.00",
            "123456789012345678901234567890",
        ] {
            assert_eq!(
                parse_amount(text),
                Err("must be between 0.01 and 99999999.99"),
                "{text:?}"
            );
        }
    }

    #[test]
    fn every_bad_field_is_named() {
        let err = request("", "1.234", "usd").validate().unwrap_err();
        let fields: Vec<_> = err.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["reference", "amount", "currency"]);
        let long = "r".repeat(201);
        let err = request(&long, "1.00", "USD").validate().unwrap_err();
        assert_eq!(err.fields[0].field, "reference");
    }

    #[test]
    fn a_valid_request_becomes_a_new_charge() {
        let new = request("pay_1", "12.3", "EUR").validate().unwrap();
        assert_eq!(new.amount.to_string(), "12.30");
        assert_eq!(new.currency, "EUR");
    }
}
