//! `payments.idempotency_keys`: one row per (caller, Idempotency-Key).

use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// How long a completed response is replayed.
pub const RETENTION_HOURS: i32 = 24;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyRow {
    pub fingerprint: String,
    pub owner: Option<Uuid>,
    pub response_status: Option<i16>,
    pub response_body: Option<serde_json::Value>,
    pub completed: bool,
    /// Whether the owner's lease has run out.
    pub lease_expired: bool,
}

/// Takes the key for `owner`: a new key, a key older than the retention, or a key whose
/// request died (its lease ran out) before storing a response, with the same fingerprint. False
/// when someone else has it.
pub async fn claim(
    pool: &PgPool,
    caller: &str,
    key: &str,
    fingerprint: &str,
    owner: Uuid,
    lease: Duration,
) -> sqlx::Result<bool> {
    let claimed = sqlx::query(
        "INSERT INTO payments.idempotency_keys AS k (caller, key, fingerprint, owner, locked_until) \
         VALUES ($1, $2, $3, $4, now() + $5 * interval '1 millisecond') \
         ON CONFLICT (caller, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, \
           owner = EXCLUDED.owner, locked_until = EXCLUDED.locked_until, created_at = now(), \
           response_status = NULL, response_body = NULL, completed_at = NULL \
         WHERE k.created_at < now() - make_interval(hours => $6) \
            OR (k.response_body IS NULL AND k.locked_until < now() \
                AND k.fingerprint = EXCLUDED.fingerprint)",
    )
    .bind(caller)
    .bind(key)
    .bind(fingerprint)
    .bind(owner)
    .bind(lease.as_millis() as f64)
    .bind(RETENTION_HOURS)
    .execute(pool)
    .await?;
    Ok(claimed.rows_affected() == 1)
}

pub async fn find(pool: &PgPool, caller: &str, key: &str) -> sqlx::Result<Option<KeyRow>> {
    sqlx::query_as(
        "SELECT fingerprint, owner, response_status, response_body, \
           completed_at IS NOT NULL AS completed, \
           coalesce(locked_until < now(), false) AS lease_expired \
         FROM payments.idempotency_keys WHERE caller = $1 AND key = $2",
    )
    .bind(caller)
    .bind(key)
    .fetch_optional(pool)
    .await
}

/// Locks the key in `tx` if `owner` still holds it (no other request took it over).
pub async fn hold(
    conn: &mut PgConnection,
    caller: &str,
    key: &str,
    owner: Uuid,
) -> sqlx::Result<bool> {
    let held: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM payments.idempotency_keys \
         WHERE caller = $1 AND key = $2 AND owner = $3 AND completed_at IS NULL FOR UPDATE",
    )
    .bind(caller)
    .bind(key)
    .bind(owner)
    .fetch_optional(conn)
    .await?;
    Ok(held.is_some())
}

/// Stores the response in the transaction of the change it answers. With `done` the key is
/// finished; without, the owner keeps it (a retry is told to wait) until [`finalize`] or until
/// the lease runs out, after which the stored response is replayed.
pub async fn complete(
    conn: &mut PgConnection,
    caller: &str,
    key: &str,
    status: u16,
    body: &serde_json::Value,
    done: bool,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE payments.idempotency_keys SET response_status = $3, response_body = $4, \
           completed_at = CASE WHEN $5 THEN now() END, \
           owner = CASE WHEN $5 THEN NULL ELSE owner END, \
           locked_until = CASE WHEN $5 THEN NULL ELSE locked_until END \
         WHERE caller = $1 AND key = $2",
    )
    .bind(caller)
    .bind(key)
    .bind(status as i16)
    .bind(body)
    .bind(done)
    .execute(conn)
    .await?;
    Ok(())
}

/// Replaces the stored response with the one finally sent and finishes the key, if `owner`
/// still holds it.
pub async fn finalize(
    pool: &PgPool,
    caller: &str,
    key: &str,
    owner: Uuid,
    status: u16,
    body: &serde_json::Value,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE payments.idempotency_keys SET response_status = $4, response_body = $5, \
           completed_at = now(), owner = NULL, locked_until = NULL \
         WHERE caller = $1 AND key = $2 AND owner = $3",
    )
    .bind(caller)
    .bind(key)
    .bind(owner)
    .bind(status as i16)
    .bind(body)
    .execute(pool)
    .await?;
    Ok(())
}

/// Lets go of a key whose request failed, so that it may be retried.
pub async fn release(pool: &PgPool, caller: &str, key: &str, owner: Uuid) -> sqlx::Result<()> {
    // A stored response is the mark of a committed change (they commit together): that key is
    // never released, whatever the request's fate after the commit. Not stored yet, the row may
    // be held by the transaction that stores it: the delete waits for it and looks again.
    sqlx::query(
        "DELETE FROM payments.idempotency_keys \
         WHERE caller = $1 AND key = $2 AND owner = $3 AND completed_at IS NULL \
           AND response_status IS NULL",
    )
    .bind(caller)
    .bind(key)
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(())
}

/// Deletes keys past the retention; returns how many.
pub async fn purge_expired(pool: &PgPool) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "DELETE FROM payments.idempotency_keys \
         WHERE created_at < now() - make_interval(hours => $1)",
    )
    .bind(RETENTION_HOURS)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
