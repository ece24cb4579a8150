//! The legacy relations a stream describes: which contract table each is, whether it still has
//! the columns it had when the sync started, and where each contract column sits in its tuples.

use std::collections::HashMap;

use sqlx::PgConnection;

use crate::cdc::pgoutput::{Relation, Value};
use crate::error::{MigrateError, Result};
use schema::contract::{TABLES, Table};

/// The legacy columns of the contract tables: (name, type oid, typmod) in column order.
pub type Catalog = HashMap<String, Vec<(String, u32, i32)>>;

pub async fn legacy_catalog(conn: &mut PgConnection) -> Result<Catalog> {
    let rows: Vec<(String, String, i64, i32)> = sqlx::query_as(
        "SELECT c.relname::text, a.attname::text, a.atttypid::bigint, a.atttypmod \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relname = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY c.relname, a.attnum",
    )
    .bind(TABLES.iter().map(|t| t.name).collect::<Vec<_>>())
    .fetch_all(conn)
    .await?;
    let mut out: Catalog = HashMap::new();
    for (table, column, oid, typmod) in rows {
        out.entry(table)
            .or_default()
            .push((column, oid as u32, typmod));
    }
    Ok(out)
}

pub struct Relations {
    catalog: Catalog,
    /// pgoutput relation id -> contract table, and for each contract column its position in the
    /// stream's tuples.
    known: HashMap<u32, (&'static Table, Vec<usize>)>,
}

impl Relations {
    pub fn new(catalog: Catalog) -> Self {
        Self {
            catalog,
            known: HashMap::new(),
        }
    }

    /// A relation message: refused when the legacy table's columns changed since the start.
    pub fn describe(&mut self, rel: &Relation) -> Result<()> {
        let table = TABLES
            .iter()
            .find(|t| t.name == rel.name && rel.namespace == "public")
            .ok_or_else(|| {
                MigrateError::Stream(format!(
                    "the stream carries table {}.{}, which is not in the contract",
                    rel.namespace, rel.name
                ))
            })?;
        let seen: Vec<(String, u32, i32)> = rel
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.type_oid, c.type_modifier))
            .collect();
        let expected = self.catalog.get(table.name);
        let mut names: Vec<&str> = seen.iter().map(|(n, _, _)| n.as_str()).collect();
        let mut contract: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
        names.sort_unstable();
        contract.sort_unstable();
        if expected != Some(&seen) || names != contract {
            return Err(MigrateError::Stream(format!(
                "the legacy table {} changed while syncing (its columns are now {}); the sync \
                 stopped before applying anything of that transaction. Bring the service \
                 databases' schema in line (and the contract), then copy again",
                table.name,
                seen.iter()
                    .map(|(n, _, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let order = table
            .columns
            .iter()
            .map(|c| {
                rel.columns
                    .iter()
                    .position(|r| r.name == c.name)
                    .ok_or_else(|| {
                        MigrateError::Stream(format!(
                            "the legacy table {} has no column {}",
                            table.name, c.name
                        ))
                    })
            })
            .collect::<Result<Vec<usize>>>()?;
        self.known.insert(rel.oid, (table, order));
        Ok(())
    }

    fn get(&self, relation: u32) -> Result<&(&'static Table, Vec<usize>)> {
        self.known.get(&relation).ok_or_else(|| {
            MigrateError::Stream(format!(
                "a change names relation {relation}, which the stream did not describe"
            ))
        })
    }

    pub fn table(&self, relation: u32) -> Result<&'static Table> {
        Ok(self.get(relation)?.0)
    }

    /// Where the key sits in the stream's tuples of `relation`.
    pub fn key_index(&self, relation: u32) -> Result<usize> {
        let (table, order) = self.get(relation)?;
        Ok(order[table.key_index()])
    }

    /// A tuple of the stream in contract column order.
    pub fn in_contract_order(&self, relation: u32, values: Vec<Value>) -> Result<Vec<Value>> {
        let (table, order) = self.get(relation)?;
        if values.len() != order.len() {
            return Err(MigrateError::Stream(format!(
                "a change of {} has {} columns, the table {}",
                table.name,
                values.len(),
                order.len()
            )));
        }
        let mut values: Vec<Option<Value>> = values.into_iter().map(Some).collect();
        Ok(order
            .iter()
            .map(|&p| values[p].take().unwrap_or(Value::Null))
            .collect())
    }
}
