//! Idempotency-Key, with Stripe's semantics: the same key and body from the same caller within
//! 24 hours gets the first response again (`Idempotent-Replayed: true`); the same key with another
//! body is 422 `idempotency_key_reused`; a retry while the first request runs is 409
//! `idempotency_key_in_use`.
//!
//! A request first claims its key (committed at once, so a concurrent retry sees it), does what
//! needs no transaction (asking auth), then holds the key in the transaction that writes the
//! payment and its event, and stores its response there: the payment and the stored response
//! commit together or not at all. An instant payment keeps holding its key while it is charged
//! and then stores the answer it sends. A request that fails lets go of its key, so a failure is
//! never replayed, while the key of a change that committed is never released (the release
//! deletes only a key without a stored response, and waits for a commit in flight to see it:
//! a request dropped during its COMMIT cannot free the key of the payment it made);
//! one that dies before storing a response loses the key when its lease runs out,
//! and a retry takes it over (if the first request was only slow, its transaction then finds the
//! key gone and writes nothing); one that dies after storing it leaves that response, replayed
//! once the lease ran out.

use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::{PaymentError, Result};
use crate::store::idempotency_keys;

/// The longest key accepted (Stripe's limit).
pub const MAX_KEY_LEN: usize = 255;

/// A stored response.
#[derive(Debug, Clone)]
pub struct Stored {
    pub status: u16,
    pub body: Value,
}

/// What claiming a key gave.
pub enum Claimed {
    /// This request holds the key and goes ahead.
    Fresh(Lease),
    /// The key's first request finished: answer what it answered.
    Replay(Stored),
}

/// A claimed key. Dropped before [`Lease::committed`] (a cancelled request), it is released in
/// the background.
pub struct Lease {
    pool: PgPool,
    caller: String,
    key: String,
    owner: Uuid,
    completed: bool,
}

/// Checks an `Idempotency-Key` header value: 1 to 255 visible ASCII characters.
pub fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if ok { Ok(()) } else { Err(invalid_key()) }
}

/// The 422 of a key that breaks [`check_key`]'s rule.
pub fn invalid_key() -> PaymentError {
    platform::ApiError::validation(vec![platform::error::FieldError::new(
        "Idempotency-Key",
        "must be 1 to 255 visible ASCII characters",
    )])
    .into()
}

