use admin_service::MIGRATOR;
use test_support::schema::{
    Expected, assert_migrations_leave_legacy_untouched, assert_migrations_match_legacy,
};

const EXPECTED: Expected<'static> = Expected {
    tables: &["audit_logs", "system_config"],
    enums: &[],
    dropped_foreign_keys: &[("audit_logs", "audit_logs_user_id_fkey")],
    added_indexes: ::schema::migrations::legacy_indexes::ADMIN,
};

#[tokio::test]
async fn migrations_give_exactly_the_legacy_tables_without_cross_service_keys() {
    assert_migrations_match_legacy(&MIGRATOR, &EXPECTED).await;
}

#[tokio::test]
async fn migrations_leave_an_existing_legacy_database_as_it_is() {
    assert_migrations_leave_legacy_untouched(&MIGRATOR, "admin", &EXPECTED).await;
}
