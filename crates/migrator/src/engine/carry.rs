//! The services' own state, carried from one topology's databases to the other's when the
//! platform switches (cutover: legacy to service databases; rollback: back).
//!
//! Each service keeps tables of its own beside the contract tables, in its schema (`auth`,
//! `payments`, ...): the outbox of events not yet published, the inbox of events already applied,
//! payment jobs and idempotency keys, rotated refresh tokens, deleted users. In the shared
//! topology they live in the legacy database, in the split one in the service's database. Left
//! behind, an event recorded but not yet published would never be published, an event applied
//! could be applied again, a payment in flight would never finish. So the switch makes every such
//! table on the other side equal to this side's, while the services are stopped: the side
//! switched from is the one that ran last, and its tables hold everything the other side's did
//! (carried to it at the previous switch) plus what happened since, minus what it purged (a
//! published event purged there and left on the other side would be published twice).
//!
//! The audit chain (`admin.audit_chain`, `audit_anchor`, `audit_chain_head`) goes along only to a
//! side that has none: a side with a chain of its own keeps it, and the audit rows the switch
//! brought in are anchored there by `mfe migrate` (admin's `anchor`), as `mfe admin anchor-audit`
//! would.

use futures::TryStreamExt;
use platform::Service;
use serde::Serialize;
use sqlx::PgConnection;

use crate::engine::sql::ident;
use crate::error::{MigrateError, Result};

/// Tables of a service schema that are not carried.
const NOT_CARRIED: &[&str] = &[
    "_sqlx_migrations",
    "audit_chain",
    "audit_anchor",
    "audit_chain_head",
];

/// Tables merged rather than made equal: each side records there what happened on it (admin's
/// audit references a foreign key cleared), and both sides' records hold.
const MERGED: &[&str] = &["audit_cleared_refs"];

/// Rows per statement.
const BATCH: usize = 2000;

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Carried {
    pub table: String,
    pub rows: u64,
}

/// Makes `service`'s own tables in `to` equal to those in `from`, after bringing `to`'s schema of
/// the service up to date with its migrations; in one transaction of `to`. Idempotent.
pub async fn carry(
    from: &mut PgConnection,
    to: &mut PgConnection,
    service: Service,
) -> Result<Vec<Carried>> {
    let schema = service.schema();
    // Admin's audit chain covers its side's audit rows, which the switch has just made equal on
    // both sides: a side without a chain gets this one (else admin there would find its inbox
    // full and its chain empty, and take it for a deleted chain); a side with its own keeps it
    // (`mfe migrate` anchors the rows the switch brought in).
    let chain_carried =
        service == Service::Admin && has_chain(&mut *from).await? && !has_chain(&mut *to).await?;
    let not_carried: &[&str] = if chain_carried {
        &NOT_CARRIED[..1]
    } else {
        NOT_CARRIED
    };
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind = 'r' AND NOT (c.relname = ANY($2)) ORDER BY 1",
    )
    .bind(schema)
    .bind(not_carried)
    .fetch_all(&mut *from)
    .await?;
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    schema::migrator(service)
        .run(&mut *to)
        .await
        .map_err(|source| MigrateError::Migrations {
            target: format!("{} (to carry its state over)", service.name()),
            source,
        })?;
    let mut out = Vec::new();
    sqlx::raw_sql("BEGIN").execute(&mut *to).await?;
    let copied = copy_tables(from, to, schema, &tables, &mut out).await;
    match copied {
        Ok(()) => {
            sqlx::raw_sql("COMMIT").execute(&mut *to).await?;
            Ok(out)
        }
        Err(e) => {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *to).await;
            Err(e)
        }
    }
}

/// Whether admin's audit chain has entries in the database `conn` is connected to.
async fn has_chain(conn: &mut PgConnection) -> Result<bool> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('admin.audit_chain_head') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await?;
    if !exists {
        return Ok(false);
    }
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM admin.audit_chain_head)")
            .fetch_one(conn)
            .await?,
    )
}

async fn copy_tables(
    from: &mut PgConnection,
    to: &mut PgConnection,
    schema: &str,
    tables: &[String],
    out: &mut Vec<Carried>,
) -> Result<()> {
    for table in tables {
        let qualified = format!("{}.{}", ident(schema), ident(table));
        let shape = shape_of(to, &qualified).await?;
        let merged = MERGED.contains(&table.as_str());
        if !merged {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DELETE FROM {qualified}")))
                .execute(&mut *to)
                .await?;
        }
        let list = shape
            .columns
            .iter()
            .map(|c| ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let insert = format!(
            "INSERT INTO {qualified} ({list}) SELECT {list} FROM json_populate_recordset(NULL::{qualified}, $1::json){}",
            if merged {
                " ON CONFLICT DO NOTHING"
            } else {
                ""
            }
        );
        let mut rows = 0u64;
        // JSON text as PostgreSQL prints it: a number keeps every digit and its scale.
        let mut batch: Vec<String> = Vec::with_capacity(BATCH);
        let select = format!(
            "SELECT row_to_json(t)::text FROM {qualified} t ORDER BY {}",
            shape.order
        );
        let mut stream =
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(select)).fetch(&mut *from);
        // Rows go out in batches on the other connection while this one streams.
        while let Some(row) = stream.try_next().await? {
            batch.push(row);
            if batch.len() == BATCH {
                rows += write(&mut *to, &insert, std::mem::take(&mut batch)).await?;
            }
        }
        drop(stream);
        rows += write(&mut *to, &insert, batch).await?;
        out.push(Carried {
            table: format!("{schema}.{table}"),
            rows,
        });
    }
    Ok(())
}

/// How a service's own table is carried: the columns written, and the order rows go in.
struct Shape {
    /// Every column but an identity (numbered by the side carried to) and generated ones.
    columns: Vec<String>,
    /// The identity column (the outbox's `seq`, its publishing order), else the primary key.
    order: String,
}

/// The shape of `qualified` on the side carried to; refused without a primary key (its rows
/// could not be merged).
async fn shape_of(to: &mut PgConnection, qualified: &str) -> Result<Shape> {
    let key: Vec<String> = sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
         WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY a.attnum",
    )
    .bind(qualified)
    .fetch_all(&mut *to)
    .await?;
    // (name, is an identity column): an identity is numbered by the side carried to, after its
    // own rows, in the order carried. Generated columns are computed by the side carried to.
    let all: Vec<(String, bool)> = sqlx::query_as(
        "SELECT attname::text, attidentity <> '' FROM pg_attribute WHERE attrelid = to_regclass($1) \
         AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
    )
    .bind(qualified)
    .fetch_all(&mut *to)
    .await?;
    let order = all
        .iter()
        .find(|(_, identity)| *identity)
        .map(|(c, _)| ident(c))
        .unwrap_or_else(|| key.iter().map(|k| ident(k)).collect::<Vec<_>>().join(", "));
    let columns: Vec<String> = all
        .into_iter()
        .filter(|(_, identity)| !identity)
        .map(|(c, _)| c)
        .collect();
    if key.is_empty() || columns.is_empty() {
        return Err(MigrateError::Carry(format!(
            "{qualified} has no primary key on the side it is carried to: its rows cannot be merged"
        )));
    }
    Ok(Shape { columns, order })
}

async fn write(to: &mut PgConnection, insert: &str, batch: Vec<String>) -> Result<u64> {
    if batch.is_empty() {
        return Ok(0);
    }
    Ok(sqlx::query(sqlx::AssertSqlSafe(insert.to_string()))
        .bind(format!("[{}]", batch.join(",")))
        .execute(to)
        .await?
        .rows_affected())
}
