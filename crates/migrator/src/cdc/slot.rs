//! Change capture on the legacy database: a publication of the seven contract tables and a
//! logical replication slot decoding them with `pgoutput`, PostgreSQL's built-in plugin (no
//! package to install on a production server, and the format logical replication itself uses).
//!
//! The slot is made before the copy takes its snapshot, never after: a snapshot taken first
//! loses the rows committed before the slot exists (pgcopydb issue 263). Changes committed
//! between the slot and the snapshot are then both in the copy and in the stream; applying a
//! change is idempotent by primary key, so applying them again converges to the same rows (see
//! [`crate::sync::apply`]).

use sqlx::PgConnection;

use crate::cdc::pgoutput::Lsn;
use crate::engine::sql::ident;
use schema::contract::TABLES;

/// The publication the tool owns in the legacy database.
pub const PUBLICATION: &str = "mfe_migration";

/// The slot's name for the legacy database `database`: slots are per server, so two legacy
/// databases on one server (rehearsals, tests) each get their own. `[a-z0-9_]`, at most 63.
pub fn slot_name(database: &str) -> String {
    named("mfe_migration", database)
}

/// `<prefix>_<database>`, cleaned to `[a-z0-9_]` and at most 63 bytes (a hash keeps long names
/// apart).
pub(crate) fn named(prefix: &str, database: &str) -> String {
    let clean: String = database
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let mut name = format!("{prefix}_{clean}");
    if name.len() > 63 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        database.hash(&mut h);
        name.truncate(46);
        name.push_str(&format!("_{:016x}", h.finish()));
    }
    name
}

/// The slot of the database `conn` is connected to.
pub async fn slot_of(conn: &mut PgConnection) -> sqlx::Result<String> {
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(conn)
        .await?;
    Ok(slot_name(&database))
}

/// Whether the legacy server can capture changes for this role, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    Available,
    Unavailable(String),
}

pub async fn capability(conn: &mut PgConnection) -> sqlx::Result<Capability> {
    let slot = slot_of(&mut *conn).await?;
    let (wal_level, replication, owner, slots_free): (String, bool, bool, i64) = sqlx::query_as(
        "SELECT current_setting('wal_level'), \
                (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user), \
                (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) \
                  OR (SELECT coalesce(bool_and(pg_has_role(current_user, c.relowner, 'USAGE')), false) \
                      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                      WHERE n.nspname = 'public' AND c.relname = ANY($2)), \
                current_setting('max_replication_slots')::bigint \
                  - (SELECT count(*) FROM pg_replication_slots WHERE slot_name <> $1)",
    )
    .bind(&slot)
    .bind(TABLES.iter().map(|t| t.name).collect::<Vec<_>>())
    .fetch_one(conn)
    .await?;
    Ok(if wal_level != "logical" {
        Capability::Unavailable(format!(
            "the legacy server has wal_level={wal_level}; logical decoding needs wal_level=logical \
             (a restart; scripts/stack.sh configures it locally)"
        ))
    } else if !replication {
        Capability::Unavailable(
            "the tool's role has neither REPLICATION nor SUPERUSER (ALTER ROLE ... REPLICATION)"
                .into(),
        )
    } else if !owner {
        Capability::Unavailable(
            "the tool's role does not own the legacy tables (a publication of them needs it)"
                .into(),
        )
    } else if slots_free < 1 {
        Capability::Unavailable("max_replication_slots is used up on the legacy server".into())
    } else {
        Capability::Available
    })
}

/// The slot as the server sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// Changes before this were applied everywhere.
    pub confirmed: Lsn,
    /// The WAL the server keeps for the slot: from here to the current position.
    pub retained_bytes: i64,
    /// From the slot's confirmed position to the server's current one.
    pub lag_bytes: i64,
}

pub async fn info(conn: &mut PgConnection) -> sqlx::Result<Option<SlotInfo>> {
    let slot = slot_of(&mut *conn).await?;
    let row: Option<(String, i64, i64)> = sqlx::query_as(
        "SELECT coalesce(confirmed_flush_lsn, '0/0')::text, \
                coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint, \
                coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::bigint \
         FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(&slot)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(confirmed, retained_bytes, lag_bytes)| SlotInfo {
        confirmed: confirmed.parse().unwrap_or_default(),
        retained_bytes,
        lag_bytes,
    }))
}

/// How much WAL a slot may hold before `plan` and `status` warn: `MFE_SLOT_WARN_GB` (default 1).
pub fn warn_bytes() -> i64 {
    let gb = std::env::var("MFE_SLOT_WARN_GB")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|gb| gb.is_finite() && *gb >= 0.0)
        .unwrap_or(1.0);
    (gb * 1024.0 * 1024.0 * 1024.0) as i64
}

