//! The system configuration: keys validated, writes made conditional by ETag (RFC 9110 13.1),
//! and every change published as `config.updated` through admin's outbox in the same transaction,
//! so it lands in the audit log like any other event.

use contracts::events::{CONFIG_UPDATED, ConfigUpdated};
use platform::ApiError;
use platform::error::Validator;
use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::{AdminError, Result};
use crate::outbox::OUTBOX;
use crate::store::system_config::{self as store, ConfigRow};

pub const MAX_KEY_LEN: usize = 128;
/// The largest value, as compact JSON.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
pub const MAX_DESCRIPTION_CHARS: usize = 1000;

/// `[a-z0-9_.-]`, 1 to 128 characters.
pub fn check_key(key: &str) -> Result<(), ApiError> {
    let mut v = Validator::new();
    v.check(
        !key.is_empty() && key.len() <= MAX_KEY_LEN,
        "key",
        "must be 1 to 128 characters",
    );
    v.check(
        key.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        }),
        "key",
        "may hold only a-z, 0-9, '_', '.' and '-'",
    );
    v.finish()
}

/// The body of `PUT /admin/config/{key}`, checked.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// The JSON text as sent: stored by PostgreSQL with every digit of its numbers.
    pub value: String,
    pub description: Option<String>,
}

pub fn check_entry(
    value: Option<Box<RawValue>>,
    description: Option<String>,
) -> Result<NewEntry, ApiError> {
    let mut v = Validator::new();
    match &value {
        None => {
            v.push("value", "is required (any JSON value)");
        }
        Some(value) => {
            v.check(
                value.get().len() <= MAX_VALUE_BYTES,
                "value",
                "must be at most 64 KiB of JSON",
            );
        }
    }
    if let Some(d) = &description {
        v.check(
            d.chars().count() <= MAX_DESCRIPTION_CHARS,
            "description",
            "must be at most 1000 characters",
        );
    }
    v.finish()?;
    Ok(NewEntry {
        value: value.map_or_else(|| "null".to_string(), |v| v.get().to_string()),
        description,
    })
}

/// The entry's strong ETag: a hash of everything the API shows of it, so any change (through the
/// API or not) gives a new one.
pub fn etag(row: &ConfigRow) -> String {
    let mut h = Sha256::new();
    for part in [
        row.key.as_str(),
        &row.value,
        row.description.as_deref().unwrap_or("\u{0}"),
        &row.updated_at.and_utc().timestamp_micros().to_string(),
        row.updated_by.as_deref().unwrap_or("\u{0}"),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    format!("\"{}\"", hex::encode(&h.finalize()[..16]))
}

/// An `If-Match` or `If-None-Match` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Any,
    /// Entity tags as sent, quotes included.
    Tags(Vec<String>),
}

impl Condition {
    /// `*`, or a comma-separated list of entity tags.
    pub fn parse(header: &str) -> Self {
        if header.trim() == "*" {
            return Condition::Any;
        }
        Condition::Tags(
            header
                .split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect(),
        )
    }

    /// If-Match compares strongly: a weak tag (`W/"..."`) never matches.
    fn matches(&self, current: Option<&ConfigRow>) -> bool {
        match (self, current) {
            (_, None) => false,
            (Condition::Any, Some(_)) => true,
            (Condition::Tags(tags), Some(row)) => {
                let tag = etag(row);
                tags.contains(&tag)
            }
        }
    }

    /// If-None-Match compares weakly (RFC 9110 13.1.2): `W/"x"` matches `"x"`.
    fn matches_weakly(&self, current: Option<&ConfigRow>) -> bool {
        match (self, current) {
            (_, None) => false,
            (Condition::Any, Some(_)) => true,
            (Condition::Tags(tags), Some(row)) => {
                let tag = etag(row);
                tags.iter()
                    .any(|t| t.strip_prefix("W/").unwrap_or(t) == tag)
            }
        }
    }
}

/// What a `PUT` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    Updated,
}

