//! A user's profile as the API shows it, and the edits a user may make to it.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// A row of `user_profiles`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProfileRow {
    pub id: String,
    pub user_id: String,
    pub avatar_url: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub bio: Option<String>,
    pub preferences: Option<serde_json::Value>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub id: String,
    pub user_id: String,
    pub avatar_url: Option<String>,
    /// E.164, e.g. `+4915112345678`.
    pub phone: Option<String>,
    pub address: Option<String>,
    pub bio: Option<String>,
    /// A JSON object of the user's choosing.
    #[schema(value_type = Option<Object>)]
    pub preferences: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ProfileRow> for Profile {
    fn from(row: ProfileRow) -> Self {
        Self {
            id: row.id,
            user_id: row.user_id,
            avatar_url: row.avatar_url,
            phone: row.phone,
            address: row.address,
            bio: row.bio,
            preferences: row.preferences,
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
        }
    }
}

/// One page of `GET /profiles`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfilePage {
    pub items: Vec<Profile>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The editable fields. For `PUT` a missing field means "no value"; for `PATCH` a missing field
/// means "unchanged" and `null` means "clear it".
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileChanges {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub avatar_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub address: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub bio: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub preferences: Option<Option<serde_json::Value>>,
}

/// Marks a field that was in the body (even as `null`) as `Some`, so `PATCH` can tell "clear" from
/// "leave alone".
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl ProfileChanges {
    /// A `PUT` body: every field is set, absent ones to `NULL`.
    pub fn replacing(mut self) -> Self {
        for field in [
            &mut self.avatar_url,
            &mut self.phone,
            &mut self.address,
            &mut self.bio,
        ] {
            field.get_or_insert(None);
        }
        self.preferences.get_or_insert(None);
        self
    }

    /// The fields this change touches, by their API names.
    pub fn fields(&self) -> Vec<&'static str> {
        let mut fields = Vec::new();
        if self.avatar_url.is_some() {
            fields.push("avatarUrl");
        }
        if self.phone.is_some() {
            fields.push("phone");
        }
        if self.address.is_some() {
            fields.push("address");
        }
        if self.bio.is_some() {
            fields.push("bio");
        }
        if self.preferences.is_some() {
            fields.push("preferences");
        }
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_tells_a_cleared_field_from_an_absent_one() {
        let changes: ProfileChanges =
            serde_json::from_str(r#"{"bio": null, "phone": "+4915112345678"}"#).unwrap();
        assert_eq!(changes.bio, Some(None));
        assert_eq!(changes.phone, Some(Some("+4915112345678".into())));
        assert_eq!(changes.address, None);
        assert_eq!(changes.fields(), ["phone", "bio"]);
    }

    #[test]
    fn put_sets_every_field() {
        let changes: ProfileChanges = serde_json::from_str(r#"{"bio": "hi"}"#).unwrap();
        let changes = changes.replacing();
        assert_eq!(changes.avatar_url, Some(None));
        assert_eq!(changes.bio, Some(Some("hi".into())));
        assert_eq!(changes.fields().len(), 5);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<ProfileChanges>(r#"{"avatarURL": "x"}"#).unwrap_err();
        assert!(err.to_string().contains("avatarURL"), "{err}");
    }
}
