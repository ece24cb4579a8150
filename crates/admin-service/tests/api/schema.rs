use admin_service::MIGRATOR;
use test_support::schema::{
    Expected, assert_migrations_leave_legacy_untouched, assert_migrations_match_legacy,
};

const EXPECTED: Expected<'static> = Expected {
    tables: &["audit_logs", "system_config"],
    enums: &[],
    dropped_foreign_keys: &[("audit_logs", "audit_logs_user_id_fkey")],
    added_indexes: &[
        ("audit_logs", "audit_logs_resource_idx"),
        ("audit_logs", "audit_logs_created_at_id_idx"),
        ("audit_logs", "audit_logs_user_id_created_at_idx"),
        ("audit_logs", "audit_logs_action_created_at_idx"),
        ("audit_logs", "audit_logs_resource_type_created_at_idx"),
        ("audit_logs", "audit_logs_resource_id_created_at_idx"),
    ],
};

#[tokio::test]
async fn migrations_give_exactly_the_legacy_tables_without_cross_service_keys() {
    assert_migrations_match_legacy(&MIGRATOR, &EXPECTED).await;
}

#[tokio::test]
async fn migrations_leave_an_existing_legacy_database_as_it_is() {
    assert_migrations_leave_legacy_untouched(&MIGRATOR, "admin", &EXPECTED).await;
}
