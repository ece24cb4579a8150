//! Payloads of the events the services publish (routing key = the event type). The envelope
//! (`id`, `type`, `source`, `occurredAt`, `data`) is the event hub's.

use serde::{Deserialize, Serialize};

use crate::users::Role;

pub const USER_REGISTERED: &str = "user.registered";
pub const USER_UPDATED: &str = "user.updated";
pub const USER_DELETED: &str = "user.deleted";
pub const USER_LOGGED_IN: &str = "user.logged_in";
pub const USER_LOGIN_FAILED: &str = "user.login_failed";

/// The event types each consuming service's queue is bound to. The service binds them at start;
/// `mfe events declare` declares the same queues and bindings ahead of it.
pub mod subscriptions {
    use super::{USER_DELETED, USER_REGISTERED, USER_UPDATED};

    pub const PROFILE: &[&str] = &[USER_REGISTERED, USER_DELETED];
    /// Payments caches users (seed 4.3) and drops one from its cache when it changes.
    pub const PAYMENTS: &[&str] = &[USER_UPDATED, USER_DELETED];
    /// Admin audits every event, its own included (a topic exchange's `#` matches every key).
    pub const ADMIN: &[&str] = &["#"];

    /// Every consuming service (by name) with its bindings.
    pub const ALL: &[(&str, &[&str])] = &[
        ("profile-service", PROFILE),
        ("payments-service", PAYMENTS),
        ("admin-service", ADMIN),
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRegistered {
    pub user_id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserUpdated {
    pub user_id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub email_verified: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserDeleted {
    pub user_id: String,
}

/// A login attempt, for the audit log. Never holds the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginAttempt {
    /// Absent when the email matched no user.
    pub user_id: Option<String>,
    pub email: String,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
}

pub const PROFILE_UPDATED: &str = "profile.updated";

/// A profile changed. Carries which fields changed, not their values: phone numbers and addresses
/// stay in the profile service rather than spreading into audit logs and caches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileUpdated {
    pub user_id: String,
    pub profile_id: String,
    /// The changed fields by their API names (`avatarUrl`, `phone`, ...).
    pub changed_fields: Vec<String>,
}

pub const PAYMENT_CREATED: &str = "payment.created";
pub const PAYMENT_STATUS_CHANGED: &str = "payment.status_changed";

/// A payment was created (`pending`). Amounts are decimal strings, never floats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentCreated {
    pub payment_id: String,
    pub sender_id: String,
    pub recipient_id: Option<String>,
    pub amount: String,
    pub currency: String,
    /// `instant`, `scheduled` or `recurring`.
    #[serde(rename = "type")]
    pub payment_type: String,
    pub status: String,
    /// The recurring payment this one is an occurrence of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_payment_id: Option<String>,
}

/// A payment moved from one status to another (`pending`, `processing`, `completed`, `failed`,
/// `cancelled`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentStatusChanged {
    pub payment_id: String,
    pub sender_id: String,
    pub recipient_id: Option<String>,
    pub amount: String,
    pub currency: String,
    pub from: String,
    pub to: String,
    /// Why, for a failure or a cancellation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The user who caused it (a cancellation); absent when the provider did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
}

pub const CONFIG_UPDATED: &str = "config.updated";

/// A system configuration entry was created, changed or deleted (`newValue` absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigUpdated {
    pub key: String,
    /// `created`, `updated` or `deleted`.
    pub change: String,
    /// Absent when the key was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_value: Option<serde_json::Value>,
    /// Absent when the key was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_value: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The ADMIN who made the change.
    pub updated_by: String,
}

pub const ADMIN_ACCESS_DENIED: &str = "admin.access_denied";

/// A request to an admin route was refused: no valid token (401) or not an ADMIN (403).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessDenied {
    /// The caller's user id, when its token was valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The caller's role (`CUSTOMER`, `VENDOR`) or `service:<client>` for a service credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub method: String,
    /// The route as declared (`/admin/config/{key}`), and the path asked for.
    pub route: String,
    pub path: String,
    /// 401 or 403.
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Refusals from the same address not written one by one since the last one that was.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub suppressed: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Every event type of the platform.
pub const KNOWN: &[&str] = &[
    USER_REGISTERED,
    USER_UPDATED,
    USER_DELETED,
    USER_LOGGED_IN,
    USER_LOGIN_FAILED,
    PROFILE_UPDATED,
    PAYMENT_CREATED,
    PAYMENT_STATUS_CHANGED,
    CONFIG_UPDATED,
    ADMIN_ACCESS_DENIED,
];

/// The label of `event_type` in metrics: a known type, else `other`. Anyone who can publish on
/// the exchange chooses the type; a label per raw type would let them create series without
/// bound.
pub fn metric_label(event_type: &str) -> &'static str {
    KNOWN
        .iter()
        .find(|known| **known == event_type)
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod metric_label_tests {
    use super::*;

    #[test]
    fn known_types_are_their_own_label_and_anything_else_is_other() {
        for t in KNOWN {
            assert_eq!(metric_label(t), *t);
        }
        assert_eq!(metric_label("made.up.by.a.publisher"), "other");
        assert_eq!(metric_label(""), "other");
    }
}
