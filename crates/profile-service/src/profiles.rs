//! What a user may do with a profile, and the rules: the caller's own profile is created on first
//! use once auth confirms the user exists; edits are validated and publish `profile.updated` in
//! their transaction; a profile is visible to its owner and to ADMINs only.
//!
//! In the shared topology the legacy key `user_profiles.user_id -> users` stays: a user auth
//! confirmed but deleted before the insert is refused by the database, answered as the 404 "User
//! not found" that auth's answer would have given.

use auth_client::Caller;
use contracts::events::{PROFILE_UPDATED, ProfileUpdated};
use platform::pagination::PageRequest;
use serde::{Deserialize, Deserializer};
use sqlx::PgConnection;
use utoipa::ToSchema;

use crate::error::{ProfileError, Result};
use crate::store::profiles::{self, Created, ProfileRow};
use crate::{AppState, outbox, validate};

/// The caller's profile, created (empty) on first access.
pub async fn mine(state: &AppState, caller: &Caller) -> Result<ProfileRow> {
    let user_id = user_of(caller)?;
    let mut reader = state.readers.acquire().await?;
    let found = profiles::find_by_user(&mut reader, user_id).await?;
    reader.release();
    if let Some(row) = found {
        return Ok(row);
    }
    let mut conn = state.pool.acquire().await?;
    ensure_user_exists(state, caller).await?;
    if profiles::create_default(&mut conn, user_id).await? == Created::NoSuchUser {
        return Err(ProfileError::UserNotFound);
    }
    profiles::find_by_user(&mut conn, user_id)
        .await?
        .ok_or(ProfileError::ProfileNotFound)
}

/// Applies `changes` to the caller's profile (creating it first if needed) and records
/// `profile.updated` with the names of the changed fields, not their values: phone numbers and
/// addresses must not spread into audit logs.
pub async fn edit(
    state: &AppState,
    caller: &Caller,
    changes: ProfileChanges,
) -> Result<ProfileRow> {
    let user_id = user_of(caller)?;
    validate::changes(&changes)?;
    let exists = {
        let mut conn = state.pool.acquire().await?;
        profiles::find_by_user(&mut conn, user_id).await?.is_some()
    };
    // Asked before the transaction: no transaction stays open across a call to auth.
    if !exists {
        ensure_user_exists(state, caller).await?;
    }
    let mut tx = state.pool.begin().await?;
    if !exists && profiles::create_default(&mut tx, user_id).await? == Created::NoSuchUser {
        return Err(ProfileError::UserNotFound);
    }
    // A profile deleted (user.deleted) since the check above is not brought back.
    let row = profiles::update(&mut tx, user_id, &changes)
        .await?
        .ok_or(ProfileError::ProfileNotFound)?;
    record_update(&mut tx, &row, &changes).await?;
    tx.commit().await?;
    Ok(row)
}

/// `user_id`'s profile, for that user or an ADMIN; to anyone else it does not exist.
pub async fn of_user(state: &AppState, caller: &Caller, user_id: &str) -> Result<ProfileRow> {
    if !(caller.is_admin() || caller.user_id() == Some(user_id)) {
        return Err(ProfileError::ProfileNotFound);
    }
    let mut conn = state.pool.acquire().await?;
    profiles::find_by_user(&mut conn, user_id)
        .await?
        .ok_or(ProfileError::ProfileNotFound)
}

/// One page of every profile, for ADMINs; the cursor for the next page, if any.
pub async fn list(
    state: &AppState,
    caller: &Caller,
    page: PageRequest,
) -> Result<(Vec<ProfileRow>, Option<String>)> {
    if !caller.is_admin() {
        return Err(ProfileError::forbidden("listing profiles needs an ADMIN"));
    }
    let mut conn = state.pool.acquire().await?;
    let mut rows = profiles::list(&mut conn, page.after.as_deref(), page.fetch()).await?;
    let next_cursor = page.finish(&mut rows, |p| &p.id);
    Ok((rows, next_cursor))
}

async fn record_update(
    tx: &mut PgConnection,
    row: &ProfileRow,
    changes: &ProfileChanges,
) -> Result<()> {
    let event = ProfileUpdated {
        user_id: row.user_id.clone(),
        profile_id: row.id.clone(),
        changed_fields: changes.fields().into_iter().map(String::from).collect(),
    };
    outbox::OUTBOX.record(tx, PROFILE_UPDATED, &event).await?;
    Ok(())
}

fn user_of(caller: &Caller) -> Result<&str> {
    caller.user_id().ok_or(ProfileError::NoUser)
}

/// Asks auth (with the caller's own token) whether the caller's user still exists.
async fn ensure_user_exists(state: &AppState, caller: &Caller) -> Result<()> {
    match state.auth.me(caller.bearer()).await? {
        Some(user) if Some(user.id.as_str()) == caller.user_id() => Ok(()),
        _ => Err(ProfileError::UserNotFound),
    }
}

/// The editable fields. For `PUT` a missing field means "no value"; for `PATCH` a missing field
/// means "unchanged" and `null` means "clear it".
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileChanges {
    #[serde(default, deserialize_with = "present")]
    /// An http(s) URL with a host, at most 2048 characters: letter-led host labels, a port below
    /// 10000, RFC 3986 path, query and fragment characters (`%` only as an escape). The service
    /// checks exactly this pattern (`validate::AVATAR_URL_PATTERN`) and that the URL parses.
    #[schema(value_type = Option<String>, max_length = 2048, pattern = r"^https?://[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(?::[0-9]{1,4})?(?:/(?:[A-Za-z0-9._~!$&'()*+,;=:@/-]|%[0-9A-Fa-f]{2})*)?(?:\?(?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?(?:#(?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?$")]
    pub avatar_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    /// E.164: `+`, then 2 to 15 digits, the first not 0.
    #[schema(value_type = Option<String>, pattern = r"^\+[1-9][0-9]{1,14}$")]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    /// At most 500 characters, no NUL.
    #[schema(value_type = Option<String>, max_length = 500, pattern = r"^[^\x00]*$")]
    pub address: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    /// At most 1000 characters, no NUL.
    #[schema(value_type = Option<String>, max_length = 1000, pattern = r"^[^\x00]*$")]
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
