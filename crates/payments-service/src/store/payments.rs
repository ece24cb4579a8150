//! `payments` (the seed's table), read together with its schedule (`payments.schedules`).
//! Timestamps are written as UTC explicitly: the legacy columns are `TIMESTAMP(3)` without a zone,
//! so the session's time zone must not leak into them.

use chrono::{DateTime, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};

use crate::status::Status;

/// A row of `payments`, with its schedule when it has one.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PaymentRow {
    pub id: String,
    pub sender_id: String,
    pub recipient_id: Option<String>,
    pub amount: Decimal,
    pub currency: String,
    pub status: String,
    pub payment_type: String,
    pub description: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub psp_transaction_id: Option<String>,
    pub psp_status: Option<String>,
    pub failure_reason: Option<String>,
    pub completed_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub interval: Option<String>,
}

impl PaymentRow {
    /// The column is the `"PaymentStatus"` enum, whose labels are exactly [`Status`]'s.
    pub fn status(&self) -> Status {
        self.status.parse().unwrap_or(Status::Pending)
    }
}

const COLUMNS: &str = "p.id, p.sender_id, p.recipient_id, p.amount, p.currency, \
    p.status::text AS status, p.type::text AS payment_type, p.description, p.metadata, \
    p.psp_transaction_id, p.psp_status, p.failure_reason, p.completed_at, p.created_at, \
    p.updated_at, s.scheduled_at, s.\"interval\"";
const FROM: &str = "payments p LEFT JOIN payments.schedules s ON s.payment_id = p.id";

pub struct NewPayment<'a> {
    pub id: &'a str,
    pub sender_id: &'a str,
    pub recipient_id: &'a str,
    pub amount: Decimal,
    pub currency: &'a str,
    pub payment_type: &'a str,
    pub description: Option<&'a str>,
    pub metadata: Option<&'a serde_json::Value>,
}

pub async fn insert(conn: &mut PgConnection, new: &NewPayment<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO payments (id, sender_id, recipient_id, amount, currency, status, type, \
           description, metadata, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'pending', $6::text::\"PaymentType\", $7, $8, \
           now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC')",
    )
    .bind(new.id)
    .bind(new.sender_id)
    .bind(new.recipient_id)
    .bind(new.amount)
    .bind(new.currency)
    .bind(new.payment_type)
    .bind(new.description)
    .bind(new.metadata)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find(conn: &mut PgConnection, id: &str) -> sqlx::Result<Option<PaymentRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE p.id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// The payment, locked until the transaction ends.
pub async fn lock(conn: &mut PgConnection, id: &str) -> sqlx::Result<Option<PaymentRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE p.id = $1 FOR UPDATE OF p"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

pub struct StatusUpdate<'a> {
    pub status: Status,
    /// `None` keeps the current value.
    pub psp_transaction_id: Option<&'a str>,
    pub psp_status: Option<&'a str>,
    pub failure_reason: Option<&'a str>,
}

pub async fn update_status(
    conn: &mut PgConnection,
    id: &str,
    update: &StatusUpdate<'_>,
) -> sqlx::Result<PaymentRow> {
    sqlx::query(
        "UPDATE payments SET status = $2::text::\"PaymentStatus\", \
           psp_transaction_id = coalesce($3, psp_transaction_id), \
           psp_status = coalesce($4, psp_status), \
           failure_reason = coalesce($5, failure_reason), \
           completed_at = CASE WHEN $2 = 'completed' THEN now() AT TIME ZONE 'UTC' ELSE completed_at END, \
           updated_at = now() AT TIME ZONE 'UTC' \
         WHERE id = $1",
    )
    .bind(id)
    .bind(update.status.as_str())
    .bind(update.psp_transaction_id)
    .bind(update.psp_status)
    .bind(update.failure_reason)
    .execute(&mut *conn)
    .await?;
    find(conn, id).await?.ok_or(sqlx::Error::RowNotFound)
}

