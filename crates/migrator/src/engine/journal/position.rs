//! Where the sync stands in each service database, in its journal: the commit position of the
//! last legacy transaction applied there (`sync_position`, committed with the rows it covers), the
//! keys the sync changed since the last clean verify (`sync_changes`, which cutover verifies
//! inside its freeze), and what the capture recorded of its slot (`capture`). Copy, verify,
//! cutover and the slot's code read them; the sync writes them.

use sqlx::PgConnection;

use crate::cdc::pgoutput::Lsn;
use crate::error::Result;

pub const POSITION_SQL: &str = "
CREATE SCHEMA IF NOT EXISTS mfe_migration;
CREATE TABLE IF NOT EXISTS mfe_migration.sync_position (
    slot TEXT PRIMARY KEY,
    -- The commit position of the last legacy transaction applied here.
    commit_lsn PG_LSN NOT NULL,
    commit_time TIMESTAMPTZ,
    transactions BIGINT NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Keys the sync changed since the last clean full verify ('*': the whole table, truncated), each
-- with the commit that last changed it, a row per table per run: cutover verifies exactly these
-- inside its freeze.
CREATE TABLE IF NOT EXISTS mfe_migration.sync_changes (
    id BIGSERIAL PRIMARY KEY,
    table_name TEXT NOT NULL,
    -- The last of the keys' commits.
    commit_lsn PG_LSN NOT NULL,
    keys TEXT[] NOT NULL,
    lsns PG_LSN[] NOT NULL
);
CREATE TABLE IF NOT EXISTS mfe_migration.capture (
    slot TEXT PRIMARY KEY,
    -- Every change committed after this is in the slot's stream.
    consistent_lsn PG_LSN NOT NULL,
    -- The copy's snapshot was taken at (or before) this position.
    horizon_lsn PG_LSN NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);";

/// The copy's snapshot position recorded for `slot` (changes up to it may be in the copy too).
pub async fn horizon(conn: &mut PgConnection, slot: &str) -> Result<Option<Lsn>> {
    let h: Option<String> =
        sqlx::query_scalar("SELECT horizon_lsn::text FROM mfe_migration.capture WHERE slot = $1")
            .bind(slot)
            .fetch_optional(conn)
            .await?;
    Ok(h.and_then(|h| h.parse().ok()))
}

/// Where the target stands for `slot`.
pub async fn position(conn: &mut PgConnection, slot: &str) -> Result<Option<Lsn>> {
    let lsn: Option<String> = sqlx::query_scalar(
        "SELECT commit_lsn::text FROM mfe_migration.sync_position WHERE slot = $1",
    )
    .bind(slot)
    .fetch_optional(conn)
    .await?;
    Ok(lsn.and_then(|l| l.parse().ok()))
}

/// The position the sync applied in this target, if it ever synced (any slot).
pub async fn synced_position(conn: &mut PgConnection) -> Result<Option<Lsn>> {
    let lsn: Option<String> = sqlx::query_scalar(
        "SELECT max(commit_lsn)::text FROM mfe_migration.sync_position \
         WHERE to_regclass('mfe_migration.sync_position') IS NOT NULL",
    )
    .fetch_optional(&mut *conn)
    .await
    .or_else(|e| match &e {
        // No journal of the sync here: never synced.
        sqlx::Error::Database(d) if d.code().as_deref() == Some("42P01") => Ok(None),
        _ => Err(e),
    })?
    .flatten();
    Ok(lsn.and_then(|l| l.parse().ok()))
}

/// A clean verify covered every row changed up to `lsn`.
pub async fn forget_touched(conn: &mut PgConnection, lsn: Lsn) -> Result<()> {
    sqlx::query("DELETE FROM mfe_migration.sync_changes WHERE commit_lsn <= $1::text::pg_lsn")
        .bind(lsn.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// The keys of `table` the sync changed by a commit after `after` (all it recorded if `None`).
pub async fn touched_keys(
    conn: &mut PgConnection,
    table: &str,
    after: Option<Lsn>,
) -> Result<Vec<String>> {
    touched_keys_between(conn, table, after.unwrap_or_default(), Lsn(u64::MAX)).await
}

/// The keys of `table` the sync changed by a commit after `after` and at or before `upto`.
pub async fn touched_keys_between(
    conn: &mut PgConnection,
    table: &str,
    after: Lsn,
    upto: Lsn,
) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT u.k FROM mfe_migration.sync_changes c, unnest(c.keys, c.lsns) AS u(k, l) \
         WHERE c.table_name = $1 AND c.commit_lsn > $2::text::pg_lsn \
           AND u.l > $2::text::pg_lsn AND u.l <= $3::text::pg_lsn",
    )
    .bind(table)
    .bind(after.to_string())
    .bind(upto.to_string())
    .fetch_all(conn)
    .await?)
}
