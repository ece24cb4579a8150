//! Legacy's own foreign-key rules for the parents the services deleted after cutover.
//!
//! The split dropped the foreign keys between services; legacy kept them, with their `ON DELETE`
//! actions. A user an admin deleted in auth after cutover is deleted in legacy as legacy itself
//! would have deleted it: `CASCADE` children (profile, refresh tokens) go with it, `SET NULL`
//! children (audit rows, payments received) lose the reference. Only a `RESTRICT` (or `NO
//! ACTION`) child that still points to it keeps the parent: that is a conflict, and a kept user's
//! password is locked so that the account the services deleted cannot log in.
//!
//! What the actions do is recorded first, row by row, in `mfe_rollback.cleared` (per cutover), so
//! the operator can see it and verify can tell it from a difference. Admin's audit chain keeps
//! verifying: its own trigger records the audit references `SET NULL` clears (admin's migrations
//! are applied to legacy before the deletes for that).

use std::collections::HashMap;

use sqlx::PgConnection;

use crate::engine::sql::ident;
use crate::error::Result;
use schema::contract::{FOREIGN_KEYS, ForeignKey, Table};

/// A row of `mfe_rollback.cleared`, recorded again by a rollback run again.
const CLEARED_INSERT: &str = "INSERT INTO mfe_rollback.cleared \
     (cutover, table_name, key, column_name, action, parent_table, parent_key)";
const CLEARED_CONFLICT: &str = "ON CONFLICT (cutover, table_name, key, column_name) \
     DO UPDATE SET action = EXCLUDED.action, at = now()";

pub(super) const CLEARED_SQL: &str = "
CREATE TABLE IF NOT EXISTS mfe_rollback.cleared (
    cutover TEXT NOT NULL,
    table_name TEXT NOT NULL,
    key TEXT NOT NULL,
    -- The referencing column; the row was deleted (cascade) or the column set to NULL.
    column_name TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('cascade', 'set null')),
    parent_table TEXT NOT NULL,
    parent_key TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (cutover, table_name, key, column_name)
);";

/// A foreign key's `ON DELETE`, as the legacy catalog says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnDelete {
    /// `RESTRICT`, `NO ACTION`, `SET DEFAULT`: the parent stays while a child points to it.
    Refuse,
    Cascade,
    SetNull,
}

impl OnDelete {
    fn action(self) -> Option<&'static str> {
        match self {
            OnDelete::Refuse => None,
            OnDelete::Cascade => Some("cascade"),
            OnDelete::SetNull => Some("set null"),
        }
    }
}

/// The contract's foreign keys present in legacy, with their `ON DELETE`.
#[derive(Debug, Default)]
pub(super) struct Rules(HashMap<&'static str, OnDelete>);

impl Rules {
    pub(super) async fn read(conn: &mut PgConnection) -> Result<Self> {
        let names: Vec<&str> = FOREIGN_KEYS.iter().map(|f| f.name).collect();
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT c.conname::text, c.confdeltype::text FROM pg_constraint c \
             JOIN pg_class t ON t.oid = c.conrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace \
             WHERE n.nspname = 'public' AND c.contype = 'f' AND c.conname = ANY($1)",
        )
        .bind(&names)
        .fetch_all(conn)
        .await?;
        let mut rules = HashMap::new();
        for (name, kind) in rows {
            if let Some(fk) = FOREIGN_KEYS.iter().find(|f| f.name == name) {
                let on_delete = match kind.as_str() {
                    "c" => OnDelete::Cascade,
                    "n" => OnDelete::SetNull,
                    _ => OnDelete::Refuse,
                };
                rules.insert(fk.name, on_delete);
            }
        }
        Ok(Self(rules))
    }

    /// The foreign keys to `table` that keep a parent while a child points to it.
    pub(super) fn refusing<'a>(
        &'a self,
        table: &'a Table,
    ) -> impl Iterator<Item = &'static ForeignKey> + 'a {
        self.children(table)
            .filter(|(_, rule)| *rule == OnDelete::Refuse)
            .map(|(fk, _)| fk)
    }

    /// The children of `table` in legacy and what deleting a parent does to them.
    fn children<'a>(
        &'a self,
        table: &'a Table,
    ) -> impl Iterator<Item = (&'static ForeignKey, OnDelete)> + 'a {
        FOREIGN_KEYS
            .iter()
            .filter(move |fk| fk.references == table.name)
            .filter_map(|fk| self.0.get(fk.name).map(|rule| (fk, *rule)))
    }
}