/// Creates or replaces `key`, under the preconditions of RFC 9110: `If-Match` must match the
/// current entry; `If-None-Match: *` creates only; with neither, an existing key is refused
/// with 428, so no write silently overwrites one the caller never saw.
pub async fn put(
    state: &AppState,
    admin_id: &str,
    key: &str,
    entry: NewEntry,
    if_match: Option<Condition>,
    if_none_match: Option<Condition>,
) -> Result<(Written, ConfigRow)> {
    let mut tx = state.pool.begin().await?;
    let current = store::get(&mut tx, key, true).await?;
    if let Some(condition) = &if_match
        && !condition.matches(current.as_ref())
    {
        return Err(AdminError::PreconditionFailed(
            "the entry changed since it was read (If-Match does not match its ETag)",
        ));
    }
    if let Some(condition) = &if_none_match
        && condition.matches_weakly(current.as_ref())
    {
        return Err(AdminError::PreconditionFailed(
            "the entry exists (If-None-Match)",
        ));
    }
    let description = entry.description.as_deref();
    let (written, row, old) = match current {
        None => {
            let row = store::create(&mut tx, key, &entry.value, description, admin_id)
                .await?
                // Created by someone else since the read above: this write never saw it. A
                // conditional request fails its condition; a plain one needs one now.
                .ok_or(if if_match.is_some() || if_none_match.is_some() {
                    AdminError::PreconditionFailed("the entry was created meanwhile")
                } else {
                    AdminError::PreconditionRequired
                })?;
            (Written::Created, row, None)
        }
        Some(_) if if_match.is_none() => return Err(AdminError::PreconditionRequired),
        Some(old) => {
            let row = store::update(&mut tx, key, &entry.value, description, admin_id).await?;
            (Written::Updated, row, Some(old.value))
        }
    };
    let change = ConfigUpdated {
        key: key.to_string(),
        change: match written {
            Written::Created => "created",
            Written::Updated => "updated",
        }
        .into(),
        old_value: old.as_deref().and_then(event_value),
        new_value: event_value(&row.value),
        description: row.description.clone(),
        updated_by: admin_id.to_string(),
    };
    OUTBOX.record(&mut tx, CONFIG_UPDATED, &change).await?;
    tx.commit().await?;
    Ok((written, row))
}

/// A stored value for an event's payload (events carry parsed JSON).
fn event_value(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok()
}

/// Deletes `key`; with `If-Match`, only the entry the caller read.
pub async fn delete(
    state: &AppState,
    admin_id: &str,
    key: &str,
    if_match: Option<Condition>,
) -> Result<()> {
    let mut tx = state.pool.begin().await?;
    let current = store::get(&mut tx, key, true).await?;
    let Some(old) = current else {
        return Err(match if_match {
            Some(_) => AdminError::PreconditionFailed("the entry no longer exists"),
            None => AdminError::NotFound("Config key"),
        });
    };
    if let Some(condition) = &if_match
        && !condition.matches(Some(&old))
    {
        return Err(AdminError::PreconditionFailed(
            "the entry changed since it was read (If-Match does not match its ETag)",
        ));
    }
    store::delete(&mut tx, key).await?;
    let change = ConfigUpdated {
        key: key.to_string(),
        change: "deleted".into(),
        old_value: event_value(&old.value),
        new_value: None,
        description: old.description,
        updated_by: admin_id.to_string(),
    };
    OUTBOX.record(&mut tx, CONFIG_UPDATED, &change).await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> ConfigRow {
        ConfigRow {
            key: "payments.max_amount".into(),
            value: r#"{"EUR": "10000.00"}"#.into(),
            description: None,
            updated_at: chrono::DateTime::from_timestamp(1_700_000_000, 0)
                .unwrap()
                .naive_utc(),
            updated_by: Some("u1".into()),
        }
    }

    #[test]
    fn keys_are_lowercase_words_with_dots_and_dashes() {
        assert!(check_key("payments.max_amount").is_ok());
        assert!(check_key("feature-flags_2").is_ok());
        for bad in [
            "",
            "Upper",
            "with space",
            "slash/key",
            "é",
            &"k".repeat(129),
        ] {
            assert!(check_key(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_key(&"k".repeat(128)).is_ok());
    }

    #[test]
    fn a_value_over_64_kib_is_refused_and_null_is_a_value() {
        let raw = |s: String| RawValue::from_string(s).unwrap();
        let big = raw(format!("\"{}\"", "x".repeat(MAX_VALUE_BYTES)));
        assert!(check_entry(Some(big), None).is_err());
        assert!(check_entry(None, None).is_err());
        assert_eq!(
            check_entry(Some(raw("null".into())), None).unwrap().value,
            "null"
        );
    }

    #[test]
    fn the_etag_changes_with_any_field_and_if_match_compares_strongly() {
        let a = row();
        let mut b = row();
        b.updated_by = Some("u2".into());
        assert_ne!(etag(&a), etag(&b));
        let tag = etag(&a);
        assert!(Condition::parse(&tag).matches(Some(&a)));
        assert!(Condition::parse(&format!("\"other\", {tag}")).matches(Some(&a)));
        assert!(!Condition::parse(&format!("W/{tag}")).matches(Some(&a)));
        assert!(Condition::parse("*").matches(Some(&a)));
        assert!(!Condition::parse("*").matches(None));
    }
}
