//! Cursor pagination as DESIGN.md's HTTP conventions give it: `limit` (1 to 100, default 20) and
//! an opaque `cursor` from the previous page's `nextCursor`. Cursors encode the last row's key, so
//! a page is a keyset scan (`WHERE key > $after ORDER BY key LIMIT n+1`): stable under concurrent
//! inserts and with no offset to skip.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{ApiError, Validator};

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// A validated page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    /// The key after which this page starts.
    pub after: Option<String>,
}

impl PageRequest {
    /// Checks `limit` and `cursor` from the query string; bad ones are 422 naming the field.
    pub fn parse(limit: Option<u32>, cursor: Option<&str>) -> Result<Self, ApiError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        let mut v = Validator::new();
        v.check(
            (1..=MAX_LIMIT).contains(&limit),
            "limit",
            "must be between 1 and 100",
        );
        let after = match cursor.map(decode) {
            Some(Some(key)) => Some(key),
            Some(None) => {
                v.push("cursor", "is not a cursor this API returned");
                None
            }
            None => None,
        };
        v.finish()?;
        Ok(Self { limit, after })
    }

    /// How many rows to fetch: one more than the page, to know whether another page follows.
    pub fn fetch(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// Cuts `rows` (fetched with [`fetch`](Self::fetch)) to the page and returns the next page's
    /// cursor, if there is a next page.
    pub fn finish<T>(&self, rows: &mut Vec<T>, key: impl Fn(&T) -> &str) -> Option<String> {
        if rows.len() <= self.limit as usize {
            return None;
        }
        rows.truncate(self.limit as usize);
        rows.last()
            .map(|row| URL_SAFE_NO_PAD.encode(key(row).as_bytes()))
    }
}

const KEY_TIME: &str = "%Y-%m-%dT%H:%M:%S%.f";

/// The key of a row in a newest-first list ordered by (creation time, id).
pub fn time_key(at: &chrono::NaiveDateTime, id: &str) -> String {
    format!("{}|{id}", at.format(KEY_TIME))
}

/// A [`time_key`] back; a key this API did not make is 422 on `cursor`.
pub fn parse_time_key(key: &str) -> Result<(chrono::NaiveDateTime, String), ApiError> {
    let bad = || {
        ApiError::validation(vec![crate::error::FieldError::new(
            "cursor",
            "is not a cursor this API returned",
        )])
    };
    let (at, id) = key.split_once('|').ok_or_else(bad)?;
    let at = chrono::NaiveDateTime::parse_from_str(at, KEY_TIME).map_err(|_| bad())?;
    Ok((at, id.to_string()))
}

fn decode(cursor: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    // No key holds a NUL: PostgreSQL text cannot, and comparing with one is an error there.
    String::from_utf8(bytes)
        .ok()
        .filter(|key| !key.is_empty() && !key.contains('\0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_key_reads_back_to_the_microsecond() {
        let at = chrono::NaiveDate::from_ymd_opt(2024, 2, 29)
            .unwrap()
            .and_hms_micro_opt(23, 59, 59, 123_456)
            .unwrap();
        let key = time_key(&at, "id|with|bars");
        assert_eq!(
            parse_time_key(&key).unwrap(),
            (at, "id|with|bars".to_string())
        );
        assert!(parse_time_key("nonsense").is_err());
    }

    #[test]
    fn pages_follow_each_other_through_the_cursor() {
        let first = PageRequest::parse(Some(2), None).unwrap();
        let mut rows = vec!["a", "b", "c"];
        let cursor = first.finish(&mut rows, |r| r).expect("a next page");
        assert_eq!(rows, ["a", "b"]);
        let second = PageRequest::parse(Some(2), Some(&cursor)).unwrap();
        assert_eq!(second.after.as_deref(), Some("b"));
        let mut last = vec!["c"];
        assert_eq!(second.finish(&mut last, |r| r), None);
    }

    #[test]
    fn bad_limits_and_cursors_are_refused_by_field() {
        assert_eq!(PageRequest::parse(None, None).unwrap().limit, 20);
        for (limit, cursor, field) in [
            (Some(0), None, "limit"),
            (Some(101), None, "limit"),
            (None, Some("!!"), "cursor"),
            (None, Some("YQBi"), "cursor"), // "a\0b"
        ] {
            let err = PageRequest::parse(limit, cursor).unwrap_err();
            assert!(format!("{:?}", err.body()).contains(field), "{field}");
        }
    }
}
