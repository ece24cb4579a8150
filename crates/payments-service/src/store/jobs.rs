//! `payments.jobs`: what the background worker owes each payment. One row per payment; a worker
//! takes a row with `FOR UPDATE SKIP LOCKED`, so replicas never work on the same payment.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Send the payment to the provider.
    Charge,
    /// Create the next occurrence of a recurring payment.
    Occurrence,
    /// Ask the provider how a charge with an unknown outcome ended.
    Reconcile,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Charge => "charge",
            Kind::Occurrence => "occurrence",
            Kind::Reconcile => "reconcile",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Kind::Charge, Kind::Occurrence, Kind::Reconcile]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone)]
pub struct Job {
    pub payment_id: String,
    pub kind: Kind,
    pub due_at: DateTime<Utc>,
    pub attempts: i32,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    payment_id: String,
    kind: String,
    due_at: DateTime<Utc>,
    attempts: i32,
}

impl JobRow {
    fn into_job(self) -> Option<Job> {
        Some(Job {
            kind: Kind::parse(&self.kind)?,
            payment_id: self.payment_id,
            due_at: self.due_at,
            attempts: self.attempts,
        })
    }
}

/// Gives `payment_id` this job (replacing the one it had), due at `due_at`, and wakes the
/// workers at commit.
pub async fn put(
    conn: &mut PgConnection,
    payment_id: &str,
    kind: Kind,
    due_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO payments.jobs (payment_id, kind, due_at) VALUES ($1, $2, $3) \
         ON CONFLICT (payment_id) DO UPDATE SET kind = EXCLUDED.kind, due_at = EXCLUDED.due_at, \
           attempts = 0, last_error = NULL",
    )
    .bind(payment_id)
    .bind(kind.as_str())
    .bind(due_at)
    .execute(&mut *conn)
    .await?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(WAKE_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

/// The channel `put` notifies, so that a worker starts a job due now at once.
pub const WAKE_CHANNEL: &str = "payments_jobs";

/// The next due job no other worker holds, locked until the transaction ends.
pub async fn take_due(conn: &mut PgConnection) -> sqlx::Result<Option<Job>> {
    let row: Option<JobRow> = sqlx::query_as(
        "SELECT payment_id, kind, due_at, attempts FROM payments.jobs \
         WHERE due_at <= now() ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED",
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.and_then(JobRow::into_job))
}

/// The job of `payment_id` if it is of `kind` and no other worker holds it, locked until the
/// transaction ends.
pub async fn take(
    conn: &mut PgConnection,
    payment_id: &str,
    kind: Kind,
) -> sqlx::Result<Option<Job>> {
    let row: Option<JobRow> = sqlx::query_as(
        "SELECT payment_id, kind, due_at, attempts FROM payments.jobs \
         WHERE payment_id = $1 AND kind = $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(payment_id)
    .bind(kind.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(row.and_then(JobRow::into_job))
}

/// Locks the job of `payment_id`, if it has one, waiting for a worker that holds it.
///
/// Every transaction that changes a payment and its job takes the job row first and the payment
/// row second (the worker's order), so that two of them never wait on each other.
pub async fn lock(conn: &mut PgConnection, payment_id: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT 1 FROM payments.jobs WHERE payment_id = $1 FOR UPDATE")
        .bind(payment_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Puts a job off until `due_at`, counting the attempt and why it did not finish.
pub async fn postpone(
    conn: &mut PgConnection,
    payment_id: &str,
    due_at: DateTime<Utc>,
    error: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE payments.jobs SET due_at = $2, attempts = attempts + 1, last_error = $3 \
         WHERE payment_id = $1",
    )
    .bind(payment_id)
    .bind(due_at)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records why a job's last attempt did not finish (for operators: `last_error`).
pub async fn note_error(
    conn: &mut PgConnection,
    payment_id: &str,
    error: &str,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE payments.jobs SET last_error = $2 WHERE payment_id = $1")
        .bind(payment_id)
        .bind(error.chars().take(500).collect::<String>())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete(conn: &mut PgConnection, payment_id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM payments.jobs WHERE payment_id = $1")
        .bind(payment_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Gives a reconcile job to every `processing` payment this service sent to the provider that
/// has no job (a safety net: the charge path never leaves one without). Payments the legacy
/// platform left `processing` were never sent by this service, so their provider reference is
/// unknown here: they are left as they are. Returns how many were adopted.
pub async fn adopt_orphans(conn: &mut PgConnection) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "INSERT INTO payments.jobs (payment_id, kind, due_at) \
         SELECT p.id, 'reconcile', now() FROM payments p \
         WHERE p.status = 'processing' \
           AND NOT EXISTS (SELECT 1 FROM payments.jobs j WHERE j.payment_id = p.id) \
           AND EXISTS (SELECT 1 FROM payment_transactions t WHERE t.payment_id = p.id \
                       AND t.status = 'processing' AND t.status_message = $1) \
         ON CONFLICT (payment_id) DO NOTHING",
    )
    .bind(SENT_TO_PROVIDER)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// The history message of a payment's move to `processing` by this service.
pub const SENT_TO_PROVIDER: &str = "Sent to the provider";

/// How many jobs of each kind wait (zero included), for `/metrics`.
pub async fn backlog(conn: &mut PgConnection) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT k.kind, count(j.payment_id) \
         FROM unnest(ARRAY['charge', 'occurrence', 'reconcile']) AS k(kind) \
         LEFT JOIN payments.jobs j ON j.kind = k.kind GROUP BY k.kind",
    )
    .fetch_all(conn)
    .await
}
