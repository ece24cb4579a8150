//! `GET /admin/audit-logs/export`: every row matching the filters, as CSV (RFC 4180) or NDJSON,
//! streamed a batch at a time. Each batch is its own keyset query, so memory stays at one batch
//! whatever the number of rows, and no connection is held while a slow client reads.

use axum::body::Bytes;
use chrono::NaiveDateTime;
use futures_util::Stream;
use serde::Deserialize;
use sqlx::PgPool;
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

struct Cursor {
    pool: PgPool,
    filter: Filter,
    format: Format,
    after: Option<(NaiveDateTime, String)>,
    started: bool,
    done: bool,
}

/// The export as a stream of chunks, newest first. A database error ends the stream with an
/// error, which aborts the response: the client sees a cut transfer, never a short file that
/// looks whole.
pub fn stream(
    pool: PgPool,
    filter: Filter,
    format: Format,
) -> impl Stream<Item = Result<Bytes, sqlx::Error>> + Send + 'static {
    let cursor = Cursor {
        pool,
        filter,
        format,
        after: None,
        started: false,
        done: false,
    };
    futures_util::stream::unfold(cursor, |mut c| async move {
        if c.done {
            return None;
        }
        let mut out = String::new();
        if !c.started {
            c.started = true;
            if c.format == Format::Csv {
                out.push_str(CSV_HEADER);
            }
        }
        let batch = async {
            let mut conn = c.pool.acquire().await?;
            store::list(&mut conn, &c.filter, c.after.as_ref(), BATCH).await
        };
        match batch.await {
            Ok(rows) => {
                c.done = (rows.len() as i64) < BATCH;
                c.after = rows.last().map(|r| (r.created_at, r.id.clone()));
                metrics::counter!("admin_export_rows_total").increment(rows.len() as u64);
                encode(c.format, rows, &mut out);
                Some((Ok(Bytes::from(out)), c))
            }
            Err(e) => {
                tracing::error!(error = %e, "audit export aborted");
                c.done = true;
                Some((Err(e), c))
            }
        }
    })
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
