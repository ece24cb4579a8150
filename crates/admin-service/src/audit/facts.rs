//! What an event says for the audit log: who acted, on what, from where. Known event types are
//! read field by field; any other type (a service added later) is read by the hub's naming
//! conventions, so every event is audited, not only the ones this version knows.

use contracts::events as ev;
use events::Envelope;
use serde_json::{Map, Value};

/// An audit row before the acting user's name is added.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub action: String,
    pub user_id: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    /// A name the event itself carries for the acting user (`user.registered`), so no lookup is
    /// needed.
    pub user_name: Option<String>,
}

/// The fields of `data` the conventions read.
fn text(data: &Value, field: &str) -> Option<String> {
    data.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

pub fn of(event: &Envelope) -> Facts {
    let data = &event.data;
    let action = event.event_type.clone();
    let mut facts = Facts {
        action,
        user_id: None,
        resource_type: None,
        resource_id: None,
        ip_address: text(data, "ipAddress"),
        user_agent: text(data, "userAgent"),
        user_name: None,
    };
    match event.event_type.as_str() {
        ev::USER_REGISTERED | ev::USER_UPDATED | ev::USER_DELETED => {
            facts.user_id = text(data, "userId");
            facts.resource_type = Some("user".into());
            facts.resource_id = facts.user_id.clone();
            facts.user_name = text(data, "name");
        }
        ev::USER_LOGGED_IN | ev::USER_LOGIN_FAILED => {
            // A failed login for an unknown email has no user; the email stays in the details.
            facts.user_id = text(data, "userId");
            facts.resource_type = Some("user".into());
            facts.resource_id = facts.user_id.clone();
        }
        ev::PROFILE_UPDATED => {
            facts.user_id = text(data, "userId");
            facts.resource_type = Some("user_profile".into());
            facts.resource_id = text(data, "profileId");
        }
        ev::PAYMENT_CREATED => {
            facts.user_id = text(data, "senderId");
            facts.resource_type = Some("payment".into());
            facts.resource_id = text(data, "paymentId");
        }
        ev::PAYMENT_STATUS_CHANGED => {
            // The user who caused the change (a cancellation); the provider's changes are the
            // sender's payment moving on, so they are filed under the sender.
            facts.user_id = text(data, "actorId").or_else(|| text(data, "senderId"));
            facts.resource_type = Some("payment".into());
            facts.resource_id = text(data, "paymentId");
        }
        ev::CONFIG_UPDATED => {
            facts.user_id = text(data, "updatedBy");
            facts.resource_type = Some("system_config".into());
            facts.resource_id = text(data, "key");
        }
        ev::ADMIN_ACCESS_DENIED => {
            facts.user_id = text(data, "userId");
            facts.resource_type = Some("route".into());
            facts.resource_id = text(data, "route");
        }
        other => {
            // `<resource>.<verb>`: the resource's id is `<resource>Id` or `id`; the actor is
            // `actorId`, else `userId`.
            let resource = other.split('.').next().unwrap_or(other).to_string();
            facts.user_id = text(data, "actorId").or_else(|| text(data, "userId"));
            facts.resource_id = text(data, &format!("{resource}Id")).or_else(|| text(data, "id"));
            facts.resource_type = Some(resource);
        }
    }
    facts
}

/// The event types this version knows, the only ones that get a metric label of their own: any
/// publisher may invent types, and each label value is a time series.
const KNOWN: &[&str] = &[
    ev::USER_REGISTERED,
    ev::USER_UPDATED,
    ev::USER_DELETED,
    ev::USER_LOGGED_IN,
    ev::USER_LOGIN_FAILED,
    ev::PROFILE_UPDATED,
    ev::PAYMENT_CREATED,
    ev::PAYMENT_STATUS_CHANGED,
    ev::CONFIG_UPDATED,
    ev::ADMIN_ACCESS_DENIED,
];

pub fn metric_label(action: &str) -> &'static str {
    KNOWN
        .iter()
        .find(|k| **k == action)
        .copied()
        .unwrap_or("other")
}

/// The row's `details`: the event's data plus the acting user's name as it was when the event
/// was audited (seed 3.3: "Audit logs may cache user name at creation time").
pub fn details(event: &Envelope, user_name: Option<&str>) -> Value {
    let mut details = match &event.data {
        Value::Object(map) => map.clone(),
        // Not an object: kept whole, beside the name.
        other => {
            let mut map = Map::new();
            map.insert("data".into(), other.clone());
            map
        }
    };
    details.insert(
        "userName".into(),
        user_name.map_or(Value::Null, |n| Value::String(n.into())),
    );
    Value::Object(details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(event_type: &str, data: Value) -> Envelope {
        Envelope {
            id: uuid::Uuid::new_v4(),
            event_type: event_type.into(),
            source: "test".into(),
            occurred_at: chrono::Utc::now(),
            data,
        }
    }

    #[test]
    fn a_login_carries_the_client() {
        let facts = of(&event(
            ev::USER_LOGGED_IN,
            json!({"userId": "u1", "email": "a@b.c", "ipAddress": "203.0.113.9", "userAgent": "curl/8"}),
        ));
        assert_eq!(facts.user_id.as_deref(), Some("u1"));
        assert_eq!(facts.resource_type.as_deref(), Some("user"));
        assert_eq!(facts.ip_address.as_deref(), Some("203.0.113.9"));
        assert_eq!(facts.user_agent.as_deref(), Some("curl/8"));
    }

    #[test]
    fn a_status_change_is_filed_under_its_actor_or_else_the_sender() {
        let by_provider = of(&event(
            ev::PAYMENT_STATUS_CHANGED,
            json!({"paymentId": "p1", "senderId": "s1", "from": "pending", "to": "processing"}),
        ));
        assert_eq!(by_provider.user_id.as_deref(), Some("s1"));
        assert_eq!(by_provider.resource_id.as_deref(), Some("p1"));
        let cancelled = of(&event(
            ev::PAYMENT_STATUS_CHANGED,
            json!({"paymentId": "p1", "senderId": "s1", "actorId": "a1"}),
        ));
        assert_eq!(cancelled.user_id.as_deref(), Some("a1"));
    }

    #[test]
    fn an_unknown_type_is_read_by_the_conventions() {
        let facts = of(&event(
            "invoice.sent",
            json!({"invoiceId": "i9", "actorId": "u7"}),
        ));
        assert_eq!(facts.resource_type.as_deref(), Some("invoice"));
        assert_eq!(facts.resource_id.as_deref(), Some("i9"));
        assert_eq!(facts.user_id.as_deref(), Some("u7"));
    }

    #[test]
    fn details_keep_the_data_and_add_the_name() {
        let e = event(
            ev::PAYMENT_CREATED,
            json!({"paymentId": "p1", "amount": "1.00"}),
        );
        assert_eq!(
            details(&e, Some("Alice")),
            json!({"paymentId": "p1", "amount": "1.00", "userName": "Alice"})
        );
        let odd = event("odd.thing", json!([1, 2]));
        assert_eq!(
            details(&odd, None),
            json!({"data": [1, 2], "userName": null})
        );
    }
}
