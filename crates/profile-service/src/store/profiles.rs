//! `user_profiles` (the seed's table). Timestamps are written as UTC explicitly: the legacy
//! columns are `TIMESTAMP(3)` without a zone, so the session's time zone must not leak into them.

use chrono::NaiveDateTime;
use sqlx::{Connection, PgConnection};

use crate::profiles::ProfileChanges;

/// A row of `user_profiles`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProfileRow {
    pub id: String,
    pub user_id: String,
    pub avatar_url: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub bio: Option<String>,
    pub preferences: Option<serde_json::Value>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

const COLUMNS: &str =
    "id, user_id, avatar_url, phone, address, bio, preferences, created_at, updated_at";

pub async fn find_by_user(
    conn: &mut PgConnection,
    user_id: &str,
) -> sqlx::Result<Option<ProfileRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM user_profiles WHERE user_id = $1"
    )))
    .bind(user_id)
    .fetch_optional(conn)
    .await
}

/// What [`create_default`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
    /// The user had a profile already.
    Existed,
    /// The database refused the user (shared topology: the legacy key
    /// `user_profiles_user_id_fkey` wants the user in `users`, and it is not there, deleted
    /// since). Nothing was written.
    NoSuchUser,
}

/// Creates the empty profile of `user_id` unless one exists. In a savepoint, so that the
/// legacy foreign key refusing a missing user leaves the caller's transaction usable (the
/// consumer's holds the event's inbox row).
pub async fn create_default(conn: &mut PgConnection, user_id: &str) -> sqlx::Result<Created> {
    let mut savepoint = conn.begin().await?;
    let done = sqlx::query(
        "INSERT INTO user_profiles (id, user_id, created_at, updated_at) \
         VALUES ($1, $2, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC') \
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(user_id)
    .execute(&mut *savepoint)
    .await;
    match done {
        Ok(done) => {
            savepoint.commit().await?;
            Ok(if done.rows_affected() == 1 {
                Created::New
            } else {
                Created::Existed
            })
        }
        Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
            savepoint.rollback().await?;
            Ok(Created::NoSuchUser)
        }
        Err(e) => Err(e),
    }
}

/// Applies `changes` (fields that are `None` stay as they are) to the profile of `user_id`.
pub async fn update(
    conn: &mut PgConnection,
    user_id: &str,
    changes: &ProfileChanges,
) -> sqlx::Result<Option<ProfileRow>> {
    // `$n::boolean` says whether a field is being set, so one statement serves PUT and PATCH.
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE user_profiles SET \
           avatar_url = CASE WHEN $2 THEN $3 ELSE avatar_url END, \
           phone = CASE WHEN $4 THEN $5 ELSE phone END, \
           address = CASE WHEN $6 THEN $7 ELSE address END, \
           bio = CASE WHEN $8 THEN $9 ELSE bio END, \
           preferences = CASE WHEN $10 THEN $11 ELSE preferences END, \
           updated_at = now() AT TIME ZONE 'UTC' \
         WHERE user_id = $1 RETURNING {COLUMNS}"
    )))
    .bind(user_id)
    .bind(changes.avatar_url.is_some())
    .bind(changes.avatar_url.clone().flatten())
    .bind(changes.phone.is_some())
    .bind(changes.phone.clone().flatten())
    .bind(changes.address.is_some())
    .bind(changes.address.clone().flatten())
    .bind(changes.bio.is_some())
    .bind(changes.bio.clone().flatten())
    .bind(changes.preferences.is_some())
    .bind(changes.preferences.clone().flatten())
    .fetch_optional(conn)
    .await
}

/// Deletes the profile of `user_id`; true when there was one.
pub async fn delete_by_user(conn: &mut PgConnection, user_id: &str) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM user_profiles WHERE user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Up to `limit` profiles ordered by id, after the id `after` (keyset pagination: stable under
/// concurrent inserts, no offset scans).
pub async fn list(
    conn: &mut PgConnection,
    after: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<ProfileRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM user_profiles WHERE ($1::text IS NULL OR id > $1) \
         ORDER BY id LIMIT $2"
    )))
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await
}
