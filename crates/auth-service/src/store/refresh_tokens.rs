//! `refresh_tokens` (the legacy table: one row per live token) and `auth.rotated_refresh_tokens`
//! (hashes of tokens already used, to detect reuse).

use chrono::NaiveDateTime;
use sqlx::{FromRow, PgConnection, PgPool};

#[derive(Debug, FromRow)]
pub struct TokenRow {
    pub id: String,
    pub user_id: String,
    pub expires_at: NaiveDateTime,
}

pub async fn insert(
    conn: &mut PgConnection,
    user_id: &str,
    stored: &str,
    expires_at: NaiveDateTime,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, user_id, token, expires_at, created_at)
         VALUES ($1, $2, $3, $4, now() AT TIME ZONE 'UTC')",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(user_id)
    .bind(stored)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The live row whose stored value is `stored`, locked until the transaction ends.
pub async fn lock(conn: &mut PgConnection, stored: &str) -> sqlx::Result<Option<TokenRow>> {
    sqlx::query_as("SELECT id, user_id, expires_at FROM refresh_tokens WHERE token = $1 FOR UPDATE")
        .bind(stored)
        .fetch_optional(conn)
        .await
}

pub async fn delete(conn: &mut PgConnection, id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM refresh_tokens WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Remembers that the token hashed as `token_hash` was used up.
pub async fn remember_rotated(
    conn: &mut PgConnection,
    token_hash: &str,
    user_id: &str,
    expires_at: NaiveDateTime,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO auth.rotated_refresh_tokens (token_hash, user_id, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (token_hash) DO NOTHING",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The user of an already rotated token, if `token_hash` is one.
pub async fn rotated_owner(
    conn: &mut PgConnection,
    token_hash: &str,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT user_id FROM auth.rotated_refresh_tokens WHERE token_hash = $1")
        .bind(token_hash)
        .fetch_optional(conn)
        .await
}

/// Revokes every live refresh token of `user_id`; returns how many.
pub async fn revoke_all(conn: &mut PgConnection, user_id: &str) -> sqlx::Result<u64> {
    let done = sqlx::query("DELETE FROM refresh_tokens WHERE user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

pub async fn forget_user(conn: &mut PgConnection, user_id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM auth.rotated_refresh_tokens WHERE user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes the expired rows of `refresh_tokens`, the legacy table: in the shared topology only
/// when the operator asked for it (`AUTH_PURGE_EXPIRED_TOKENS`).
pub async fn purge_expired_live(pool: &PgPool) -> sqlx::Result<u64> {
    let done =
        sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < now() AT TIME ZONE 'UTC'")
            .execute(pool)
            .await?;
    Ok(done.rows_affected())
}

/// Deletes the rotated hashes whose token would have expired by now (auth's own table).
pub async fn purge_expired_rotated(pool: &PgPool) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "DELETE FROM auth.rotated_refresh_tokens WHERE expires_at < now() AT TIME ZONE 'UTC'",
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