/// A row one of legacy's actions changed: its table and key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Acted {
    pub table: &'static str,
    pub key: String,
    pub cascade: bool,
    /// Legacy had the row (a cascade deleted it there); false for a row never written because
    /// its parent is gone.
    pub in_legacy: bool,
}

/// Deletes the rows of `table` (a parent) gone from its service database that no refusing child
/// points to any more, letting legacy's `CASCADE` and `SET NULL` act, after recording what they
/// will do. Returns how many rows were deleted and the rows the actions changed.
pub(super) async fn delete_parents(
    tx: &mut PgConnection,
    table: &'static Table,
    rules: &Rules,
    cutover: &str,
) -> Result<(u64, Vec<Acted>)> {
    let refusing: String = rules
        .children(table)
        .filter(|(_, rule)| *rule == OnDelete::Refuse)
        .map(|(fk, _)| {
            format!(
                " AND NOT EXISTS (SELECT 1 FROM public.{c} c WHERE c.{col} = t.{k})",
                c = ident(fk.table),
                col = ident(fk.column),
                k = ident(table.key)
            )
        })
        .collect();
    sqlx::raw_sql(
        "CREATE TEMP TABLE IF NOT EXISTS going (key TEXT PRIMARY KEY) ON COMMIT DROP; \
         TRUNCATE going",
    )
    .execute(&mut *tx)
    .await?;
    let going = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO going (key) SELECT a.key FROM fetched a JOIN public.{t} t ON t.{k} = a.key \
         WHERE a.table_name = $1 AND a.digest IS NULL{refusing}",
        t = ident(table.name),
        k = ident(table.key)
    )))
    .bind(table.name)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if going == 0 {
        return Ok((0, Vec::new()));
    }
    let mut acted = Vec::new();
    for (fk, rule) in rules.children(table) {
        let Some(action) = rule.action() else {
            continue;
        };
        let child = schema::contract::table(fk.table).expect("a contract table");
        let keys: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "{CLEARED_INSERT} SELECT $1, $2, c.{ck}, $3, $4, $5, c.{col} FROM public.{c} c \
             JOIN going g ON g.key = c.{col} {CLEARED_CONFLICT} RETURNING key",
            c = ident(child.name),
            ck = ident(child.key),
            col = ident(fk.column)
        )))
        .bind(cutover)
        .bind(child.name)
        .bind(fk.column)
        .bind(action)
        .bind(table.name)
        .fetch_all(&mut *tx)
        .await?;
        acted.extend(keys.into_iter().map(|key| Acted {
            table: child.name,
            key,
            cascade: rule == OnDelete::Cascade,
            in_legacy: true,
        }));
    }
    let deleted = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM public.{t} t USING going g WHERE t.{k} = g.key",
        t = ident(table.name),
        k = ident(table.key)
    )))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok((deleted, acted))
}

/// Users the services deleted but legacy keeps (a refusing child points to them) cannot log in:
/// their password hash is prefixed with `!`, which no password matches (the hash stays readable
/// behind it, for an operator who restores the account).
pub(super) async fn lock_kept_users(tx: &mut PgConnection, keys: &[String]) -> Result<u64> {
    if keys.is_empty() {
        return Ok(0);
    }
    Ok(sqlx::query(
        "UPDATE public.users SET password_hash = '!' || password_hash \
         WHERE id = ANY($1) AND password_hash NOT LIKE '!%'",
    )
    .bind(keys)
    .execute(tx)
    .await?
    .rows_affected())
}

