//! One loading run (`copy` or `import`) at a time per service database, and nothing left running
//! of a run that was killed.
//!
//! PostgreSQL notices that a client has gone only when it next talks to it, so a statement of a
//! killed run goes on in its backend: an index build, a primary key or a `VACUUM` of a large table
//! may run (and commit) for minutes while the next run, seeing nothing in the catalog yet, builds
//! the same thing; one of the two then fails ("multiple primary keys", a duplicate in
//! `pg_class`). So a run first takes the database's lease (a session advisory lock on a connection
//! that stays idle, so that the server frees it the moment the process dies), and then ends every
//! backend the tool's loaders left behind. Loader connections also ask the server to check every
//! second, while a statement runs, that their client is still there.

use std::time::{Duration, Instant};

use sqlx::PgConnection;

use platform::Service;

use crate::engine::connect;
use crate::error::{MigrateError, Result};

/// `application_name` of every connection that writes a load into a service database.
pub const LOADER_APP: &str = "mfe migrate loader";
/// `application_name` of the connection holding the lease.
const LEASE_APP: &str = "mfe migrate lease";
/// The advisory lock key ("mfe_load") of the first service; each service's is one more, so that
/// two service databases configured as one still get a lease each.
const LEASE_KEY: i64 = 0x6d66_655f_6c6f_6100;
/// How long a taken lease is retried: the lease connection of a run killed a moment ago may still
/// be closing.
const BUSY_RETRY: Duration = Duration::from_secs(5);
/// How long a left-behind backend may take to go once told to.
const ORPHAN_GRACE: Duration = Duration::from_secs(60);
/// How often a wait for left-behind statements says that it is still waiting.
const WAIT_REPORT: Duration = Duration::from_secs(30);

/// Held for the whole run; dropping it (or the process dying) frees the database for another.
pub struct Lease {
    _conn: PgConnection,
}

/// Takes the lease of `service` on its database (`which` names it in messages) and ends what a
/// killed run left there.
pub async fn acquire(service: Service, which: &str, url: &str) -> Result<Lease> {
    let key = LEASE_KEY + service as i64;
    let mut conn = connect::connection_as(which, url, LEASE_APP).await?;
    // A server-wide idle timeout would end the lease in the middle of a long run.
    let _ = sqlx::raw_sql("SET idle_session_timeout = 0")
        .execute(&mut conn)
        .await;
    let deadline = Instant::now() + BUSY_RETRY;
    let taken = loop {
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut conn)
            .await?;
        if taken || Instant::now() >= deadline {
            break taken;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if !taken {
        let holder: Option<String> = sqlx::query_scalar(
            "SELECT format('pid %s, from %s since %s', a.pid, coalesce(host(a.client_addr), 'a local socket'),
                           date_trunc('second', a.backend_start))
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.database = (
                   SELECT oid FROM pg_database WHERE datname = current_database())
               AND (l.classid::bigint << 32) | l.objid::bigint = $1",
        )
        .bind(key)
        .fetch_optional(&mut conn)
        .await?;
        return Err(MigrateError::Busy {
            which: which.to_string(),
            holder: holder.unwrap_or_else(|| "unknown".into()),
        });
    }
    end_orphans(&mut conn, which).await?;
    Ok(Lease { _conn: conn })
}

/// Ends the loader backends of earlier runs (we hold the lease, so no live run owns them) and
/// waits until they are gone. Without the right to signal them, it waits for their statements to
/// finish, however long that takes, saying so every half minute.
async fn end_orphans(conn: &mut PgConnection, which: &str) -> Result<()> {
    let orphans: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid()",
    )
    .bind(LOADER_APP)
    .fetch_all(&mut *conn)
    .await?;
    if orphans.is_empty() {
        return Ok(());
    }
    tracing::warn!(
        database = which,
        backends = ?orphans,
        "ending statements an interrupted run left running"
    );
    let mut refused = false;
    for pid in &orphans {
        if let Err(e) = sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(&mut *conn)
            .await
        {
            refused = true;
            tracing::warn!(database = which, pid, error = %e, "cannot end it; waiting for it to finish");
        }
    }
    let started = Instant::now();
    let mut reported = Instant::now();
    loop {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)")
                .bind(&orphans)
                .fetch_one(&mut *conn)
                .await?;
        if left == 0 {
            return Ok(());
        }
        if !refused && started.elapsed() > ORPHAN_GRACE {
            return Err(MigrateError::StillRunning(format!(
                "{which}: {left} statement(s) of an interrupted run are still running {}s after \
                 being told to end (backends {orphans:?}); see pg_stat_activity",
                ORPHAN_GRACE.as_secs()
            )));
        }
        if reported.elapsed() > WAIT_REPORT {
            tracing::warn!(
                database = which,
                left,
                "still waiting for an interrupted run's statements"
            );
            reported = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
