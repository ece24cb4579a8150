//! Applied migrations are never edited: a database migrated by an earlier build refuses to start
//! when one of its applied migrations changed (sqlx compares checksums). `crates/schema/migrations.lock`
//! records every service's migrations (version, description, SHA-384 of the SQL); this test fails
//! when one of them changes or disappears, and when a new one is not recorded yet.
//!
//! To add a migration: write it, run the test with `UPDATE_MIGRATIONS_LOCK=1` and commit the
//! lock file with it. To change one that was released: don't; add a new one.

use platform::Service;
use schema::migrator;

const LOCK: &str = "migrations.lock";

fn current() -> String {
    let mut out = String::from(
        "# service version description sha384 -- written by crates/schema/tests/migrations_lock.rs\n",
    );
    for service in Service::ALL {
        for m in migrator(service).iter() {
            let sha: String = m.checksum.iter().map(|b| format!("{b:02x}")).collect();
            out.push_str(&format!(
                "{} {} {:?} {sha}\n",
                service.name(),
                m.version,
                m.description
            ));
        }
    }
    out
}

#[test]
fn released_migrations_are_never_changed() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(LOCK);
    let now = current();
    if std::env::var_os("UPDATE_MIGRATIONS_LOCK").is_some() {
        std::fs::write(&path, &now).expect("write the lock file");
        return;
    }
    let locked = std::fs::read_to_string(&path).expect("crates/schema/migrations.lock exists");
    for line in locked.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            now.lines().any(|l| l == line),
            "a released migration changed or disappeared: {line}\n\
             (applied databases would refuse to start; add a new migration instead)"
        );
    }
    for line in now.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            locked.lines().any(|l| l == line),
            "a migration is not in crates/schema/migrations.lock yet: {line}\n\
             (run this test with UPDATE_MIGRATIONS_LOCK=1 and commit the lock file)"
        );
    }
}
