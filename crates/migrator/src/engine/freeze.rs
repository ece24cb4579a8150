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
//!
//! The services' own tables (their schemas) are frozen with the contract tables: a service still
//! running on the frozen side gets SQLSTATE 25006 for its outbox and inbox too, which its
//! consumers wait out as an outage, instead of writing what the switch would leave behind.

use std::time::Duration;

use sqlx::PgConnection;

use platform::Service;

use crate::engine::sql::{ident, literal};
use schema::contract::{TABLES, Table};

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

/// Freezes the legacy database: the contract tables and the services' own tables there (their
/// schemas: outbox, inbox, jobs, idempotency keys), which a service still running on it would
/// otherwise go on writing after `carry` copied them. Waits at most `lock_timeout` for the
/// writers in flight.
pub async fn freeze(conn: &mut PgConnection, lock_timeout: Duration) -> sqlx::Result<()> {
    let mut relations: Vec<String> = TABLES.iter().map(public).collect();
    let schemas: Vec<&str> = Service::ALL.iter().map(|s| s.schema()).collect();
    relations.extend(own_tables(&mut *conn, &schemas).await?);
    freeze_relations(conn, &relations, LEGACY_FROZEN, lock_timeout).await
}

/// Freezes `service`'s database during and after a rollback: its contract tables and its own.
pub async fn freeze_service(
    conn: &mut PgConnection,
    service: Service,
    lock_timeout: Duration,
) -> sqlx::Result<()> {
    let mut relations: Vec<String> = schema::contract::tables_of(service).map(public).collect();
    relations.extend(own_tables(&mut *conn, &[service.schema()]).await?);
    freeze_relations(conn, &relations, SERVICE_FROZEN, lock_timeout).await
}

fn public(table: &Table) -> String {
    format!("public.{}", ident(table.name))
}

/// The tables of `schemas` in the database `conn` is connected to, qualified and quoted.
async fn own_tables(conn: &mut PgConnection, schemas: &[&str]) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p') ORDER BY 1",
    )
    .bind(schemas)
    .fetch_all(conn)
    .await
}

/// Freezes `relations` (qualified, quoted) of the database `conn` is connected to; writers get
/// `why`.
async fn freeze_relations(
    conn: &mut PgConnection,
    relations: &[String],
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
    for t in relations {
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

/// Makes the database `conn` is connected to writable again (legacy after a failed cutover, a
/// service database after a failed rollback).
pub async fn thaw(conn: &mut PgConnection) -> sqlx::Result<()> {
    // Bounded: dropping a trigger locks its table, and waiting behind a long reader would block
    // everyone else behind this thaw.
    let sql = format!(
        "BEGIN; SET LOCAL lock_timeout = '10s'; {} COMMIT;",
        thaw_sql()
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

/// The statements that thaw a database, to run inside a transaction of the caller's (rollback
/// thaws legacy in the transaction that writes the changes back): every table the freeze
/// trigger is on, whichever tables that was.
pub fn thaw_sql() -> String {
    format!(
        "DO $thaw$
         DECLARE r record;
         BEGIN
             FOR r IN SELECT DISTINCT tgrelid::regclass AS rel FROM pg_trigger
                      WHERE tgname = {name} LOOP
                 EXECUTE format('DROP TRIGGER %I ON %s', {name}, r.rel);
             END LOOP;
         END
         $thaw$;
         DROP SCHEMA IF EXISTS {schema} CASCADE;",
        name = literal(TRIGGER),
        schema = ident(SCHEMA)
    )
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
