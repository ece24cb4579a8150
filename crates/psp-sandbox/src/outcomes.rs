//! What happens to a charge, decided by its amount alone.
//!
//! A sandbox is only useful if a test can ask for a decline or a slow settlement on purpose, so
//! (like Braintree's sandbox) a few narrow ranges of whole units are reserved and every other
//! amount is approved. The table lives here once; the OpenAPI description, the README and the
//! tests all follow it.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::charges::DeclineCode;

/// The fate of a new charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `succeeded` at once.
    Approved,
    /// `declined` at once.
    Declined(DeclineCode),
    /// `pending`, then `succeeded` after the settlement delay.
    SettlesApproved,
    /// `pending`, then `declined` after the settlement delay.
    SettlesDeclined(DeclineCode),
    /// `succeeded` at once, but the HTTP response is held for the hang time, so the caller's
    /// timeout fires before it learns the result.
    Timeout,
    /// The first POST for a reference fails with a 500 and creates nothing; the next one is
    /// approved.
    FailsFirst,
}

/// The outcome table, in the words the README and the OpenAPI description use.
pub const TABLE: &str = "\
| Amount | Outcome |
|---|---|
| 2000.00-2000.99 | `declined`, `card_declined` |
| 2001.00-2001.99 | `declined`, `insufficient_funds` |
| 2002.00-2999.99 | `declined`, `card_declined` |
| 3000.00-3000.99 | `pending`; settles to `succeeded` after `PSP_SANDBOX_SETTLE_DELAY_MS` |
| 3001.00-3001.99 | `pending`; settles to `declined` (`card_declined`) after `PSP_SANDBOX_SETTLE_DELAY_MS` |
| 4000.00-4000.99 | `succeeded` at once, but the response is held for `PSP_SANDBOX_HANG_MS` (the client times out); a replayed POST answers at once |
| 5000.00-5000.99 | the first POST for a reference answers 500 `internal` and creates nothing; the next POST is approved |
| anything else | `succeeded` |
";

/// The outcome of a new charge of `amount`.
pub fn outcome(amount: &Decimal) -> Outcome {
    let Some(units) = amount.trunc().to_i64() else {
        return Outcome::Approved;
    };
    match units {
        2000 | 2002..=2999 => Outcome::Declined(DeclineCode::CardDeclined),
        2001 => Outcome::Declined(DeclineCode::InsufficientFunds),
        3000 => Outcome::SettlesApproved,
        3001 => Outcome::SettlesDeclined(DeclineCode::CardDeclined),
        4000 => Outcome::Timeout,
        5000 => Outcome::FailsFirst,
        _ => Outcome::Approved,
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn of(amount: &str) -> Outcome {
        outcome(&Decimal::from_str(amount).expect("a decimal"))
    }

    #[test]
    fn ordinary_amounts_are_approved() {
        for amount in ["0.01", "10.00", "12.34", "1999.99", "99999999.99"] {
            assert_eq!(of(amount), Outcome::Approved, "{amount}");
        }
    }

    #[test]
    fn the_decline_ranges_end_where_the_table_says() {
        let card = Outcome::Declined(DeclineCode::CardDeclined);
        let funds = Outcome::Declined(DeclineCode::InsufficientFunds);
        assert_eq!(of("1999.99"), Outcome::Approved);
        assert_eq!(of("2000.00"), card);
        assert_eq!(of("2000.99"), card);
        assert_eq!(of("2001.00"), funds);
        assert_eq!(of("2001.99"), funds);
        assert_eq!(of("2002.00"), card);
        assert_eq!(of("2999.99"), card);
        assert_eq!(of("3000.00"), Outcome::SettlesApproved);
    }

    #[test]
    fn the_pending_ranges_end_where_the_table_says() {
        assert_eq!(of("3000.00"), Outcome::SettlesApproved);
        assert_eq!(of("3000.99"), Outcome::SettlesApproved);
        assert_eq!(
            of("3001.00"),
            Outcome::SettlesDeclined(DeclineCode::CardDeclined)
        );
        assert_eq!(
            of("3001.99"),
            Outcome::SettlesDeclined(DeclineCode::CardDeclined)
        );
        assert_eq!(of("3002.00"), Outcome::Approved);
    }

    #[test]
    fn the_timeout_and_failure_ranges_end_where_the_table_says() {
        assert_eq!(of("3999.99"), Outcome::Approved);
        assert_eq!(of("4000.00"), Outcome::Timeout);
        assert_eq!(of("4000.99"), Outcome::Timeout);
        assert_eq!(of("4001.00"), Outcome::Approved);
        assert_eq!(of("4999.99"), Outcome::Approved);
        assert_eq!(of("5000.00"), Outcome::FailsFirst);
        assert_eq!(of("5000.99"), Outcome::FailsFirst);
        assert_eq!(of("5001.00"), Outcome::Approved);
    }
}
