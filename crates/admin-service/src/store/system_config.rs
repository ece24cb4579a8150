//! `system_config`, the seed's table as it is: one row per key.

use chrono::NaiveDateTime;
use sqlx::PgConnection;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ConfigRow {
    pub key: String,
    /// The JSON text, as PostgreSQL prints it.
    pub value: String,
    pub description: Option<String>,
    pub updated_at: NaiveDateTime,
    pub updated_by: Option<String>,
}

const COLUMNS: &str = "key, value::text AS value, description, updated_at, updated_by";

/// Keys in order, after `after`.
pub async fn list(
    conn: &mut PgConnection,
    after: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<ConfigRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM system_config WHERE ($1::text IS NULL OR key > $1) \
         ORDER BY key LIMIT $2"
    )))
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The entry, locked until the transaction ends when `lock` is set.
pub async fn get(
    conn: &mut PgConnection,
    key: &str,
    lock: bool,
) -> sqlx::Result<Option<ConfigRow>> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM system_config WHERE key = $1{lock}"
    )))
    .bind(key)
    .fetch_optional(conn)
    .await
}

/// Creates the entry unless the key exists (someone created it meanwhile): `None` then.
pub async fn create(
    conn: &mut PgConnection,
    key: &str,
    value: &str,
    description: Option<&str>,
    updated_by: &str,
) -> sqlx::Result<Option<ConfigRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO system_config (key, value, description, updated_at, updated_by) \
         VALUES ($1, $2::jsonb, $3, clock_timestamp() AT TIME ZONE 'UTC', $4) \
         ON CONFLICT (key) DO NOTHING RETURNING {COLUMNS}"
    )))
    .bind(key)
    .bind(value)
    .bind(description)
    .bind(updated_by)
    .fetch_optional(conn)
    .await
}

pub async fn update(
    conn: &mut PgConnection,
    key: &str,
    value: &str,
    description: Option<&str>,
    updated_by: &str,
) -> sqlx::Result<ConfigRow> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE system_config SET value = $2::jsonb, description = $3, \
                updated_at = clock_timestamp() AT TIME ZONE 'UTC', updated_by = $4 \
         WHERE key = $1 RETURNING {COLUMNS}"
    )))
    .bind(key)
    .bind(value)
    .bind(description)
    .bind(updated_by)
    .fetch_one(conn)
    .await
}

pub async fn delete(conn: &mut PgConnection, key: &str) -> sqlx::Result<bool> {
    let deleted = sqlx::query("DELETE FROM system_config WHERE key = $1")
        .bind(key)
        .execute(conn)
        .await?;
    Ok(deleted.rows_affected() == 1)
}
