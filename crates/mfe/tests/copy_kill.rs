//! `mfe migrate copy` killed with SIGKILL at every kind of moment of its run, then run once more:
//! the second run must finish (exit 0) and `verify` must be clean.
//!
//! A kill point is reached deterministically, without sleeps: the test makes the target server
//! hold one of the tool's statements *while it runs* (an event trigger that waits on an advisory
//! lock the test holds, or a row or table lock the statement needs), sees it waiting in
//! `pg_stat_activity`, and kills the process then. The killed run's backend is still inside its
//! statement, as a long index build would be on a large table; the test lets it go on only once
//! the second run has started, which is what made a resume fail while rebuilding indexes.

mod common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::Fixture;
use sqlx::{Connection, PgConnection, PgPool};

const AUTH: usize = 0;
const PAYMENTS: usize = 1;
const ADMIN: usize = 2;

/// Advisory lock key the gate waits on; advisory locks are per database, so tests do not share it.
const GATE_KEY: i64 = 0x6d66_6567;

/// Where the tool is stopped, and how.
#[derive(Clone, Copy, Debug)]
enum Point {
    /// While setting a table's indexes aside and journaling its chunks (one transaction).
    Planning,
    /// A chunk's rows are in, its journal row is being written.
    Loading,
    /// Rebuilding a primary key.
    KeyConstraint,
    /// Rebuilding an index.
    Index,
    /// `VACUUM (FREEZE, ANALYZE)` of a loaded table.
    Freezing,
    /// Restoring a foreign key.
    ForeignKey,
    /// Marking tables done in the journal, one of two written.
    JournalDone,
}

/// A DDL statement matching `pattern` waits, inside the server, until the test lets it go.
struct Gate {
    holder: PgConnection,
}

impl Gate {
    async fn install(url: &str, pattern: &str) -> Self {
        let mut holder = PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE FUNCTION public.mfe_test_gate() RETURNS event_trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF current_query() ~ '{pattern}' THEN
                     PERFORM pg_advisory_lock({GATE_KEY});
                     PERFORM pg_advisory_unlock({GATE_KEY});
                 END IF;
             END $$;
             CREATE EVENT TRIGGER mfe_test_gate ON ddl_command_start
                 EXECUTE FUNCTION public.mfe_test_gate();
             SELECT pg_advisory_lock({GATE_KEY});"
        )))
        .execute(&mut holder)
        .await
        .unwrap();
        Self { holder }
    }

    async fn open(mut self) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "SELECT pg_advisory_unlock({GATE_KEY})"
        )))
        .execute(&mut self.holder)
        .await
        .unwrap();
    }
}

/// Backends of this database waiting on a lock while running a statement matching `pattern`.
async fn waiting(pool: &PgPool, pattern: &str) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND wait_event_type = 'Lock' AND query ~ $1",
    )
    .bind(pattern)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn alive(pool: &PgPool, pids: &[i32]) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = ANY($1))")
        .bind(pids)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Polls `f` until it gives a value, the copy exits, or a minute passes.
async fn until<T, F, Fut>(child: &mut Child, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    // Every 5 ms: some kill points last only a few.
    let child = std::sync::Mutex::new(child);
    let outcome =
        test_support::eventually_every(Duration::from_secs(60), Duration::from_millis(5), || {
            let next = f();
            let child = &child;
            async move {
                if let Some(value) = next.await {
                    return Some(Ok(value));
                }
                let ended = child.lock().unwrap().try_wait().unwrap();
                ended.map(Err)
            }
        })
        .await;
    match outcome {
        Some(Ok(value)) => value,
        Some(Err(status)) => {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.lock().unwrap().stderr.take() {
                std::io::Read::read_to_string(&mut pipe, &mut stderr).ok();
            }
            panic!("copy ended ({status}) before {what}:\n{stderr}");
        }
        None => panic!("timed out waiting for {what}"),
    }
}