/// A warning when the slot keeps more WAL than [`warn_bytes`].
pub fn behind_warning(slot: &str, info: &SlotInfo) -> Option<String> {
    (info.retained_bytes > warn_bytes()).then(|| {
        format!(
            "the capture slot {slot} makes the legacy server keep {:.2} GB of WAL: sync it \
             (mfe migrate sync) or drop it (mfe migrate abort); an abandoned slot keeps WAL \
             without bound",
            info.retained_bytes as f64 / (1024.0 * 1024.0 * 1024.0)
        )
    })
}

/// What `plan` and `status` say of the capture.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaptureState {
    pub slot: String,
    /// Whether this server and role allow logical decoding; why not, when not.
    pub available: bool,
    pub unavailable_because: Option<String>,
    pub exists: bool,
    pub confirmed: Option<String>,
    pub lag_bytes: Option<i64>,
    pub retained_bytes: Option<i64>,
    pub warning: Option<String>,
}

pub async fn state(conn: &mut PgConnection) -> sqlx::Result<CaptureState> {
    let slot = slot_of(&mut *conn).await?;
    let capability = capability(&mut *conn).await?;
    let info = info(&mut *conn).await?;
    Ok(CaptureState {
        warning: info.as_ref().and_then(|i| behind_warning(&slot, i)),
        available: capability == Capability::Available,
        unavailable_because: match capability {
            Capability::Available => None,
            Capability::Unavailable(why) => Some(why),
        },
        exists: info.is_some(),
        confirmed: info.as_ref().map(|i| i.confirmed.to_string()),
        lag_bytes: info.as_ref().map(|i| i.lag_bytes),
        retained_bytes: info.as_ref().map(|i| i.retained_bytes),
        slot,
    })
}

/// Creates the publication (if missing) and the slot (if missing); returns the slot's
/// consistent point: every change committed after it is in the stream.
pub async fn create(conn: &mut PgConnection) -> sqlx::Result<Lsn> {
    ensure_publication(&mut *conn, PUBLICATION, TABLES.iter()).await?;
    if let Some(existing) = info(conn).await? {
        return Ok(existing.confirmed);
    }
    let slot = slot_of(&mut *conn).await?;
    create_slot(conn, &slot).await
}

/// The publication `name` of `tables` (in `public`), made if missing.
pub(crate) async fn ensure_publication<'a>(
    conn: &mut PgConnection,
    name: &str,
    tables: impl Iterator<Item = &'a schema::contract::Table>,
) -> sqlx::Result<()> {
    let published: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)")
            .bind(name)
            .fetch_one(&mut *conn)
            .await?;
    if !published {
        let tables: Vec<String> = tables
            .map(|t| format!("public.{}", ident(t.name)))
            .collect();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE PUBLICATION {} FOR TABLE {}",
            ident(name),
            tables.join(", ")
        )))
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// A `pgoutput` slot named `slot`; its consistent point.
pub(crate) async fn create_slot(conn: &mut PgConnection, slot: &str) -> sqlx::Result<Lsn> {
    let lsn: String = sqlx::query_scalar(
        "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
    )
    .bind(slot)
    .fetch_one(conn)
    .await?;
    Ok(lsn.parse().unwrap_or_default())
}

/// Drops the slot and the publication; true when there was a slot.
pub async fn drop(conn: &mut PgConnection) -> sqlx::Result<bool> {
    let slot = slot_of(&mut *conn).await?;
    drop_named(conn, &slot, PUBLICATION).await
}

/// Drops the slot `slot` and the publication `publication`; true when there was a slot.
pub(crate) async fn drop_named(
    conn: &mut PgConnection,
    slot: &str,
    publication: &str,
) -> sqlx::Result<bool> {
    // A slot being streamed (a `sync --follow`) cannot be dropped: its session is ended first,
    // as cutover's freeze ends it, and the slot is dropped once the server has let it go.
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let dropped: Option<bool> = loop {
        sqlx::query(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
             WHERE slot_name = $1 AND active_pid IS NOT NULL",
        )
        .bind(slot)
        .execute(&mut *conn)
        .await?;
        match sqlx::query_scalar(
            "SELECT pg_drop_replication_slot(slot_name) IS NULL FROM pg_replication_slots WHERE slot_name = $1",
        )
        .bind(slot)
        .fetch_optional(&mut *conn)
        .await
        {
            // 55006: still active, the ended session not gone yet.
            Err(sqlx::Error::Database(d))
                if d.code().as_deref() == Some("55006") && std::time::Instant::now() < give_up =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            other => break other?,
        }
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP PUBLICATION IF EXISTS {}",
        ident(publication)
    )))
    .execute(conn)
    .await?;
    Ok(dropped.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_legacy_database_has_a_slot_of_its_own_within_postgresql_limits() {
        assert_eq!(slot_name("mfe_poc2"), "mfe_migration_mfe_poc2");
        assert_eq!(slot_name("Test-DB"), "mfe_migration_test_db");
        let long = "x".repeat(80);
        assert!(slot_name(&long).len() <= 63);
        assert_ne!(slot_name(&long), slot_name(&"x".repeat(81)));
    }
}
