//! `profile.deleted_users`: tombstones of the users auth reported deleted. Events can arrive out
//! of order (a `user.registered` that failed and was retried may come after the `user.deleted` of
//! the same user); a tombstone keeps such a late registration from bringing the profile back.

use sqlx::PgConnection;

/// Records that auth deleted `user_id` (idempotent).
pub async fn bury(conn: &mut PgConnection, user_id: &str) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO profile.deleted_users (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether auth has reported `user_id` deleted.
pub async fn is_buried(conn: &mut PgConnection, user_id: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM profile.deleted_users WHERE user_id = $1)")
        .bind(user_id)
        .fetch_one(conn)
        .await
}
