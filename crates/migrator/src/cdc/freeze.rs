//! The write freeze of cutover: the legacy database refuses every write, from every role,
//! superusers included (POC-2 connects as `postgres`).
//!
//! `default_transaction_read_only` is only a default a session may set back, and revoking
//! privileges does not stop a superuser. What stops everyone is a statement trigger on each
//! contract table that raises: triggers fire for superusers too, and `ENABLE ALWAYS` makes them
//! fire even in a session that sets `session_replication_role = replica`. Creating them takes a
//! lock that waits for the writers in flight, so once the freeze commits, no write to those
//! tables can commit after it. The sessions connected before are ended, so none of them keeps a
//! transaction open across the freeze.

use std::time::Duration;

use sqlx::PgConnection;

use crate::contract::{TABLES, Table};
use crate::sql::{ident, literal};

const SCHEMA: &str = "mfe_cutover";
const TRIGGER: &str = "mfe_cutover_frozen";

/// Ends every other session of this database; returns how many.
pub async fn end_sessions(conn: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(conn)
    .await
}

/// Why the legacy database refuses writes after a cutover.
const LEGACY_FROZEN: &str = "the legacy database is frozen: the platform was cut over to its service databases (mfe migrate cutover)";

/// Why a service database refuses writes during and after a rollback.
pub const SERVICE_FROZEN: &str = "this service database is frozen: the platform was rolled back to the legacy database (mfe migrate rollback)";

/// Freezes the legacy contract tables. Waits at most `lock_timeout` for the writers in flight.
pub async fn freeze(conn: &mut PgConnection, lock_timeout: Duration) -> sqlx::Result<()> {
    let tables: Vec<&Table> = TABLES.iter().collect();
    freeze_tables(conn, &tables, LEGACY_FROZEN, lock_timeout).await
}

/// Freezes `tables` (in `public`) of the database `conn` is connected to; writers get `why`.
pub async fn freeze_tables(
    conn: &mut PgConnection,
    tables: &[&Table],
    why: &str,
    lock_timeout: Duration,
) -> sqlx::Result<()> {
    end_sessions(&mut *conn).await?;
    let mut sql = format!(
        "BEGIN;
         SET LOCAL lock_timeout = {ms};
         -- Flushed at commit, and with it every commit before: a reader of the WAL up to the
         -- flushed position then sees every write the freeze let through.
         SET LOCAL synchronous_commit = on;
         CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE OR REPLACE FUNCTION {schema}.refuse() RETURNS trigger LANGUAGE plpgsql AS $f$
         BEGIN
             RAISE EXCEPTION {why}
                 USING ERRCODE = 'read_only_sql_transaction';
         END
         $f$;",
        ms = lock_timeout.as_millis().max(1),
        schema = ident(SCHEMA),
        why = literal(why),
    );
    for table in tables {
        let t = format!("public.{}", ident(table.name));
        sql.push_str(&format!(
            "DROP TRIGGER IF EXISTS {trigger} ON {t};
             CREATE TRIGGER {trigger} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {t}
                 FOR EACH STATEMENT EXECUTE FUNCTION {schema}.refuse();
             ALTER TABLE {t} ENABLE ALWAYS TRIGGER {trigger};",
            trigger = ident(TRIGGER),
            schema = ident(SCHEMA)
        ));
    }
    // When, for whoever watches (`mfe migrate dashboard` counts the freeze from it).
    sql.push_str(&format!(
        "CREATE TABLE IF NOT EXISTS {schema}.frozen (at TIMESTAMPTZ NOT NULL);
         DELETE FROM {schema}.frozen;
         INSERT INTO {schema}.frozen (at) VALUES (clock_timestamp());
         COMMIT;",
        schema = ident(SCHEMA)
    ));
    if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
    {
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
        return Err(e);
    }
    // Sessions that connected while the triggers were made.
    end_sessions(conn).await?;
    Ok(())
}

/// Makes the legacy database writable again.
pub async fn thaw(conn: &mut PgConnection) -> sqlx::Result<()> {
    let tables: Vec<&Table> = TABLES.iter().collect();
    thaw_tables(conn, &tables).await
}

/// The statements that thaw the legacy database, to run inside a transaction of the caller's
/// (rollback thaws in the transaction that writes the changes back).
pub fn thaw_sql() -> String {
    let tables: Vec<&Table> = TABLES.iter().collect();
    thaw_tables_sql(&tables)
}

/// Thaws `tables` of the database `conn` is connected to.
pub async fn thaw_tables(conn: &mut PgConnection, tables: &[&Table]) -> sqlx::Result<()> {
    // Bounded: dropping a trigger locks its table, and waiting behind a long reader would block
    // everyone else behind this thaw.
    let sql = format!(
        "BEGIN; SET LOCAL lock_timeout = '10s'; {} COMMIT;",
        thaw_tables_sql(tables)
    );
    if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
    {
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
        return Err(e);
    }
    Ok(())
}

fn thaw_tables_sql(tables: &[&Table]) -> String {
    let mut sql = String::new();
    for table in tables {
        sql.push_str(&format!(
            "DROP TRIGGER IF EXISTS {} ON public.{};",
            ident(TRIGGER),
            ident(table.name)
        ));
    }
    sql.push_str(&format!("DROP SCHEMA IF EXISTS {} CASCADE;", ident(SCHEMA)));
    sql
}

/// Whether the legacy database is frozen.
pub async fn is_frozen(conn: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = $1)")
        .bind(TRIGGER)
        .fetch_one(conn)
        .await
}

/// Since when the database `conn` is connected to is frozen (`None` when it is not, or was frozen
/// by a version of the tool that did not record it).
pub async fn frozen_since(
    conn: &mut PgConnection,
) -> sqlx::Result<Option<chrono::DateTime<chrono::Utc>>> {
    let recorded: bool = sqlx::query_scalar("SELECT to_regclass('mfe_cutover.frozen') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    if !recorded || !is_frozen(&mut *conn).await? {
        return Ok(None);
    }
    sqlx::query_scalar("SELECT max(at) FROM mfe_cutover.frozen")
        .fetch_one(conn)
        .await
}