/// Records what the provider says about a charge that has not settled yet.
pub async fn set_psp(
    conn: &mut PgConnection,
    id: &str,
    psp_transaction_id: Option<&str>,
    psp_status: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE payments SET psp_transaction_id = coalesce($2, psp_transaction_id), \
           psp_status = $3, updated_at = now() AT TIME ZONE 'UTC' \
         WHERE id = $1 AND status = 'processing'",
    )
    .bind(id)
    .bind(psp_transaction_id)
    .bind(psp_status)
    .execute(conn)
    .await?;
    Ok(())
}

/// Which payments of a user a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Sent,
    Received,
    All,
}

pub struct ListFilter<'a> {
    pub user_id: &'a str,
    pub direction: Direction,
    pub status: Option<Status>,
    pub payment_type: Option<&'a str>,
    pub from: Option<NaiveDateTime>,
    pub to: Option<NaiveDateTime>,
    /// The last row of the previous page: (created_at, id).
    pub after: Option<(NaiveDateTime, String)>,
    pub limit: i64,
}

/// A user's payments, newest first, as a keyset scan on (created_at, id). Both directions are the
/// union of the sent and the received ranges, each limited and read in index order (the
/// `*_created_at_idx` indexes), so a page costs its own rows however many the user has; an `OR`
/// of the two columns would gather and sort all of them. Schedules are joined to the page only:
/// joined inside, a generic plan may join and sort every row of the user first.
pub async fn list(conn: &mut PgConnection, f: &ListFilter<'_>) -> sqlx::Result<Vec<PaymentRow>> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!("SELECT {COLUMNS} FROM ("));
    match f.direction {
        Direction::Sent => push_side(&mut q, f, "p.sender_id = ", None),
        Direction::Received => push_side(&mut q, f, "p.recipient_id = ", None),
        Direction::All => {
            push_side(&mut q, f, "p.sender_id = ", None);
            q.push(" UNION ALL ");
            // A payment to oneself is already in the sent side.
            push_side(&mut q, f, "p.recipient_id = ", Some("p.sender_id <> "));
        }
    }
    q.push(") p LEFT JOIN payments.schedules s ON s.payment_id = p.id")
        .push(" ORDER BY p.created_at DESC, p.id DESC LIMIT ")
        .push_bind(f.limit);
    q.build_query_as().fetch_all(conn).await
}

/// One side of a list: the user's rows on `column` (and not on `unless`), filtered, newest first,
/// at most a page.
fn push_side(
    q: &mut QueryBuilder<Postgres>,
    f: &ListFilter<'_>,
    column: &str,
    unless: Option<&str>,
) {
    q.push("(SELECT p.* FROM payments p WHERE ")
        .push(column)
        .push_bind(f.user_id.to_string());
    if let Some(unless) = unless {
        q.push(" AND ")
            .push(unless)
            .push_bind(f.user_id.to_string());
    }
    if let Some(status) = f.status {
        q.push(" AND p.status = ")
            .push_bind(status.as_str())
            .push("::text::\"PaymentStatus\"");
    }
    if let Some(kind) = f.payment_type {
        q.push(" AND p.type = ")
            .push_bind(kind.to_string())
            .push("::text::\"PaymentType\"");
    }
    if let Some(from) = f.from {
        q.push(" AND p.created_at >= ").push_bind(from);
    }
    if let Some(to) = f.to {
        q.push(" AND p.created_at < ").push_bind(to);
    }
    if let Some((at, id)) = &f.after {
        q.push(" AND (p.created_at, p.id) < (")
            .push_bind(*at)
            .push(", ")
            .push_bind(id.clone())
            .push(")");
    }
    q.push(" ORDER BY p.created_at DESC, p.id DESC LIMIT ")
        .push_bind(f.limit)
        .push(")");
}

/// How many payments are in each status (zero included), for `/metrics`.
pub async fn count_by_status(pool: &PgPool) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT s.status::text, count(p.id) \
         FROM unnest(enum_range(NULL::\"PaymentStatus\")) AS s(status) \
         LEFT JOIN payments p ON p.status = s.status GROUP BY s.status",
    )
    .fetch_all(pool)
    .await
}
