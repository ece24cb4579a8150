use payments_service::MIGRATOR;
use test_support::schema::{Expected, differences};
use test_support::{Catalog, TestDb};

const EXPECTED: Expected<'static> = Expected {
    tables: &["payments", "payment_transactions"],
    enums: &["PaymentStatus", "PaymentType"],
    dropped_foreign_keys: &[
        ("payments", "payments_sender_id_fkey"),
        ("payments", "payments_recipient_id_fkey"),
    ],
    added_indexes: &[],
};

#[tokio::test]
async fn migrations_give_exactly_the_legacy_tables_without_cross_service_keys() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    MIGRATOR.run(&pool).await.unwrap();
    let actual = Catalog::read(&pool, "public").await.unwrap();
    let diff = differences(&actual, &EXPECTED).await;
    assert!(
        diff.is_empty(),
        "schema drifted from the legacy contract:\n{}",
        diff.join("\n")
    );
}

#[tokio::test]
async fn migrations_leave_an_existing_legacy_database_as_it_is() {
    let db = TestDb::new().await;
    db.execute_script(test_support::LEGACY_SCHEMA_SQL).await;
    let pool = db.pool().await;
    let before = Catalog::read(&pool, "public").await.unwrap();
    MIGRATOR.run(&pool).await.unwrap();
    MIGRATOR.run(&pool).await.unwrap();
    let after = Catalog::read(&pool, "public").await.unwrap();
    assert_eq!(after.diff(&before), Vec::<String>::new());
    let history: i64 = sqlx::query_scalar("SELECT count(*) FROM payments._sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        history as usize,
        MIGRATOR.iter().count(),
        "history kept in the service's own schema"
    );
}
