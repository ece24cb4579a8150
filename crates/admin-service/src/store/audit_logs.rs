//! `audit_logs`, the seed's table as it is: written one row per audited event, read newest first
//! as a keyset scan on (created_at, id), with the list's filters.

use chrono::NaiveDateTime;
use sqlx::{Connection, PgConnection, Postgres, QueryBuilder};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: String,
    pub user_id: Option<String>,
    pub action: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    /// The JSON text, as PostgreSQL prints it: numbers keep every digit (a legacy row may hold
    /// more than a float can).
    pub details: Option<String>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: NaiveDateTime,
}

const COLUMNS: &str = "a.id, a.user_id, a.action, a.resource_type, a.resource_id, \
                       a.details::text AS details, a.ip_address, a.user_agent, a.created_at";

/// Writes `row` unless a row with its id exists; true when written.
pub async fn insert(conn: &mut PgConnection, row: &AuditRow) -> sqlx::Result<bool> {
    let written = sqlx::query(
        "INSERT INTO audit_logs (id, user_id, action, resource_type, resource_id, details, \
                                 ip_address, user_agent, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&row.id)
    .bind(&row.user_id)
    .bind(&row.action)
    .bind(&row.resource_type)
    .bind(&row.resource_id)
    .bind(&row.details)
    .bind(&row.ip_address)
    .bind(&row.user_agent)
    .bind(row.created_at)
    .execute(conn)
    .await?;
    Ok(written.rows_affected() == 1)
}

/// [`insert`] on the legacy database (shared topology), whose key `audit_logs_user_id_fkey`
/// (ON DELETE SET NULL) wants `user_id` in `users`. A user that is not there (the subject of
/// `user.deleted`, deleted before its event is audited; a service credential) is written as NULL,
/// as that key leaves the rows of a deleted user; the id stays in `details`, which hold the
/// event's data. In a savepoint, so the consumer's transaction survives the refusal. Sets
/// `row.user_id` to what was written.
pub async fn insert_on_legacy(conn: &mut PgConnection, row: &mut AuditRow) -> sqlx::Result<bool> {
    let mut savepoint = conn.begin().await?;
    match insert(&mut savepoint, row).await {
        Ok(written) => {
            savepoint.commit().await?;
            Ok(written)
        }
        Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
            savepoint.rollback().await?;
            row.user_id = None;
            insert(conn, row).await
        }
        Err(e) => Err(e),
    }
}

pub async fn get(conn: &mut PgConnection, id: &str) -> sqlx::Result<Option<AuditRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM audit_logs a WHERE a.id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Which rows: every field optional, all given ones must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub user_id: Option<String>,
    pub action: Option<ActionFilter>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    /// Created at or after.
    pub from: Option<NaiveDateTime>,
    /// Created before.
    pub to: Option<NaiveDateTime>,
    /// A substring of the details' JSON text, case-insensitive.
    pub q: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionFilter {
    Exact(String),
    /// `payment.*`: every action starting with `payment.`.
    Prefix(String),
}

/// `s` with LIKE's wildcards and escape character taken literally.
fn like_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One page (or one export batch) of rows matching `filter`, newest first, after `after`.
pub async fn list(
    conn: &mut PgConnection,
    filter: &Filter,
    after: Option<&(NaiveDateTime, String)>,
    limit: i64,
) -> sqlx::Result<Vec<AuditRow>> {
    let mut q = filtered("", filter, after);
    q.push(" LIMIT ").push_bind(limit);
    q.build_query_as().fetch_all(conn).await
}

/// The plan PostgreSQL chooses for a page of `filter` after `after` (`EXPLAIN`, text): what an
/// operator or a test looks at to see that a page is an index range.
pub async fn explain_list(
    conn: &mut PgConnection,
    filter: &Filter,
    after: Option<&(NaiveDateTime, String)>,
    limit: i64,
) -> sqlx::Result<String> {
    let mut q = filtered("EXPLAIN ", filter, after);
    q.push(" LIMIT ").push_bind(limit);
    let lines: Vec<String> = q.build_query_scalar().fetch_all(conn).await?;
    Ok(lines.join("\n"))
}

/// Opens, in the caller's transaction, the cursor `audit_export` over every row matching
/// `filter`, newest first: one snapshot, one plan, read with [`fetch_export`].
pub async fn declare_export(conn: &mut PgConnection, filter: &Filter) -> sqlx::Result<()> {
    let mut q = filtered("DECLARE audit_export NO SCROLL CURSOR FOR ", filter, None);
    q.build().execute(conn).await?;
    Ok(())
}

/// The next `n` rows of the cursor [`declare_export`] opened.
pub async fn fetch_export(conn: &mut PgConnection, n: i64) -> sqlx::Result<Vec<AuditRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "FETCH FORWARD {n} FROM audit_export"
    )))
    .fetch_all(conn)
    .await
}

/// The rows matching `filter` after `after`, newest first, behind `prefix`. Every filter has an
/// index that gives this order (migration 0004): a page is a range read from its cursor on,
/// whatever its depth.
fn filtered(
    prefix: &str,
    filter: &Filter,
    after: Option<&(NaiveDateTime, String)>,
) -> QueryBuilder<Postgres> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "{prefix}SELECT {COLUMNS} FROM audit_logs a WHERE TRUE"
    ));
    if let Some(user_id) = &filter.user_id {
        q.push(" AND a.user_id = ").push_bind(user_id);
    }
    match &filter.action {
        Some(ActionFilter::Exact(action)) => {
            q.push(" AND a.action = ").push_bind(action);
        }
        Some(ActionFilter::Prefix(prefix)) => {
            q.push(" AND a.action LIKE ")
                .push_bind(format!("{}%", like_literal(prefix)));
        }
        None => {}
    }
    if let Some(kind) = &filter.resource_type {
        q.push(" AND a.resource_type = ").push_bind(kind);
    }
    if let Some(id) = &filter.resource_id {
        q.push(" AND a.resource_id = ").push_bind(id);
    }
    if let Some(from) = filter.from {
        q.push(" AND a.created_at >= ").push_bind(from);
    }
    if let Some(to) = filter.to {
        q.push(" AND a.created_at < ").push_bind(to);
    }
    if let Some(text) = &filter.q {
        q.push(" AND a.details::text ILIKE ")
            .push_bind(format!("%{}%", like_literal(text)));
    }
    if let Some((at, id)) = after {
        q.push(" AND (a.created_at, a.id) < (")
            .push_bind(*at)
            .push(", ")
            .push_bind(id.as_str())
            .push(")");
    }
    q.push(" ORDER BY a.created_at DESC, a.id DESC");
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_are_literal() {
        assert_eq!(like_literal(r"100% _x_ C:\"), r"100\% \_x\_ C:\\");
    }
}
