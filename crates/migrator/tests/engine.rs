//! The engine beneath the phases, through the library against a real server, each test on
//! databases of its own: the contract check, the freeze, the journal (the migration's state,
//! the sync positions) and the row digests.

use std::time::Duration;

use migrator::engine::journal::position;
use migrator::engine::journal::state::{self, State};
use migrator::engine::{check, digest, freeze, journal};
use sqlx::{Connection, PgConnection};
use test_support::{LEGACY_SCHEMA_SQL, TestDb};

/// A database holding the legacy contract, and a connection to it.
async fn legacy() -> (TestDb, PgConnection) {
    let db = TestDb::new().await;
    db.execute_script(LEGACY_SCHEMA_SQL).await;
    let conn = PgConnection::connect(&db.url).await.unwrap();
    (db, conn)
}

fn table(name: &str) -> &'static schema::contract::Table {
    schema::contract::table(name).expect("a contract table")
}

#[tokio::test]
async fn the_contract_check_names_each_difference_and_nothing_else() {
    let (_db, mut conn) = legacy().await;
    let found = check::legacy_differences(&mut conn).await.unwrap();
    assert!(found.is_empty(), "the contract itself differs: {found:?}");
    sqlx::raw_sql(
        "ALTER TABLE users ADD COLUMN nickname TEXT;
         ALTER TABLE user_profiles ALTER COLUMN bio SET NOT NULL;
         ALTER TABLE system_config ALTER COLUMN description TYPE VARCHAR(80);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let found = check::legacy_differences(&mut conn).await.unwrap();
    assert_eq!(found.len(), 3, "{found:#?}");
    let names = |needle: &str, what: &str| {
        assert!(
            found.iter().any(|d| d.contains(needle) && d.contains(what)),
            "{needle} ({what}) not named: {found:#?}"
        )
    };
    names("users.nickname", "not in the contract");
    names("user_profiles.bio", "NOT NULL, expected nullable");
    names("system_config.description", "character varying(80)");
}

#[tokio::test]
async fn a_frozen_legacy_database_refuses_every_write_until_thawed() {
    let (db, mut conn) = legacy().await;
    assert!(!freeze::is_frozen(&mut conn).await.unwrap());
    assert_eq!(freeze::frozen_since(&mut conn).await.unwrap(), None);
    freeze::freeze(&mut conn, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(freeze::is_frozen(&mut conn).await.unwrap());
    assert!(freeze::frozen_since(&mut conn).await.unwrap().is_some());

    // Another session, a superuser's: refused, as read-only (what the services retry on).
    let mut other = PgConnection::connect(&db.url).await.unwrap();
    let write = "INSERT INTO system_config (key, value) VALUES ('frozen.key', '1')";
    let refused = sqlx::query(write).execute(&mut other).await.unwrap_err();
    let code = refused.as_database_error().and_then(|e| e.code());
    assert_eq!(code.as_deref(), Some("25006"), "{refused}");

    freeze::thaw(&mut conn).await.unwrap();
    assert!(!freeze::is_frozen(&mut conn).await.unwrap());
    sqlx::query(write).execute(&mut other).await.unwrap();
}

#[tokio::test]
async fn the_state_is_recorded_in_the_journal_and_read_back() {
    let db = TestDb::new().await;
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    journal::ensure(&mut conn).await.unwrap();
    assert_eq!(state::recorded(&mut conn).await.unwrap(), None);
    for to in [
        State::Prepared,
        State::Copying,
        State::Copied,
        State::Syncing,
    ] {
        state::advance_here(&mut conn, to, "test").await.unwrap();
        assert_eq!(state::recorded(&mut conn).await.unwrap(), Some(to));
    }
    // What each state refuses is decided without a database.
    use migrator::engine::journal::state::Step;
    assert!(state::refusal(Step::Copy, Some(State::CutOver)).is_some());
    assert!(state::refusal(Step::Verify, Some(State::CutOver)).is_none());
    assert!(state::refusal(Step::Cutover, Some(State::Syncing)).is_none());
}

#[tokio::test]
async fn the_sync_journal_keeps_positions_and_the_keys_it_changed_until_a_clean_verify() {
    let db = TestDb::new().await;
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(position::POSITION_SQL)
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(position::synced_position(&mut conn).await.unwrap(), None);
    assert_eq!(position::position(&mut conn, "slot").await.unwrap(), None);
    sqlx::raw_sql(
        "INSERT INTO mfe_migration.sync_position (slot, commit_lsn) VALUES ('slot', '0/200');
         INSERT INTO mfe_migration.capture (slot, consistent_lsn, horizon_lsn)
           VALUES ('slot', '0/100', '0/180');
         INSERT INTO mfe_migration.sync_changes (table_name, commit_lsn, keys, lsns) VALUES
           ('users', '0/150', '{a,b}', '{0/140,0/150}'),
           ('users', '0/200', '{c}', '{0/200}');",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let lsn = |s: &str| s.parse::<migrator::cdc::pgoutput::Lsn>().unwrap();
    assert_eq!(
        position::position(&mut conn, "slot").await.unwrap(),
        Some(lsn("0/200"))
    );
    assert_eq!(
        position::synced_position(&mut conn).await.unwrap(),
        Some(lsn("0/200"))
    );
    assert_eq!(
        position::horizon(&mut conn, "slot").await.unwrap(),
        Some(lsn("0/180"))
    );
    let mut keys = position::touched_keys(&mut conn, "users", None)
        .await
        .unwrap();
    keys.sort();
    assert_eq!(keys, ["a", "b", "c"]);
    let between = position::touched_keys_between(&mut conn, "users", lsn("0/140"), lsn("0/150"))
        .await
        .unwrap();
    assert_eq!(between, ["b"]);
    // A clean verify up to 0/150 vouches for a and b; c stays for cutover.
    position::forget_touched(&mut conn, lsn("0/150"))
        .await
        .unwrap();
    let keys = position::touched_keys(&mut conn, "users", None)
        .await
        .unwrap();
    assert_eq!(keys, ["c"]);
}

#[tokio::test]
async fn a_table_checksum_is_equal_for_equal_rows_on_two_databases_and_moves_with_any_change() {
    let (_a, mut left) = legacy().await;
    let (_b, mut right) = legacy().await;
    let rows = "INSERT INTO system_config (key, value, description, updated_at) VALUES
                  ('a', '{\"n\": 1}', 'one', '2026-01-01 10:00:00.123'),
                  ('b', '[1, 2]', NULL, '2026-01-02 10:00:00'),
                  ('c', '\"x\"', 'three', '2026-01-03 10:00:00')";
    for conn in [&mut left, &mut right] {
        sqlx::raw_sql(rows).execute(&mut *conn).await.unwrap();
    }
    let config = table("system_config");
    let (n, sum) = digest::table_checksum(&mut left, config).await.unwrap();
    assert_eq!(n, 3);
    assert_eq!(
        digest::table_checksum(&mut right, config).await.unwrap(),
        (n, sum.clone())
    );
    // NULL and an empty description differ; so does any value.
    sqlx::raw_sql("UPDATE system_config SET description = '' WHERE key = 'b'")
        .execute(&mut right)
        .await
        .unwrap();
    let (m, other) = digest::table_checksum(&mut right, config).await.unwrap();
    assert_eq!(m, 3);
    assert_ne!(other, sum);
}
