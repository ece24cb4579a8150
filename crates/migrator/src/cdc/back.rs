//! The way back: from cutover on, every change the services make to their contract tables is
//! captured in their own databases, so that `mfe migrate rollback` can write it back into the
//! legacy database.
//!
//! Cutover makes, on each service database, a publication of the service's contract tables and a
//! logical slot decoding them (`pgoutput`, as on the legacy side), inside its freeze: after the
//! last forward change was applied and before any service writes there. Nothing reads the slot
//! until a rollback; its position is where the way back starts, and the WAL it keeps is what
//! `status` reports as how far behind the way back is.
//!
//! Rollback does not replay the stream row image by row image: it only needs to know *which*
//! rows changed. The service databases are frozen when it reads them, so their current rows are
//! the final state of every changed row; present means write it back, absent means delete it.
//! That makes the staging idempotent (a key seen twice is one key), survives TOASTed columns the
//! stream leaves out, and lets the write-back order rows by the legacy foreign keys rather than
//! by the order the services happened to write them.

use platform::Service;
use sqlx::PgConnection;

use crate::cdc::pgoutput::{Lsn, Message, Value};
use crate::cdc::slot::{self, named};
use crate::cdc::stream::{Event, Stream, write_fence};
use crate::contract::{Table, tables_of};
use crate::error::{MigrateError, Result};

/// The publication of the way back, in each service database.
pub const PUBLICATION: &str = "mfe_rollback";

/// The way-back slot of the service database `database`.
pub fn slot_name(database: &str) -> String {
    named("mfe_rollback", database)
}

async fn slot_of(conn: &mut PgConnection) -> sqlx::Result<String> {
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(conn)
        .await?;
    Ok(slot_name(&database))
}

/// Makes the publication and the slot of `service`'s database (idempotent); returns the slot's
/// consistent point.
pub async fn create(conn: &mut PgConnection, service: Service) -> Result<Lsn> {
    slot::ensure_publication(&mut *conn, PUBLICATION, tables_of(service)).await?;
    if let Some(existing) = info(conn).await? {
        return Ok(existing.confirmed);
    }
    let name = slot_of(&mut *conn).await?;
    slot::create_slot(conn, &name).await.map_err(|e| {
        MigrateError::Other(format!(
            "cannot make the way-back slot {name} (the service database's server needs \
             wal_level=logical and a free replication slot; scripts/stack.sh configures it): {e}"
        ))
    })
}

/// Drops the slot and the publication; true when there was a slot.
pub async fn drop(conn: &mut PgConnection) -> sqlx::Result<bool> {
    let name = slot_of(&mut *conn).await?;
    slot::drop_named(conn, &name, PUBLICATION).await
}

/// The way-back slot as the server sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WayBack {
    pub slot: String,
    #[serde(serialize_with = "as_text")]
    pub confirmed: Lsn,
    /// WAL written since the slot's position: changes a rollback would still have to read.
    pub behind_bytes: i64,
    /// WAL the server keeps for the slot.
    pub retained_bytes: i64,
}

fn as_text<S: serde::Serializer>(lsn: &Lsn, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&lsn.to_string())
}

pub async fn info(conn: &mut PgConnection) -> sqlx::Result<Option<WayBack>> {
    let slot = slot_of(&mut *conn).await?;
    let row: Option<(String, i64, i64)> = sqlx::query_as(
        "SELECT confirmed_flush_lsn::text, \
                pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint, \
                pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint \
         FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(&slot)
    .fetch_optional(conn)
    .await?;
    Ok(
        row.map(|(confirmed, behind_bytes, retained_bytes)| WayBack {
            confirmed: confirmed.parse().unwrap_or_default(),
            behind_bytes,
            retained_bytes,
            slot,
        }),
    )
}

/// A row key the services changed since cutover (`*`: the whole table, truncated).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Changed {
    pub table: &'static str,
    pub key: String,
}

/// The prefix of the fence that ends the way back's stream.
const FENCE_PREFIX: &str = "mfe-rollback-fence";

/// Keys staged at a time (then the slot is confirmed past them).
const STAGE_KEYS: usize = 50_000;

