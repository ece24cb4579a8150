use profile_service::MIGRATOR;
use test_support::schema::{
    Expected, assert_migrations_leave_legacy_untouched, assert_migrations_match_legacy,
};

const EXPECTED: Expected<'static> = Expected {
    tables: &["user_profiles"],
    enums: &[],
    dropped_foreign_keys: &[("user_profiles", "user_profiles_user_id_fkey")],
    added_indexes: ::schema::migrations::legacy_indexes::PROFILE,
};

#[tokio::test]
async fn migrations_give_exactly_the_legacy_tables_without_cross_service_keys() {
    assert_migrations_match_legacy(&MIGRATOR, &EXPECTED).await;
}

#[tokio::test]
async fn migrations_leave_an_existing_legacy_database_as_it_is() {
    assert_migrations_leave_legacy_untouched(&MIGRATOR, "profile", &EXPECTED).await;
}
