//! Small SQL text helpers for statements that cannot take bind parameters (COPY, DDL).

/// A single-quoted literal; `standard_conforming_strings` is on in every session of the tool, so
/// only quotes need doubling.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

pub fn ident(name: &str) -> String {
    platform::db::quote_ident(name)
}

/// Session settings every connection of the tool uses, so that row text is rendered identically
/// on both sides of a comparison.
pub const SESSION_SETUP: &str = "SET standard_conforming_strings = on; SET DateStyle = 'ISO, MDY'; \
     SET IntervalStyle = 'postgres'; SET extra_float_digits = 1; SET bytea_output = 'hex'; \
     SET TimeZone = 'UTC'; SET statement_timeout = 0";

#[cfg(test)]
mod tests {
    #[test]
    fn literals_double_quotes() {
        assert_eq!(super::literal("O'Brien"), "'O''Brien'");
        assert_eq!(super::literal(r"a\b"), r"'a\b'");
    }
}
