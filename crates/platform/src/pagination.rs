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

fn decode(cursor: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    String::from_utf8(bytes).ok().filter(|key| !key.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        ] {
            let err = PageRequest::parse(limit, cursor).unwrap_err();
            assert!(format!("{:?}", err.body()).contains(field), "{field}");
        }
    }
}
