//! A normalised snapshot of the tables in one schema, read from the PostgreSQL catalog: columns
//! (type, nullability, default), indexes (definition), constraints (definition) and enum types.
//! Two snapshots compare equal when the schemas would accept and store the same rows the same way.

use std::collections::BTreeMap;

use sqlx::PgPool;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub data_type: String,
    pub not_null: bool,
    pub default: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// By column name, in name order (column order does not change what a row holds).
    pub columns: BTreeMap<String, Column>,
    /// Index name -> definition, e.g. `CREATE UNIQUE INDEX users_email_key ON public.users USING btree (email)`.
    pub indexes: BTreeMap<String, String>,
    /// Constraint name -> definition, e.g. `PRIMARY KEY (id)` or `FOREIGN KEY (...) REFERENCES ...`.
    pub constraints: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    pub tables: BTreeMap<String, Table>,
    /// Enum type name -> its labels in order.
    pub enums: BTreeMap<String, Vec<String>>,
}

impl Catalog {
    /// Reads the tables and enum types of `schema`.
    pub async fn read(pool: &PgPool, schema: &str) -> Result<Self, sqlx::Error> {
        let mut catalog = Catalog::default();
        let columns: Vec<(String, String, String, bool, Option<String>)> = sqlx::query_as(
            "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                    pg_get_expr(d.adbin, d.adrelid)
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE n.nspname = $1 AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped",
        )
        .bind(schema)
        .fetch_all(pool)
        .await?;
        for (table, column, data_type, not_null, default) in columns {
            catalog.tables.entry(table).or_default().columns.insert(
                column,
                Column {
                    data_type,
                    not_null,
                    default,
                },
            );
        }
        let indexes: Vec<(String, String, String)> =
            sqlx::query_as("SELECT tablename::text, indexname::text, indexdef FROM pg_indexes WHERE schemaname = $1")
                .bind(schema)
                .fetch_all(pool)
                .await?;
        for (table, name, def) in indexes {
            catalog
                .tables
                .entry(table)
                .or_default()
                .indexes
                .insert(name, def);
        }
        let constraints: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT c.relname::text, con.conname::text, pg_get_constraintdef(con.oid)
             FROM pg_constraint con
             JOIN pg_class c ON c.oid = con.conrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1",
        )
        .bind(schema)
        .fetch_all(pool)
        .await?;
        for (table, name, def) in constraints {
            catalog
                .tables
                .entry(table)
                .or_default()
                .constraints
                .insert(name, def);
        }
        let enums: Vec<(String, Vec<String>)> = sqlx::query_as(
            "SELECT t.typname::text, array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
             FROM pg_type t
             JOIN pg_enum e ON e.enumtypid = t.oid
             JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE n.nspname = $1
             GROUP BY t.typname",
        )
        .bind(schema)
        .fetch_all(pool)
        .await?;
        catalog.enums = enums.into_iter().collect();
        Ok(catalog)
    }

    /// Keeps only the named tables (and all enum types).
    pub fn only_tables(mut self, names: &[&str]) -> Self {
        self.tables.retain(|name, _| names.contains(&name.as_str()));
        self
    }

    /// Keeps only the named enum types.
    pub fn only_enums(mut self, names: &[&str]) -> Self {
        self.enums.retain(|name, _| names.contains(&name.as_str()));
        self
    }

    /// Removes a constraint (e.g. a foreign key the split drops) from `table`.
    pub fn without_constraint(mut self, table: &str, constraint: &str) -> Self {
        if let Some(t) = self.tables.get_mut(table) {
            t.constraints.remove(constraint);
        }
        self
    }

    /// Removes an index from `table`.
    pub fn without_index(mut self, table: &str, index: &str) -> Self {
        if let Some(t) = self.tables.get_mut(table) {
            t.indexes.remove(index);
        }
        self
    }

    /// Every difference between `self` (actual) and `expected`, one line each; empty when equal.
    pub fn diff(&self, expected: &Catalog) -> Vec<String> {
        let mut out = Vec::new();
        diff_maps(&mut out, "enum", &self.enums, &expected.enums);
        for (name, exp) in &expected.tables {
            match self.tables.get(name) {
                None => out.push(format!("table {name}: missing")),
                Some(act) => {
                    diff_maps(
                        &mut out,
                        &format!("{name} column"),
                        &act.columns,
                        &exp.columns,
                    );
                    diff_maps(
                        &mut out,
                        &format!("{name} index"),
                        &act.indexes,
                        &exp.indexes,
                    );
                    diff_maps(
                        &mut out,
                        &format!("{name} constraint"),
                        &act.constraints,
                        &exp.constraints,
                    );
                }
            }
        }
        for name in self
            .tables
            .keys()
            .filter(|n| !expected.tables.contains_key(*n))
        {
            out.push(format!("table {name}: unexpected"));
        }
        out
    }
}

fn diff_maps<V: PartialEq + std::fmt::Debug>(
    out: &mut Vec<String>,
    what: &str,
    actual: &BTreeMap<String, V>,
    expected: &BTreeMap<String, V>,
) {
    for (key, exp) in expected {
        match actual.get(key) {
            None => out.push(format!("{what} {key}: missing (expected {exp:?})")),
            Some(act) if act != exp => out.push(format!("{what} {key}: {act:?}, expected {exp:?}")),
            Some(_) => {}
        }
    }
    for key in actual.keys().filter(|k| !expected.contains_key(*k)) {
        out.push(format!("{what} {key}: unexpected ({:?})", actual[key]));
    }
}
