//! What the admin API answers: the seed's fields in camelCase.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::store::audit_logs::AuditRow;
use crate::store::system_config::ConfigRow;

/// One audit log entry, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditLogView {
    pub id: String,
    /// The acting user (no foreign key: the user may be gone).
    pub user_id: Option<String>,
    /// The event type, e.g. `payment.created`.
    pub action: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    /// The event's data, with `userName`: the acting user's name when the row was written.
    /// Served as stored, every digit of every number kept.
    #[schema(value_type = Option<Object>)]
    pub details: Option<Box<RawValue>>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<AuditRow> for AuditLogView {
    fn from(row: AuditRow) -> Self {
        Self {
            id: row.id,
            user_id: row.user_id,
            action: row.action,
            resource_type: row.resource_type,
            resource_id: row.resource_id,
            details: row.details.map(raw_json),
            ip_address: row.ip_address,
            user_agent: row.user_agent,
            created_at: row.created_at.and_utc(),
        }
    }
}

/// One page of `GET /admin/audit-logs`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditLogPage {
    /// Newest first.
    pub items: Vec<AuditLogView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The acting user as auth knows them now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: String,
    pub name: String,
    pub email: String,
}

/// Whether the acting user's current details could be fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserLookup {
    Found,
    /// The row has no user (a system action).
    NoUser,
    /// Auth no longer knows the user (deleted).
    NotFound,
    /// Auth could not be asked; the row is still served.
    Unavailable,
}

/// `GET /admin/audit-logs/{id}`: the entry and its user as they are now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditLogDetail {
    #[serde(flatten)]
    pub entry: AuditLogView,
    pub user: Option<UserView>,
    pub user_lookup: UserLookup,
}

/// A system configuration entry.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigEntryView {
    pub key: String,
    /// Any JSON value, as stored (`null` included).
    #[schema(value_type = serde_json::Value)]
    pub value: Box<RawValue>,
    pub description: Option<String>,
    pub updated_at: DateTime<Utc>,
    /// The ADMIN who last changed it.
    pub updated_by: Option<String>,
    /// The entry's ETag, as in the `ETag` header of its own route.
    pub etag: String,
}

impl From<ConfigRow> for ConfigEntryView {
    fn from(row: ConfigRow) -> Self {
        let etag = crate::configuration::etag(&row);
        Self {
            key: row.key,
            value: raw_json(row.value),
            description: row.description,
            updated_at: row.updated_at.and_utc(),
            updated_by: row.updated_by,
            etag,
        }
    }
}

/// One page of `GET /admin/config`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigPage {
    /// By key.
    pub items: Vec<ConfigEntryView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// JSON text from PostgreSQL as a raw value. PostgreSQL always prints valid JSON, but a number of
/// hundreds of digits is beyond what serde_json accepts: that value is served as its text.
fn raw_json(text: String) -> Box<RawValue> {
    if serde_json::from_str::<&RawValue>(&text).is_ok() {
        return RawValue::from_string(text).unwrap_or_else(|_| RawValue::NULL.to_owned());
    }
    tracing::warn!("a stored JSON value has a number serde_json cannot read; served as its text");
    serde_json::to_string(&text)
        .ok()
        .and_then(|quoted| RawValue::from_string(quoted).ok())
        .unwrap_or_else(|| RawValue::NULL.to_owned())
}
