//! Amounts of money: decimal strings on the wire (`"12.34"`), `NUMERIC(10,2)` in the database,
//! [`Decimal`] in between. Never a float: a float cannot hold 0.1 exactly, and a payment must
//! arrive to the cent.

use std::fmt;

use rust_decimal::Decimal;

/// The smallest and largest amount the legacy column (`DECIMAL(10,2)`) can hold.
pub const MIN: Decimal = Decimal::from_parts(1, 0, 0, false, 2);
// 9_999_999_999 hundredths, split into the low and middle 32 bits.
pub const MAX: Decimal = Decimal::from_parts(1_410_065_407, 2, 0, false, 2);

/// A positive amount with exactly two decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Amount(Decimal);

/// Why a string is not an amount; the message is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("must be a decimal string such as \"12.34\"")]
    Format,
    #[error("must have at most 2 decimals")]
    Precision,
    #[error("must be between 0.01 and 99999999.99")]
    Range,
}

impl Amount {
    /// Parses the API's form: digits, optionally a point and one or two digits. No sign, no
    /// exponent, no spaces, no leading zeros beyond one.
    pub fn parse(text: &str) -> Result<Self, AmountError> {
        let (whole, fraction) = match text.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (text, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || fraction.is_some_and(|f| !digits(f)) {
            return Err(AmountError::Format);
        }
        if whole.len() > 1 && whole.starts_with('0') {
            return Err(AmountError::Format);
        }
        if fraction.is_some_and(|f| f.len() > 2) {
            return Err(AmountError::Precision);
        }
        if whole.len() > 8 {
            return Err(AmountError::Range);
        }
        let value: Decimal = text.parse().map_err(|_| AmountError::Format)?;
        Self::new(value)
    }

    /// An amount from a decimal (e.g. read from the database), rescaled to two decimals.
    pub fn new(value: Decimal) -> Result<Self, AmountError> {
        if value.scale() > 2 && value != value.round_dp(2) {
            return Err(AmountError::Precision);
        }
        if value < MIN || value > MAX {
            return Err(AmountError::Range);
        }
        let mut value = value;
        value.rescale(2);
        Ok(Self(value))
    }

    pub fn decimal(self) -> Decimal {
        self.0
    }
}

/// Always two decimals: `12.30`, never `12.3`.
impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How a stored amount is shown: two decimals. Legacy rows hold whatever `NUMERIC(10,2)` holds
/// (zero or negative amounts included), so this never fails.
pub fn show(value: Decimal) -> String {
    let mut value = value;
    value.rescale(2);
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_amounts_keep_their_cents() {
        for (text, shown) in [
            ("0.01", "0.01"),
            ("1", "1.00"),
            ("12.3", "12.30"),
            ("12.34", "12.34"),
            ("0.10", "0.10"),
            ("99999999.99", "99999999.99"),
        ] {
            assert_eq!(Amount::parse(text).unwrap().to_string(), shown, "{text}");
        }
    }

    #[test]
    fn the_bounds_are_the_columns() {
        assert_eq!(MIN.to_string(), "0.01");
        assert_eq!(MAX.to_string(), "99999999.99");
    }

    #[test]
    fn anything_else_is_refused_with_its_reason() {
        use AmountError::*;
        for (text, error) in [
            ("", Format),
            ("0", Range),
            ("0.00", Range),
            ("0.001", Precision),
            ("12.345", Precision),
            ("100000000.00", Range),
            ("123456789", Range),
            ("-1.00", Format),
            ("+1.00", Format),
            ("1e3", Format),
            (" 1.00", Format),
            ("1.", Format),
            (".5", Format),
            ("01.00", Format),
            ("1,00", Format),
            ("NaN", Format),
            ("١٢", Format),
        ] {
            assert_eq!(Amount::parse(text), Err(error), "{text:?}");
        }
    }
}
