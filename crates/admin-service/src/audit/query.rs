//! Reading the audit log: the filters of `GET /admin/audit-logs` (and of its export), pages newest
//! first, and one entry with its user as auth knows them now.

use chrono::{DateTime, Utc};
use platform::ApiError;
use platform::error::Validator;
use platform::pagination::{self, PageRequest};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::error::{AdminError, Result};
use crate::store::audit_logs::{self as store, ActionFilter, AuditRow, Filter};
use crate::views::{AuditLogDetail, AuditLogView, UserLookup, UserView};

const MAX_TEXT: usize = 200;

/// The filters, as the query string gives them.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct Filters {
    /// The acting user's id.
    #[param(min_length = 1, max_length = 200, pattern = r"^[^\x00]*$")]
    pub user_id: Option<String>,
    /// An action (`payment.created`), or every action under a prefix (`payment.*`).
    #[param(min_length = 1, max_length = 200, pattern = r"^[^\x00]*$")]
    pub action: Option<String>,
    #[param(min_length = 1, max_length = 200, pattern = r"^[^\x00]*$")]
    pub resource_type: Option<String>,
    #[param(min_length = 1, max_length = 200, pattern = r"^[^\x00]*$")]
    pub resource_id: Option<String>,
    /// Created at or after (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Created before (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// A piece of the details, case-insensitive (1 to 200 characters).
    #[param(min_length = 1, max_length = 200, pattern = r"^[^\x00]*$")]
    pub q: Option<String>,
}

impl Filters {
    /// The checked filter; each bad field is named in one 422.
    pub fn check(self) -> Result<Filter, ApiError> {
        let mut v = Validator::new();
        for (field, value) in [
            ("userId", &self.user_id),
            ("action", &self.action),
            ("resourceType", &self.resource_type),
            ("resourceId", &self.resource_id),
            ("q", &self.q),
        ] {
            if let Some(value) = value {
                v.check(
                    !value.is_empty() && value.chars().count() <= MAX_TEXT,
                    field,
                    "must be 1 to 200 characters",
                );
                // PostgreSQL text cannot hold it; the export would only learn so mid-stream,
                // after its 200 went out.
                v.check(
                    !value.contains('\0'),
                    field,
                    "must not contain the NUL character",
                );
            }
        }
        let action = self.action.map(|a| match a.strip_suffix('*') {
            Some(prefix) => ActionFilter::Prefix(prefix.to_string()),
            None => ActionFilter::Exact(a),
        });
        match &action {
            Some(ActionFilter::Prefix(p)) | Some(ActionFilter::Exact(p)) if p.contains('*') => {
                v.push(
                    "action",
                    "is an action, or a prefix followed by one '*' (payment.*)",
                );
            }
            _ => {}
        }
        if let (Some(from), Some(to)) = (self.from, self.to) {
            v.check(from < to, "to", "must be after from");
        }
        v.finish()?;
        Ok(Filter {
            user_id: self.user_id,
            action,
            resource_type: self.resource_type,
            resource_id: self.resource_id,
            from: self.from.map(|t| t.naive_utc()),
            to: self.to.map(|t| t.naive_utc()),
            q: self.q,
        })
    }
}

pub fn cursor_key(row: &AuditRow) -> String {
    pagination::time_key(&row.created_at, &row.id)
}

/// One page, newest first, and the next page's cursor.
pub async fn page(
    state: &AppState,
    filter: &Filter,
    page: &PageRequest,
) -> Result<(Vec<AuditLogView>, Option<String>)> {
    let after = page
        .after
        .as_deref()
        .map(pagination::parse_time_key)
        .transpose()?;
    let mut conn = state.readers.acquire().await?;
    let rows = store::list(&mut conn, filter, after.as_ref(), page.fetch()).await?;
    conn.release();
    let mut keyed: Vec<(String, AuditRow)> = rows
        .into_iter()
        .map(|row| (cursor_key(&row), row))
        .collect();
    let next_cursor = page.finish(&mut keyed, |(key, _)| key);
    let items = keyed.into_iter().map(|(_, row)| row.into()).collect();
    Ok((items, next_cursor))
}

/// The entry, with its user's current id, name and email fetched through auth (seed 3.3). Auth
/// being down does not hide the entry: `userLookup` says why there is no user.
pub async fn detail(state: &AppState, id: &str) -> Result<AuditLogDetail> {
    let mut conn = state.pool.acquire().await?;
    let row = store::get(&mut conn, id)
        .await?
        .ok_or(AdminError::NotFound("Audit log entry"))?;
    drop(conn);
    let (user, user_lookup) = match &row.user_id {
        None => (None, UserLookup::NoUser),
        Some(user_id) => match state.auth.user(user_id).await {
            Ok(Some(user)) => (
                Some(UserView {
                    id: user.id,
                    name: user.name,
                    email: user.email,
                }),
                UserLookup::Found,
            ),
            Ok(None) => (None, UserLookup::NotFound),
            // Whatever went wrong with auth (down, a rotated credential, an odd answer), the
            // entry itself is still served.
            Err(e) => {
                tracing::warn!(error = %e, "auth cannot give an audit entry's user; served without");
                (None, UserLookup::Unavailable)
            }
        },
    };
    Ok(AuditLogDetail {
        entry: row.into(),
        user,
        user_lookup,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_ending_in_a_star_is_a_prefix() {
        let f = Filters {
            action: Some("payment.*".into()),
            ..Default::default()
        };
        assert_eq!(
            f.check().unwrap().action,
            Some(ActionFilter::Prefix("payment.".into()))
        );
        let f = Filters {
            action: Some("pay*ment.*".into()),
            ..Default::default()
        };
        assert!(f.check().is_err());
    }

    #[test]
    fn an_empty_filter_or_a_reversed_range_is_refused() {
        let f = Filters {
            q: Some(String::new()),
            ..Default::default()
        };
        assert!(f.check().is_err());
        let now = Utc::now();
        let f = Filters {
            from: Some(now),
            to: Some(now - chrono::Duration::seconds(1)),
            ..Default::default()
        };
        assert!(f.check().is_err());
    }
}
