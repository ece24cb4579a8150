//! Checking a legacy database against the contract before any phase writes anything: a missing
//! table or column, another type or nullability, an extra column (whose data would be lost) or
//! another set of enum labels is a difference, and every phase refuses to run with the list.

use std::collections::BTreeMap;

use sqlx::PgConnection;

use schema::contract::{ENUMS, TABLES, Table};

/// Every difference between the legacy database's `public` schema and the contract, one line each.
pub async fn legacy_differences(conn: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    let actual = columns(conn).await?;
    let mut out = Vec::new();
    for table in TABLES {
        let Some(columns) = actual.get(table.name) else {
            out.push(format!("table {}: missing", table.name));
            continue;
        };
        column_differences(table, columns, &mut out);
        let pk: Option<String> = sqlx::query_scalar(
            "SELECT string_agg(a.attname::text, ',')
             FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
             WHERE i.indrelid = ('public.' || quote_ident($1))::regclass AND i.indisprimary",
        )
        .bind(table.name)
        .fetch_one(&mut *conn)
        .await?;
        if pk.as_deref() != Some(table.key) {
            out.push(format!(
                "table {}: primary key {:?}, expected ({})",
                table.name, pk, table.key
            ));
        }
    }
    enum_differences(conn, &mut out).await?;
    Ok(out)
}

/// Table -> column -> (type, nullable), as the catalog has them.
type Columns = BTreeMap<String, BTreeMap<String, (String, bool)>>;

async fn columns(conn: &mut PgConnection) -> Result<Columns, sqlx::Error> {
    let rows: Vec<(String, String, String, bool)> = sqlx::query_as(
        "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
         FROM pg_attribute a
         JOIN pg_class c ON c.oid = a.attrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped",
    )
    .fetch_all(conn)
    .await?;
    let mut actual = Columns::new();
    for (table, column, data_type, nullable) in rows {
        actual
            .entry(table)
            .or_default()
            .insert(column, (data_type, nullable));
    }
    Ok(actual)
}

/// A table's columns against the contract's: missing, another type or nullability, extra.
fn column_differences(
    table: &Table,
    columns: &BTreeMap<String, (String, bool)>,
    out: &mut Vec<String>,
) {
    for c in table.columns {
        let Some((data_type, nullable)) = columns.get(c.name) else {
            out.push(format!("column {}.{}: missing", table.name, c.name));
            continue;
        };
        if data_type != c.data_type {
            out.push(format!(
                "column {}.{}: type {data_type}, expected {}",
                table.name, c.name, c.data_type
            ));
        }
        if *nullable != c.nullable {
            let says = |n: bool| if n { "nullable" } else { "NOT NULL" };
            out.push(format!(
                "column {}.{}: {}, expected {}",
                table.name,
                c.name,
                says(*nullable),
                says(c.nullable)
            ));
        }
    }
    for name in columns
        .keys()
        .filter(|n| !table.columns.iter().any(|c| c.name == n.as_str()))
    {
        out.push(format!(
            "column {}.{name}: not in the contract (its data would not be migrated)",
            table.name
        ));
    }
}

/// The enums' labels against the contract's, in order.
async fn enum_differences(
    conn: &mut PgConnection,
    out: &mut Vec<String>,
) -> Result<(), sqlx::Error> {
    let enums: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT t.typname::text, array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
         FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname = 'public' GROUP BY t.typname",
    )
    .fetch_all(conn)
    .await?;
    let enums: BTreeMap<String, Vec<String>> = enums.into_iter().collect();
    for (name, labels) in ENUMS {
        match enums.get(*name) {
            None => out.push(format!("enum \"{name}\": missing")),
            Some(actual) if actual.iter().map(String::as_str).ne(labels.iter().copied()) => out
                .push(format!(
                    "enum \"{name}\": labels {actual:?}, expected {labels:?}"
                )),
            Some(_) => {}
        }
    }
    Ok(())
}
