//! `GET /admin/audit-logs/export`: every row matching the filters, as CSV (RFC 4180) or NDJSON,
//! streamed a batch at a time from one server-side cursor over one snapshot: memory stays at one
//! batch whatever the number of rows, and the time is linear in the rows (each batch used to be
//! its own query, which re-read and sorted every matching row: quadratic). The export holds a
//! connection while it runs; `AppState::exports` bounds how many run at once.

use axum::body::Bytes;
use futures_util::Stream;
use serde::Deserialize;
use sqlx::{PgPool, Postgres, Transaction};
use utoipa::ToSchema;

use crate::store::audit_logs::{self as store, AuditRow, Filter};
use crate::views::AuditLogView;

/// Rows per query and per chunk sent.
const BATCH: i64 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Ndjson,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Ndjson => "application/x-ndjson",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
        }
    }
}

const CSV_HEADER: &str =
    "id,createdAt,userId,action,resourceType,resourceId,ipAddress,userAgent,details\r\n";

/// Appends one CSV field. A field that a spreadsheet would run as a formula (starting with `=`,
/// `+`, `-`, `@`, tab or carriage return) gets a leading `'` (OWASP's advice), and any field
/// holding a comma, quote or line break is quoted with its quotes doubled (RFC 4180).
fn csv_field(out: &mut String, value: Option<&str>) {
    let Some(value) = value else { return };
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = formula || value.contains([',', '"', '\r', '\n']);
    if quote {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    for c in value.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if quote {
        out.push('"');
    }
}

fn csv_row(out: &mut String, row: &AuditRow) {
    let created_at = row
        .created_at
        .and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let fields = [
        Some(row.id.as_str()),
        Some(created_at.as_str()),
        row.user_id.as_deref(),
        Some(row.action.as_str()),
        row.resource_type.as_deref(),
        row.resource_id.as_deref(),
        row.ip_address.as_deref(),
        row.user_agent.as_deref(),
        row.details.as_deref(),
    ];
    for (i, field) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, field);
    }
    out.push_str("\r\n");
}

fn encode(format: Format, rows: Vec<AuditRow>, out: &mut String) {
    for row in rows {
        match format {
            Format::Csv => csv_row(out, &row),
            Format::Ndjson => {
                let line = serde_json::to_string(&AuditLogView::from(row))
                    .expect("an audit row serialises");
                out.push_str(&line);
                out.push('\n');
            }
        }
    }
}

/// Where the export stands: not started, reading its cursor, or finished.
enum Cursor {
    Start(PgPool, Filter),
    Reading(Transaction<'static, Postgres>),
    Done,
}

/// The export as a stream of chunks, newest first. A database error ends the stream with an
/// error, which aborts the response: the client sees a cut transfer, never a short file that
/// looks whole.
pub fn stream(
    pool: PgPool,
    filter: Filter,
    format: Format,
) -> impl Stream<Item = Result<Bytes, sqlx::Error>> + Send + 'static {
    futures_util::stream::unfold(Cursor::Start(pool, filter), move |state| async move {
        let mut out = String::new();
        let mut conn = match state {
            Cursor::Done => return None,
            Cursor::Reading(conn) => conn,
            Cursor::Start(pool, filter) => {
                if format == Format::Csv {
                    out.push_str(CSV_HEADER);
                }
                match open(&pool, &filter).await {
                    Ok(conn) => conn,
                    Err(e) => return Some((Err(failed(e)), Cursor::Done)),
                }
            }
        };
        match store::fetch_export(&mut conn, BATCH).await {
            Ok(rows) => {
                let last = (rows.len() as i64) < BATCH;
                metrics::counter!("admin_export_rows_total").increment(rows.len() as u64);
                encode(format, rows, &mut out);
                let next = if last {
                    // Read-only: ending it changes nothing. Dropped earlier (the client left),
                    // the transaction is rolled back before its connection is used again.
                    if let Err(e) = conn.commit().await {
                        return Some((Err(failed(e)), Cursor::Done));
                    }
                    Cursor::Done
                } else {
                    Cursor::Reading(conn)
                };
                Some((Ok(Bytes::from(out)), next))
            }
            Err(e) => Some((Err(failed(e)), Cursor::Done)),
        }
    })
}

/// One snapshot and one plan for the whole export: a cursor in a read-only transaction, read a
/// batch at a time (the time of each batch does not grow with the rows before it).
async fn open(
    pool: &PgPool,
    filter: &Filter,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    crate::store::snapshot(&mut tx).await?;
    store::declare_export(&mut tx, filter).await?;
    Ok(tx)
}

fn failed(e: sqlx::Error) -> sqlx::Error {
    tracing::error!(error = %e, "audit export aborted");
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(value: &str) -> String {
        let mut out = String::new();
        csv_field(&mut out, Some(value));
        out
    }

    #[test]
    fn formulas_are_neutralised() {
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("+1"), "\"'+1\"");
        assert_eq!(field("-2"), "\"'-2\"");
        assert_eq!(field("@SUM(A1)"), "\"'@SUM(A1)\"");
        assert_eq!(field("plain"), "plain");
    }

    #[test]
    fn fields_are_quoted_as_rfc_4180_says() {
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\r\nlines"), "\"two\r\nlines\"");
        let mut out = String::new();
        csv_field(&mut out, None);
        assert_eq!(out, "");
    }
}
