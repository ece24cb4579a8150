//! Setting a table's indexes and constraints aside for the load and putting them back after:
//! building an index once over loaded rows is much cheaper than maintaining it row by row.

use sqlx::PgConnection;

use crate::engine::journal::{DdlKind, SavedDdl};
use crate::engine::sql::ident;

/// The indexes and constraints of `public.<table>`, plus the foreign keys of other tables that
/// point at it (they would block dropping its primary key).
pub async fn capture(conn: &mut PgConnection, table: &str) -> sqlx::Result<Vec<SavedDdl>> {
    let regclass = format!("public.{}", ident(table));
    let constraints: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT conname::text, contype::text, conrelid::regclass::text, pg_get_constraintdef(oid)
         FROM pg_constraint
         WHERE (conrelid = $1::regclass AND contype IN ('p', 'u', 'f'))
            OR (confrelid = $1::regclass AND contype = 'f')
         ORDER BY contype, conname",
    )
    .bind(&regclass)
    .fetch_all(&mut *conn)
    .await?;
    let mut saved = Vec::new();
    for (name, kind, on_table, def) in constraints {
        let on_table = on_table
            .trim_start_matches("public.")
            .trim_matches('"')
            .to_string();
        let kind = if kind == "f" {
            DdlKind::ForeignKey
        } else {
            DdlKind::KeyConstraint
        };
        let create = format!(
            "ALTER TABLE public.{} ADD CONSTRAINT {} {def}",
            ident(&on_table),
            ident(&name)
        );
        if !saved.iter().any(|s: &SavedDdl| s.name == name) {
            saved.push(SavedDdl {
                kind,
                name,
                on_table,
                create,
            });
        }
    }
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, pg_get_indexdef(i.indexrelid)
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE i.indrelid = $1::regclass
           AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
         ORDER BY c.relname",
    )
    .bind(&regclass)
    .fetch_all(&mut *conn)
    .await?;
    for (name, def) in indexes {
        saved.push(SavedDdl {
            kind: DdlKind::Index,
            name,
            on_table: table.to_string(),
            create: def,
        });
    }
    Ok(saved)
}

/// Drops what `capture` saw: foreign keys first (they depend on the keys), then the rest.
pub async fn drop_all(conn: &mut PgConnection, saved: &[SavedDdl]) -> sqlx::Result<()> {
    let order = [DdlKind::ForeignKey, DdlKind::KeyConstraint, DdlKind::Index];
    for kind in order {
        for ddl in saved.iter().filter(|d| d.kind == kind) {
            drop_one(conn, ddl).await?;
        }
    }
    Ok(())
}

async fn drop_one(conn: &mut PgConnection, ddl: &SavedDdl) -> sqlx::Result<()> {
    let statement = match ddl.kind {
        DdlKind::Index => format!("DROP INDEX IF EXISTS public.{}", ident(&ddl.name)),
        DdlKind::KeyConstraint | DdlKind::ForeignKey => format!(
            "ALTER TABLE public.{} DROP CONSTRAINT IF EXISTS {}",
            ident(&ddl.on_table),
            ident(&ddl.name)
        ),
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
        .execute(conn)
        .await?;
    Ok(())
}

/// Re-creates the saved items of the given kinds that the catalog does not hold yet, so a rebuild
/// cut short is finished by running it again. An index left invalid is built again.
pub async fn restore(
    conn: &mut PgConnection,
    saved: &[SavedDdl],
    kinds: &[DdlKind],
) -> sqlx::Result<()> {
    for kind in kinds {
        for ddl in saved.iter().filter(|d| d.kind == *kind) {
            match in_catalog(conn, ddl).await? {
                InCatalog::Valid => continue,
                InCatalog::Invalid => drop_one(conn, ddl).await?,
                InCatalog::Missing => {}
            }
            sqlx::raw_sql(sqlx::AssertSqlSafe(ddl.create.clone()))
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

enum InCatalog {
    Missing,
    Valid,
    /// There but not usable: an index (or a key's index) a failed concurrent build left.
    Invalid,
}

async fn in_catalog(conn: &mut PgConnection, ddl: &SavedDdl) -> sqlx::Result<InCatalog> {
    let valid: Option<bool> = match ddl.kind {
        DdlKind::Index => {
            sqlx::query_scalar(
                "SELECT i.indisvalid FROM pg_index i
                 WHERE i.indexrelid = to_regclass('public.' || quote_ident($1))",
            )
            .bind(&ddl.name)
            .fetch_optional(&mut *conn)
            .await?
        }
        // A constraint that exists is taken as it is (one declared NOT VALID stays so); only the
        // index behind a key can be unusable.
        DdlKind::KeyConstraint | DdlKind::ForeignKey => {
            sqlx::query_scalar(
                "SELECT coalesce(i.indisvalid, true)
                 FROM pg_constraint c LEFT JOIN pg_index i ON i.indexrelid = c.conindid
                 WHERE c.conname = $1 AND c.conrelid = ('public.' || quote_ident($2))::regclass",
            )
            .bind(&ddl.name)
            .bind(&ddl.on_table)
            .fetch_optional(&mut *conn)
            .await?
        }
    };
    Ok(match valid {
        None => InCatalog::Missing,
        Some(true) => InCatalog::Valid,
        Some(false) => InCatalog::Invalid,
    })
}
