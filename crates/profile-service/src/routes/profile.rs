//! `/profile/me` (the caller's own profile) and `/profiles` (by user, for its owner or an ADMIN;
//! the whole list for ADMINs). Handlers only translate HTTP to [`crate::profiles`] and back.

use auth_client::Caller;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use platform::pagination::PageRequest;
use platform::{ErrorBody, Json, Query};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::Result;
use crate::profiles::{self, ProfileChanges};
use crate::store::profiles::ProfileRow;

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

/// The caller's profile, created (empty) on first access once auth confirms the user exists.
#[utoipa::path(get, path = "/profile/me", tag = "profile", security(("bearer" = [])), responses(
    (status = 200, body = Profile),
    (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody, description = "a service credential has no profile"),
    (status = 404, body = ErrorBody, description = "the user no longer exists"),
    (status = 503, body = ErrorBody, description = "auth could not be asked")))]
pub async fn get_me(State(state): State<AppState>, caller: Caller) -> Result<Json<Profile>> {
    Ok(Json(profiles::mine(&state, &caller).await?.into()))
}

/// Replaces the caller's editable fields; fields left out become empty.
#[utoipa::path(put, path = "/profile/me", tag = "profile", security(("bearer" = [])),
    request_body = ProfileChanges, responses(
    (status = 200, body = Profile),
    (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody, description = "a service credential has no profile"),
    (status = 404, body = ErrorBody, description = "the user no longer exists"),
    (status = 422, body = ErrorBody, description = "a field breaks its rule")))]
pub async fn put_me(
    State(state): State<AppState>,
    caller: Caller,
    Json(changes): Json<ProfileChanges>,
) -> Result<Json<Profile>> {
    let row = profiles::edit(&state, &caller, changes.replacing()).await?;
    Ok(Json(row.into()))
}

/// Changes only the fields present in the body; `null` clears a field.
#[utoipa::path(patch, path = "/profile/me", tag = "profile", security(("bearer" = [])),
    request_body = ProfileChanges, responses(
    (status = 200, body = Profile),
    (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody, description = "a service credential has no profile"),
    (status = 404, body = ErrorBody, description = "the user no longer exists"),
    (status = 422, body = ErrorBody, description = "a field breaks its rule")))]
pub async fn patch_me(
    State(state): State<AppState>,
    caller: Caller,
    Json(changes): Json<ProfileChanges>,
) -> Result<Json<Profile>> {
    Ok(Json(profiles::edit(&state, &caller, changes).await?.into()))
}

/// A user's profile, for that user or an ADMIN; to anyone else it does not exist.
#[utoipa::path(get, path = "/profiles/{userId}", tag = "profile", security(("bearer" = [])),
    params(("userId" = String, Path, description = "the user's id")), responses(
    (status = 200, body = Profile),
    (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody)))]
pub async fn get_by_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> Result<Json<Profile>> {
    Ok(Json(
        profiles::of_user(&state, &caller, &user_id).await?.into(),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ProfilesQuery {
    /// From a previous page's `nextCursor`.
    pub cursor: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// Every profile, a page at a time in a stable order; for ADMINs.
#[utoipa::path(get, path = "/profiles", tag = "profile", security(("bearer" = [])),
    params(ProfilesQuery), responses(
    (status = 200, body = ProfilePage),
    (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody, description = "not an ADMIN"),
    (status = 422, body = ErrorBody, description = "a bad limit or cursor")))]
pub async fn list_profiles(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ProfilesQuery>,
) -> Result<Json<ProfilePage>> {
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let (rows, next_cursor) = profiles::list(&state, &caller, page).await?;
    Ok(Json(ProfilePage {
        items: rows.into_iter().map(Profile::from).collect(),
        next_cursor,
    }))
}
