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
use crate::error::{MigrateError, Result};
use schema::contract::{Table, tables_of};

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
        MigrateError::WayBack(format!(
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
        "SELECT coalesce(confirmed_flush_lsn, '0/0')::text, \
                coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::bigint, \
                coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint \
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

/// Keys handed to the stager at a time.
const STAGE_KEYS: usize = 20_000;

/// A batch of changed keys, each with whether its first change since cutover was an insert.
pub type Batch = Vec<(Changed, bool)>;

/// Reads the way-back slot of `service`'s database (`url`, `conn`) to its end over the
/// replication protocol ([`crate::cdc::stream`]) and hands the changed keys to `sink` in batches
/// (a key may come in several). Returns the number of keys read.
///
/// The slot is not confirmed: it stays where cutover made it until the rollback's write-back has
/// committed (a rollback killed before reads it again), and is dropped after. The database must
/// be frozen: a fence written now is then the end of the stream.
pub async fn drain(
    url: &str,
    conn: &mut PgConnection,
    service: Service,
    sink: tokio::sync::mpsc::Sender<Batch>,
) -> Result<u64> {
    let name = slot_of(&mut *conn).await?;
    let Some(way) = info(&mut *conn).await? else {
        return Err(MigrateError::WayBack(format!(
            "the {} database has no way-back slot {name}",
            service.name()
        )));
    };
    let fence = write_fence(&mut *conn, FENCE_PREFIX).await?;
    let mut stream = Stream::open(url, &name, PUBLICATION, way.confirmed).await?;
    let read = read_to_fence(&mut stream, service, &sink, &fence).await;
    stream.close().await;
    read
}

async fn read_to_fence(
    stream: &mut Stream,
    service: Service,
    sink: &tokio::sync::mpsc::Sender<Batch>,
    fence: &str,
) -> Result<u64> {
    let mut keys = ChangedKeys::new(service);
    let mut total = 0u64;
    let mut fenced = false;
    loop {
        let Some(event) = stream.next().await? else {
            return Err(MigrateError::Stream(format!(
                "the {} database ended the way back's stream before its end",
                service.name()
            )));
        };
        let Event::Message(message) = event else {
            continue;
        };
        match message {
            Message::Logical {
                prefix, content, ..
            } if prefix == FENCE_PREFIX && content == fence.as_bytes() => fenced = true,
            Message::Commit { .. } => {
                if fenced || keys.changed.len() >= STAGE_KEYS {
                    total += keys.changed.len() as u64;
                    let batch = std::mem::take(&mut keys.changed).into_iter().collect();
                    if sink.send(batch).await.is_err() {
                        // The stager stopped: its error is the rollback's.
                        return Ok(total);
                    }
                }
                if fenced {
                    return Ok(total);
                }
            }
            other => keys.note(other)?,
        }
    }
}

/// The keys a service database's stream changed, as its messages describe them.
struct ChangedKeys {
    service: Service,
    tables: Vec<&'static Table>,
    /// pgoutput relation id -> (table, position of its key in the stream's tuples).
    relations: std::collections::HashMap<u32, (&'static Table, usize)>,
    /// Key -> whether its first change since cutover was an insert: most likely a row legacy
    /// never had, which the write-back inserts without an upsert's conflict check (unless the
    /// forward sync inserted it after the way back was captured: legacy has those).
    changed: std::collections::HashMap<Changed, bool>,
}

impl ChangedKeys {
    fn new(service: Service) -> Self {
        Self {
            service,
            tables: tables_of(service).collect(),
            relations: std::collections::HashMap::new(),
            changed: std::collections::HashMap::new(),
        }
    }

    /// Takes in a message of the stream (other than the fence and a commit).
    fn note(&mut self, message: Message) -> Result<()> {
        match message {
            Message::Relation(rel) => self.describe(&rel)?,
            Message::Insert { relation, new } => {
                let key = self.key_of(relation, &new)?;
                self.changed.entry(key).or_insert(true);
            }
            Message::Update { relation, old, new } => {
                let key = self.key_of(relation, &new)?;
                self.changed.entry(key).or_insert(false);
                if let Some(old) = old {
                    let key = self.key_of(relation, old.values())?;
                    self.changed.entry(key).or_insert(false);
                }
            }
            Message::Delete { relation, old } => {
                let key = self.key_of(relation, old.values())?;
                self.changed.entry(key).or_insert(false);
            }
            Message::Truncate {
                relations: rels, ..
            } => {
                for relation in rels {
                    let (table, _) = self.relations.get(&relation).ok_or_else(|| {
                        MigrateError::Stream(format!(
                            "a truncate names relation {relation}, which the stream did not describe"
                        ))
                    })?;
                    let whole = Changed {
                        table: table.name,
                        key: "*".into(),
                    };
                    self.changed.insert(whole, false);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A relation the stream describes: one of the service's tables, with its key column.
    fn describe(&mut self, rel: &crate::cdc::pgoutput::Relation) -> Result<()> {
        let service = self.service.name();
        let table = self
            .tables
            .iter()
            .find(|t| t.name == rel.name && rel.namespace == "public")
            .ok_or_else(|| {
                MigrateError::Stream(format!(
                    "the way back carries table {}.{}, which {service} does not own",
                    rel.namespace, rel.name,
                ))
            })?;
        let at = rel
            .columns
            .iter()
            .position(|c| c.name == table.key)
            .ok_or_else(|| {
                MigrateError::Stream(format!(
                    "the {service} table {} lost its key column {}",
                    table.name, table.key
                ))
            })?;
        self.relations.insert(rel.oid, (*table, at));
        Ok(())
    }

    fn key_of(&self, relation: u32, values: &[Value]) -> Result<Changed> {
        let (table, at) = self.relations.get(&relation).ok_or_else(|| {
            MigrateError::Stream(format!(
                "a change names relation {relation}, which the stream did not describe"
            ))
        })?;
        match values.get(*at) {
            Some(Value::Text(key)) => Ok(Changed {
                table: table.name,
                key: key.clone(),
            }),
            _ => Err(MigrateError::Stream(format!(
                "a change of {} carries no key",
                table.name
            ))),
        }
    }
}

/// The temporary table of the write-back's transaction the changed keys are staged in: a key
/// may be there more than once, its first change the one of lowest `seq`. Indexed once loaded
/// ([`STAGED_INDEX_SQL`]): appending and then sorting once is cheaper than a unique index kept
/// up to date under random keys.
pub const STAGED_SQL: &str = "CREATE TEMP TABLE staged (table_name TEXT NOT NULL, key TEXT NOT NULL, \
     fresh BOOLEAN NOT NULL DEFAULT false, seq BIGINT NOT NULL DEFAULT 0) ON COMMIT DROP";

pub const STAGED_INDEX_SQL: &str = "CREATE INDEX ON staged (table_name, key, seq)";

/// Stages a batch of changed keys, numbered from `seq` on (a service's keys come in its stream's
/// order); returns the next number.
pub async fn stage(conn: &mut PgConnection, batch: Batch, mut seq: i64) -> Result<i64> {
    for chunk in batch.chunks(10_000) {
        let tables: Vec<&str> = chunk.iter().map(|(c, _)| c.table).collect();
        let keys: Vec<&str> = chunk.iter().map(|(c, _)| c.key.as_str()).collect();
        let fresh: Vec<bool> = chunk.iter().map(|(_, f)| *f).collect();
        sqlx::query(
            "INSERT INTO staged (table_name, key, fresh, seq) \
             SELECT t, k, f, $4 + n FROM unnest($1::text[], $2::text[], $3::bool[]) \
                 WITH ORDINALITY AS u (t, k, f, n)",
        )
        .bind(tables)
        .bind(keys)
        .bind(fresh)
        .bind(seq)
        .execute(&mut *conn)
        .await?;
        seq += chunk.len() as i64;
    }
    Ok(seq)
}