/// Rows legacy refused because a parent they point to is not there (the services deleted it, or
/// made and deleted it after cutover), as legacy would hold them had that parent been deleted
/// there: a `SET NULL` reference is cleared and the row goes back to be written, a `CASCADE` row
/// is not written (it went with its parent). Each is recorded in `mfe_rollback.cleared`. Returns
/// the rows to write again, the rows still refused, and what was done.
pub(super) async fn refused_orphans(
    tx: &mut PgConnection,
    refused: Vec<super::Refused>,
    rules: &Rules,
    cutover: &str,
) -> Result<(Vec<super::Refused>, Vec<super::Refused>, Vec<Acted>)> {
    let mut again = Vec::new();
    let mut still = Vec::new();
    let mut acted = Vec::new();
    for mut r in refused {
        match settle_orphan(tx, &mut r, rules, cutover, &mut acted).await? {
            Orphan::Cascaded => {}
            Orphan::Cleared => again.push(r),
            Orphan::Kept => still.push(r),
        }
    }
    Ok((again, still, acted))
}

/// What legacy's rules make of a refused row whose parent legacy lacks.
enum Orphan {
    /// A `CASCADE` key: the row goes with its parent (it is not written).
    Cascaded,
    /// `SET NULL` keys cleared: the row is to be written again.
    Cleared,
    /// No rule applies: the refusal stands.
    Kept,
}

async fn settle_orphan(
    tx: &mut PgConnection,
    r: &mut super::Refused,
    rules: &Rules,
    cutover: &str,
    acted: &mut Vec<Acted>,
) -> Result<Orphan> {
    let key = super::key_of(r.table, &r.row);
    let mut cleared = false;
    for fk in FOREIGN_KEYS.iter().filter(|fk| fk.table == r.table.name) {
        let Some(rule) = rules.0.get(fk.name).copied() else {
            continue;
        };
        let Some(action) = rule.action() else {
            continue;
        };
        let at = r
            .table
            .columns
            .iter()
            .position(|c| c.name == fk.column)
            .expect("a foreign key's column is in its table");
        let Some(parent_key) = r.row[at].clone() else {
            continue;
        };
        let parent = schema::contract::table(fk.references).expect("a contract table");
        if parent_present(tx, parent, fk.referenced_column, &parent_key).await? {
            continue;
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "{CLEARED_INSERT} VALUES ($1, $2, $3, $4, $5, $6, $7) {CLEARED_CONFLICT}"
        )))
        .bind(cutover)
        .bind(r.table.name)
        .bind(&key)
        .bind(fk.column)
        .bind(action)
        .bind(parent.name)
        .bind(&parent_key)
        .execute(&mut *tx)
        .await?;
        acted.push(Acted {
            table: r.table.name,
            key: key.clone(),
            cascade: rule == OnDelete::Cascade,
            in_legacy: false,
        });
        if rule == OnDelete::Cascade {
            return Ok(Orphan::Cascaded);
        }
        if r.table.name == "audit_logs" && fk.column == "user_id" {
            // Written with the reference already cleared, so admin's trigger never sees it:
            // recorded for its chain as the trigger would (admin's migrations ran first).
            sqlx::query(
                "INSERT INTO admin.audit_cleared_refs (audit_id, user_id) VALUES ($1, $2) \
                 ON CONFLICT (audit_id) DO NOTHING",
            )
            .bind(&key)
            .bind(&parent_key)
            .execute(&mut *tx)
            .await?;
        }
        r.row[at] = None;
        cleared = true;
    }
    Ok(if cleared {
        Orphan::Cleared
    } else {
        Orphan::Kept
    })
}

async fn parent_present(
    tx: &mut PgConnection,
    parent: &Table,
    column: &str,
    key: &str,
) -> Result<bool> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT EXISTS (SELECT 1 FROM public.{p} WHERE {k} = $1)",
        p = ident(parent.name),
        k = ident(column)
    )))
    .bind(key)
    .fetch_one(tx)
    .await?)
}