/// Reads the way-back slot of `service`'s database (`url`, `conn`) to its end over the
/// replication protocol ([`crate::cdc::stream`]), and records the changed keys in
/// `mfe_rollback.changed` of `staging` (the legacy database), confirming the slot past them once
/// they are recorded. Returns the number of keys read.
///
/// The database must be frozen: a fence written now is then the end of the stream.
pub async fn drain(
    url: &str,
    conn: &mut PgConnection,
    service: Service,
    staging: &mut PgConnection,
) -> Result<u64> {
    let name = slot_of(&mut *conn).await?;
    let Some(way) = info(&mut *conn).await? else {
        return Err(MigrateError::Other(format!(
            "the {} database has no way-back slot {name}",
            service.name()
        )));
    };
    let fence = write_fence(&mut *conn, FENCE_PREFIX).await?;
    let mut stream = Stream::open(url, &name, PUBLICATION, way.confirmed).await?;
    let read = read_to_fence(&mut stream, service, staging, &fence).await;
    stream.close().await;
    read
}

async fn read_to_fence(
    stream: &mut Stream,
    service: Service,
    staging: &mut PgConnection,
    fence: &str,
) -> Result<u64> {
    let tables: Vec<&'static Table> = tables_of(service).collect();
    // pgoutput relation id -> (table, position of its key in the stream's tuples).
    let mut relations: std::collections::HashMap<u32, (&'static Table, usize)> =
        std::collections::HashMap::new();
    let mut changed = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut fenced = false;
    loop {
        let Some(event) = stream.next().await? else {
            return Err(MigrateError::Other(format!(
                "the {} database ended the way back's stream before its end",
                service.name()
            )));
        };
        let Event::Message(message) = event else {
            continue;
        };
        let key_of = |relation: u32, values: &[Value]| -> Result<Changed> {
            let (table, at) = relations.get(&relation).ok_or_else(|| {
                MigrateError::Other(format!(
                    "a change names relation {relation}, which the stream did not describe"
                ))
            })?;
            match values.get(*at) {
                Some(Value::Text(key)) => Ok(Changed {
                    table: table.name,
                    key: key.clone(),
                }),
                _ => Err(MigrateError::Other(format!(
                    "a change of {} carries no key",
                    table.name
                ))),
            }
        };
        match message {
            Message::Relation(rel) => {
                let table = tables
                    .iter()
                    .find(|t| t.name == rel.name && rel.namespace == "public")
                    .ok_or_else(|| {
                        MigrateError::Other(format!(
                            "the way back carries table {}.{}, which {} does not own",
                            rel.namespace,
                            rel.name,
                            service.name()
                        ))
                    })?;
                let at = rel
                    .columns
                    .iter()
                    .position(|c| c.name == table.key)
                    .ok_or_else(|| {
                        MigrateError::Other(format!(
                            "the {} table {} lost its key column {}",
                            service.name(),
                            table.name,
                            table.key
                        ))
                    })?;
                relations.insert(rel.oid, (*table, at));
            }
            Message::Insert { relation, new } => {
                changed.insert(key_of(relation, &new)?);
            }
            Message::Update { relation, old, new } => {
                changed.insert(key_of(relation, &new)?);
                if let Some(old) = old {
                    changed.insert(key_of(relation, old.values())?);
                }
            }
            Message::Delete { relation, old } => {
                changed.insert(key_of(relation, old.values())?);
            }
            Message::Truncate {
                relations: rels, ..
            } => {
                for relation in rels {
                    let (table, _) = relations.get(&relation).ok_or_else(|| {
                        MigrateError::Other(format!(
                            "a truncate names relation {relation}, which the stream did not describe"
                        ))
                    })?;
                    changed.insert(Changed {
                        table: table.name,
                        key: "*".into(),
                    });
                }
            }
            Message::Logical {
                prefix, content, ..
            } if prefix == FENCE_PREFIX && content == fence.as_bytes() => fenced = true,
            Message::Commit { end_lsn, .. } => {
                if fenced || changed.len() >= STAGE_KEYS {
                    total += changed.len() as u64;
                    stage(staging, std::mem::take(&mut changed).into_iter().collect()).await?;
                    stream.confirm(end_lsn);
                }
                if fenced {
                    return Ok(total);
                }
            }
            _ => {}
        }
    }
}

/// Records changed keys (idempotent: a key staged twice is one key).
async fn stage(staging: &mut PgConnection, changed: Vec<Changed>) -> Result<()> {
    for chunk in changed.chunks(10_000) {
        let tables: Vec<&str> = chunk.iter().map(|c| c.table).collect();
        let keys: Vec<&str> = chunk.iter().map(|c| c.key.as_str()).collect();
        sqlx::query(
            "INSERT INTO mfe_rollback.changed (table_name, key) \
             SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
        )
        .bind(tables)
        .bind(keys)
        .execute(&mut *staging)
        .await?;
    }
    Ok(())
}