/// What identifies a request under one key: its method, path and body, the body in a canonical
/// form (keys sorted, no spaces), so that the same JSON written differently is the same request.
pub fn fingerprint(method: &str, path: &str, body: &Value) -> String {
    let mut canonical = String::new();
    write_canonical(body, &mut canonical);
    let mut hash = Sha256::new();
    hash.update(method.as_bytes());
    hash.update(b" ");
    hash.update(path.as_bytes());
    hash.update(b"\n");
    hash.update(canonical.as_bytes());
    hex::encode(hash.finalize())
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Claims `key` for `caller`'s request with `fingerprint`.
pub async fn claim(
    pool: &PgPool,
    caller: &str,
    key: &str,
    fingerprint: &str,
    lease: Duration,
) -> Result<Claimed> {
    // A key released between the claim and the read is claimed again; twice is plenty.
    for _ in 0..3 {
        let owner = Uuid::new_v4();
        if idempotency_keys::claim(pool, caller, key, fingerprint, owner, lease).await? {
            return Ok(Claimed::Fresh(Lease {
                pool: pool.clone(),
                caller: caller.to_string(),
                key: key.to_string(),
                owner,
                completed: false,
            }));
        }
        let Some(row) = idempotency_keys::find(pool, caller, key).await? else {
            continue;
        };
        if row.fingerprint != fingerprint {
            return Err(PaymentError::IdempotencyKeyReused);
        }
        match (row.response_status, row.response_body) {
            // Finished, or its request stored an answer and died before finishing: the stored
            // answer stands (its payment exists).
            (Some(status), Some(body)) if row.completed || row.lease_expired => {
                return Ok(Claimed::Replay(Stored {
                    status: status as u16,
                    body,
                }));
            }
            _ if !row.lease_expired => return Err(PaymentError::IdempotencyKeyInUse),
            // A dead request's key, free to take over: claim again.
            _ => {}
        }
    }
    Err(PaymentError::IdempotencyKeyInUse)
}

impl Lease {
    /// Stores `response` in `tx` (the transaction of the change it answers), if this request
    /// still holds the key; otherwise the request must write nothing: 409. With `done` false the
    /// request keeps the key until [`Held::finish`] stores its final answer: a retry meanwhile
    /// is told to wait rather than replayed an answer the first caller never got.
    pub async fn store(
        &mut self,
        tx: &mut PgConnection,
        response: &Stored,
        done: bool,
    ) -> Result<()> {
        if !idempotency_keys::hold(tx, &self.caller, &self.key, self.owner).await? {
            return Err(PaymentError::IdempotencyKeyInUse);
        }
        idempotency_keys::complete(
            tx,
            &self.caller,
            &self.key,
            response.status,
            &response.body,
            done,
        )
        .await?;
        Ok(())
    }

    /// The key once `store`'s transaction committed: it is no longer released on drop.
    pub fn committed(mut self) -> Held {
        self.completed = true;
        Held {
            pool: self.pool.clone(),
            caller: std::mem::take(&mut self.caller),
            key: std::mem::take(&mut self.key),
            owner: self.owner,
        }
    }

    /// Lets go of the key of a request that failed, before its error is answered, so that a
    /// retry finds the key free (a failure is never replayed).
    pub async fn release(mut self) {
        self.completed = true;
        let result =
            idempotency_keys::release(&self.pool, &self.caller, &self.key, self.owner).await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not release an idempotency key; it frees when its lease runs out");
        }
    }
}

/// A key whose response is stored.
pub struct Held {
    pool: PgPool,
    caller: String,
    key: String,
    owner: Uuid,
}

impl Held {
    /// Stores the answer finally sent (an instant payment's, once charged) and finishes the key.
    pub async fn finish(&self, response: &Stored) {
        let result = idempotency_keys::finalize(
            &self.pool,
            &self.caller,
            &self.key,
            self.owner,
            response.status,
            &response.body,
        )
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not store the final idempotent response; the first one stands");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.completed {
            return;
        }
        let (pool, caller, key, owner) = (
            self.pool.clone(),
            std::mem::take(&mut self.caller),
            std::mem::take(&mut self.key),
            self.owner,
        );
        // Without a runtime (shutting down) the lease simply runs out.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = idempotency_keys::release(&pool, &caller, &key, owner).await {
                    tracing::warn!(error = %e, "could not release an idempotency key");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_same_json_written_differently_has_one_fingerprint() {
        let a = json!({"amount": "1.00", "metadata": {"b": 1, "a": [1, {"y": 2, "x": 1}]}});
        let b: Value =
            serde_json::from_str(r#"{"metadata":{"a":[1,{"x":1,"y":2}],"b":1},"amount":"1.00"}"#)
                .unwrap();
        assert_eq!(fingerprint("POST", "/p", &a), fingerprint("POST", "/p", &b));
        assert_ne!(fingerprint("POST", "/p", &a), fingerprint("POST", "/q", &a));
        let c = json!({"amount": "1.0", "metadata": {"b": 1, "a": [1, {"y": 2, "x": 1}]}});
        assert_ne!(fingerprint("POST", "/p", &a), fingerprint("POST", "/p", &c));
    }

    #[test]
    fn keys_are_visible_ascii_up_to_255() {
        assert!(check_key("order-42").is_ok());
        assert!(check_key(&"k".repeat(255)).is_ok());
        assert!(check_key("").is_err());
        assert!(check_key(&"k".repeat(256)).is_err());
        assert!(check_key("tab\there").is_err());
        assert!(check_key("ключ").is_err());
    }
}
