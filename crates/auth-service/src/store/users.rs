//! `users`: the legacy table as the seed maps it. Emails are stored as given and compared without
//! case; legacy rows may hold emails differing only by case, so no index enforces uniqueness and
//! writers serialise on an advisory lock per lower-cased email instead.

use chrono::NaiveDateTime;
use contracts::users::{Role, User};
use sqlx::{FromRow, PgConnection, PgPool};

#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub name: String,
    pub role: String,
    pub email_verified: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl UserRow {
    pub fn role(&self) -> Role {
        // The column is the `"UserRole"` enum, whose labels are exactly `Role`'s.
        self.role.parse().unwrap_or(Role::Customer)
    }

    pub fn to_user(&self) -> User {
        User {
            id: self.id.clone(),
            email: self.email.clone(),
            name: self.name.clone(),
            role: self.role(),
            email_verified: self.email_verified,
            created_at: self.created_at.and_utc(),
            updated_at: self.updated_at.and_utc(),
        }
    }
}

const COLUMNS: &str =
    "id, email, password_hash, name, role::text AS role, email_verified, created_at, updated_at";

pub async fn find_by_id(conn: &mut PgConnection, id: &str) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// The users among `ids` (distinct), in no particular order.
pub async fn find_by_ids(conn: &mut PgConnection, ids: &[String]) -> sqlx::Result<Vec<UserRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users WHERE id = ANY($1)"
    )))
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// Users whose email equals `email` ignoring case, the exact match first.
pub async fn find_by_email(conn: &mut PgConnection, email: &str) -> sqlx::Result<Vec<UserRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users WHERE lower(email) = lower($1)
         ORDER BY (email = $1) DESC, created_at, id LIMIT 10"
    )))
    .bind(email)
    .fetch_all(conn)
    .await
}

/// Serialises writers of one email (any case) until the transaction ends.
pub async fn lock_email(conn: &mut PgConnection, email: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended(lower($1), 7301))")
        .bind(email)
        .execute(conn)
        .await?;
    Ok(())
}

pub struct NewUser<'a> {
    pub email: &'a str,
    pub password_hash: &'a str,
    pub name: &'a str,
    pub role: Role,
    pub email_verified: bool,
}

pub async fn insert(conn: &mut PgConnection, new: &NewUser<'_>) -> sqlx::Result<UserRow> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO users (id, email, password_hash, name, role, email_verified, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5::text::\"UserRole\", $6, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC')
         RETURNING {COLUMNS}"
    )))
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(new.email)
    .bind(new.password_hash)
    .bind(new.name)
    .bind(new.role.as_str())
    .bind(new.email_verified)
    .fetch_one(conn)
    .await
}

/// Replaces the hash only if it is still `old`, so a concurrent password change wins.
pub async fn replace_password_hash(
    pool: &PgPool,
    id: &str,
    old: &str,
    new: &str,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE users SET password_hash = $3, updated_at = now() AT TIME ZONE 'UTC'
         WHERE id = $1 AND password_hash = $2",
    )
    .bind(id)
    .bind(old)
    .bind(new)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[derive(Debug, Default)]
pub struct UserChanges {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub email_verified: Option<bool>,
}

pub async fn update(
    conn: &mut PgConnection,
    id: &str,
    changes: &UserChanges,
) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE users SET name = coalesce($2, name),
                          role = coalesce($3::text::\"UserRole\", role),
                          email_verified = coalesce($4, email_verified),
                          updated_at = now() AT TIME ZONE 'UTC'
         WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(changes.name.as_deref())
    .bind(changes.role.map(Role::as_str))
    .bind(changes.email_verified)
    .fetch_optional(conn)
    .await
}

pub async fn delete(conn: &mut PgConnection, id: &str) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "DELETE FROM users WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// One page in id order (stable, index-backed), after the `after` id.
pub async fn list(
    pool: &PgPool,
    role: Option<Role>,
    after: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<UserRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users
         WHERE ($1::text IS NULL OR role = $1::text::\"UserRole\") AND ($2::text IS NULL OR id > $2)
         ORDER BY id LIMIT $3"
    )))
    .bind(role.map(Role::as_str))
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}
