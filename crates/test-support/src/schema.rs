//! Holding a service's migrations to the legacy contract (`crates/schema/legacy-schema.sql`).

use crate::catalog::Catalog;
use crate::db::TestDb;

/// What a service's part of the legacy schema looks like after the split.
pub struct Expected<'a> {
    pub tables: &'a [&'a str],
    pub enums: &'a [&'a str],
    /// Foreign keys of the legacy schema that cross services and so are dropped: (table, name).
    pub dropped_foreign_keys: &'a [(&'a str, &'a str)],
    /// Indexes the service adds to the legacy tables: (table, name). Kept short and documented.
    pub added_indexes: &'a [(&'a str, &'a str)],
}

/// The legacy contract's catalog (schema `public` of a database loaded with the legacy DDL).
pub async fn legacy_catalog() -> Catalog {
    let db = TestDb::new().await;
    db.execute_script(crate::LEGACY_SCHEMA_SQL).await;
    let pool = db.pool().await;
    let catalog = Catalog::read(&pool, "public")
        .await
        .expect("read legacy catalog");
    pool.close().await;
    catalog
}

/// Differences between the applied schema in `public` and the legacy contract cut down to
/// `expected`; empty when the service's tables match exactly.
pub async fn differences(actual: &Catalog, expected: &Expected<'_>) -> Vec<String> {
    let mut want = legacy_catalog()
        .await
        .only_tables(expected.tables)
        .only_enums(expected.enums);
    for (table, fk) in expected.dropped_foreign_keys {
        assert!(
            want.tables
                .get(*table)
                .is_some_and(|t| t.constraints.contains_key(*fk)),
            "{table}.{fk} is not a foreign key of the legacy contract"
        );
        want = want.without_constraint(table, fk);
    }
    let mut actual = actual.clone();
    for (table, index) in expected.added_indexes {
        actual = actual.without_index(table, index);
    }
    actual.diff(&want)
}

/// Applies `migrator` to a fresh database and asserts that `public` holds exactly the service's
/// part of the legacy contract.
pub async fn assert_migrations_match_legacy(
    migrator: &sqlx::migrate::Migrator,
    expected: &Expected<'_>,
) {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    migrator.run(&pool).await.expect("migrations apply");
    let actual = Catalog::read(&pool, "public").await.expect("read catalog");
    let diff = differences(&actual, expected).await;
    assert!(
        diff.is_empty(),
        "schema drifted from the legacy contract:\n{}",
        diff.join("\n")
    );
}

/// Applies `migrator` twice to a database loaded with the legacy DDL (the shared topology) and
/// asserts the legacy tables are left as they were (but for `expected.added_indexes`), with the
/// migration history kept in the service's own `schema`.
pub async fn assert_migrations_leave_legacy_untouched(
    migrator: &sqlx::migrate::Migrator,
    schema: &str,
    expected: &Expected<'_>,
) {
    let db = TestDb::new().await;
    db.execute_script(crate::LEGACY_SCHEMA_SQL).await;
    let pool = db.pool().await;
    let before = Catalog::read(&pool, "public").await.expect("read catalog");
    migrator
        .run(&pool)
        .await
        .expect("migrations apply on the legacy database");
    migrator.run(&pool).await.expect("and again");
    let mut after = Catalog::read(&pool, "public").await.expect("read catalog");
    for (table, index) in expected.added_indexes {
        after = after.without_index(table, index);
    }
    assert_eq!(after.diff(&before), Vec::<String>::new());
    let history: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {schema}._sqlx_migrations"
    )))
    .fetch_one(&pool)
    .await
    .expect("history in the service's schema");
    assert_eq!(history as usize, migrator.iter().count());
}