/// A copy whose backends never check on their own that it is still there, so that what a killed
/// run leaves behind is ended by the next run's lease, the guard under test.
fn copy(f: &Fixture) -> Child {
    f.command(&["copy", "--jobs", "2", "--chunk-rows", "150"])
        .env("MFE_MIGRATE_CLIENT_CHECK_MS", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Something the test holds that keeps the tool at the kill point; released after the kill.
enum Hold {
    Gate(Gate),
    Tx(PgConnection),
}

impl Hold {
    async fn release(self) {
        match self {
            Hold::Gate(gate) => gate.open().await,
            Hold::Tx(mut conn) => {
                sqlx::raw_sql("COMMIT").execute(&mut conn).await.unwrap();
            }
        }
    }
}

async fn begin(url: &str, sql: &str) -> PgConnection {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("BEGIN; {sql}")))
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

/// Runs the copy up to `point`, kills it there, lets the killed run's statement go on while a
/// second copy runs, and checks that the second copy finishes and verifies clean.
async fn kill_at_then_resume(f: &Fixture, point: Point) {
    f.run_ok(&["prepare"]);
    let (db, pattern) = match point {
        Point::Planning => (PAYMENTS, "DROP CONSTRAINT IF EXISTS \"?payments_pkey"),
        Point::Loading => (PAYMENTS, "UPDATE mfe_migration.chunks"),
        Point::KeyConstraint => (PAYMENTS, "ADD CONSTRAINT \"?payment_transactions_pkey"),
        Point::Index => (PAYMENTS, "CREATE INDEX \"?payments_status_idx"),
        Point::Freezing => (ADMIN, "VACUUM"),
        Point::ForeignKey => (AUTH, "ADD CONSTRAINT \"?refresh_tokens_user_id_fkey"),
        Point::JournalDone => (AUTH, "UPDATE mfe_migration.tables"),
    };
    let url = &f.targets[db].url.clone();
    let pool = &f.target(db).await;
    // What the test holds, and the statement the tool then waits in.
    let mut child;
    let hold = match point {
        Point::Planning | Point::KeyConstraint | Point::Index | Point::ForeignKey => {
            let gate = Gate::install(url, pattern).await;
            child = copy(f);
            Hold::Gate(gate)
        }
        Point::Loading => {
            child = copy(f);
            // The last chunk still to copy: its worker blocks on the journal row after its rows.
            let tx = until(&mut child, "chunks to lock", || async move {
                let mut conn = begin(url, "").await;
                let locked: Option<i32> = sqlx::query_scalar(
                    "SELECT chunk FROM mfe_migration.chunks
                     WHERE table_name = 'payment_transactions' AND rows IS NULL
                     ORDER BY chunk DESC LIMIT 1 FOR UPDATE",
                )
                .fetch_optional(&mut conn)
                .await
                .ok()
                .flatten();
                locked.map(|_| conn)
            })
            .await;
            Hold::Tx(tx)
        }
        Point::Freezing => {
            // Held at audit_logs' first index; then a SHARE lock lets every index build through
            // (SHARE does not conflict with itself) and stops the VACUUM that follows.
            let gate = Gate::install(url, "CREATE INDEX \"?audit_logs_action_idx").await;
            child = copy(f);
            until(&mut child, "the first audit_logs index", || async move {
                let pids = waiting(pool, "CREATE INDEX \"?audit_logs_action_idx").await;
                (!pids.is_empty()).then_some(())
            })
            .await;
            let share = begin(url, "LOCK TABLE public.audit_logs IN SHARE MODE").await;
            gate.open().await;
            Hold::Tx(share)
        }
        Point::JournalDone => {
            // Held at the foreign key (after every table's index build); then the journal row of
            // refresh_tokens is locked, so users is marked done and refresh_tokens is not.
            let gate = Gate::install(url, "ADD CONSTRAINT \"?refresh_tokens_user_id_fkey").await;
            child = copy(f);
            until(&mut child, "the foreign key", || async move {
                let pids = waiting(pool, "ADD CONSTRAINT \"?refresh_tokens_user_id_fkey").await;
                (!pids.is_empty()).then_some(())
            })
            .await;
            let row = begin(
                url,
                "SELECT 1 FROM mfe_migration.tables WHERE table_name = 'refresh_tokens' FOR UPDATE",
            )
            .await;
            gate.open().await;
            Hold::Tx(row)
        }
    };
    let orphans = until(&mut child, &format!("{point:?}"), || async move {
        let pids = waiting(pool, pattern).await;
        (!pids.is_empty()).then_some(pids)
    })
    .await;
    let before_kill: &Vec<i32> =
        &sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            .fetch_all(pool)
            .await
            .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();

    // The killed run's backends are still in their statements. The second run starts; what the
    // test holds is let go once those backends are gone, or once the second run waits for a lock
    // too (it met them: without the lease, the two then race).
    let mut resume = copy(f);
    let orphans = &orphans;
    until(
        &mut resume,
        "the killed run's statement to end or meet the resume",
        || async move {
            let met = waiting(pool, "")
                .await
                .iter()
                .any(|pid| !before_kill.contains(pid));
            (met || !alive(pool, orphans).await).then_some(())
        },
    )
    .await;
    hold.release().await;
    let out = resume.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the copy after a kill at {point:?} failed:\n{stderr}"
    );
    assert!(
        stderr.contains("ending statements an interrupted run left running"),
        "the resume after {point:?} ended the killed run's statements itself:\n{stderr}"
    );
    let (code, report) = f.verify_json();
    assert_eq!(code, 0, "verify after a kill at {point:?}: {report:#}");
}

async fn each(points: &[Point]) {
    let legacy = Fixture::seeded(0.03).await;
    for point in points {
        let f = legacy.with_fresh_targets();
        kill_at_then_resume(&f, *point).await;
    }
}

#[tokio::test]
async fn a_copy_killed_while_planning_or_loading_resumes_at_once() {
    each(&[Point::Planning, Point::Loading]).await;
}

#[tokio::test]
async fn a_copy_killed_while_rebuilding_keys_or_indexes_resumes_at_once() {
    each(&[Point::KeyConstraint, Point::Index]).await;
}

#[tokio::test]
async fn a_copy_killed_while_freezing_restoring_foreign_keys_or_journaling_resumes_at_once() {
    each(&[Point::Freezing, Point::ForeignKey, Point::JournalDone]).await;
}

#[tokio::test]
async fn a_second_copy_while_one_runs_is_refused_naming_the_database() {
    let f = Fixture::seeded(0.01).await;
    f.run_ok(&["prepare"]);
    let url = &f.targets[PAYMENTS].url.clone();
    let pool = &f.target(PAYMENTS).await;
    let pattern = "ADD CONSTRAINT \"?payments_pkey";
    let gate = Gate::install(url, pattern).await;
    let mut first = copy(&f);
    until(&mut first, "the first copy's primary key", || async move {
        (!waiting(pool, pattern).await.is_empty()).then_some(())
    })
    .await;
    let second = f.run(&["copy"]);
    assert_eq!(second.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr
            .contains("another copy or import is running against the auth-service database (pid "),
        "{stderr}"
    );
    gate.open().await;
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, report) = f.verify_json();
    assert_eq!(code, 0, "{report:#}");
}
