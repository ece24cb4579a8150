//! The wire form of every event: `{"id", "type", "source", "occurredAt", "data"}`. The id is the
//! outbox row's id, so a relay that publishes a row twice (crash before marking it) publishes the
//! same id twice, and consumers recognise the duplicate.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The publishing service, e.g. `auth-service`.
    pub source: String,
    pub occurred_at: DateTime<Utc>,
    pub data: serde_json::Value,
}

impl Envelope {
    /// `data` as the payload type the event's type promises.
    pub fn data_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_uses_the_documented_field_names() {
        let envelope = Envelope {
            id: Uuid::nil(),
            event_type: "user.registered".into(),
            source: "auth-service".into(),
            occurred_at: DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z")
                .unwrap()
                .with_timezone(&Utc),
            data: serde_json::json!({"userId": "u1"}),
        };
        let json = serde_json::to_value(&envelope).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": "00000000-0000-0000-0000-000000000000",
                "type": "user.registered",
                "source": "auth-service",
                "occurredAt": "2026-01-02T03:04:05.678Z",
                "data": {"userId": "u1"}
            })
        );
        let back: Envelope = serde_json::from_value(json).unwrap();
        assert_eq!(back, envelope);
    }
}
