//! The profile API: the caller's own profile (`/profile/me`) and a profile by user id for its
//! owner or an ADMIN (`/profiles/{userId}`).

use auth_client::Caller;
use axum::extract::{Path, State};
use contracts::events::{PROFILE_UPDATED, ProfileUpdated};
use platform::pagination::PageRequest;
use platform::{ApiError, ErrorBody, Json, Query};
use serde::Deserialize;
use sqlx::PgConnection;
use utoipa::IntoParams;

use crate::AppState;
use crate::profile::{Profile, ProfileChanges, ProfilePage, ProfileRow};
use crate::{store, validate};

/// The caller's profile, created (empty) on first access once auth confirms the user exists.
#[utoipa::path(get, path = "/profile/me", tag = "profile", security(("bearer" = [])), responses(
    (status = 200, body = Profile),
    (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody, description = "a service credential has no profile"),
    (status = 404, body = ErrorBody, description = "the user no longer exists"),
    (status = 503, body = ErrorBody, description = "auth could not be asked")))]
pub async fn get_me(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Profile>, ApiError> {
    let user_id = user_of(&caller)?;
    let mut conn = state.pool.acquire().await?;
    if let Some(row) = store::find_by_user(&mut conn, user_id).await? {
        return Ok(Json(row.into()));
    }
    ensure_user_exists(&state, &caller).await?;
    store::create_default(&mut conn, user_id).await?;
    let row = store::find_by_user(&mut conn, user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("Profile not found"))?;
    Ok(Json(row.into()))
}

/// Replaces the caller's editable fields; fields left out become empty.
#[utoipa::path(put, path = "/profile/me", tag = "profile", security(("bearer" = [])),
    request_body = ProfileChanges, responses(
    (status = 200, body = Profile),
    (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody, description = "the user no longer exists"),
    (status = 422, body = ErrorBody, description = "a field breaks its rule")))]
pub async fn put_me(
    State(state): State<AppState>,
    caller: Caller,
    Json(changes): Json<ProfileChanges>,
) -> Result<Json<Profile>, ApiError> {
    edit(&state, &caller, changes.replacing()).await
}

/// Changes only the fields present in the body; `null` clears a field.
#[utoipa::path(patch, path = "/profile/me", tag = "profile", security(("bearer" = [])),
    request_body = ProfileChanges, responses(
    (status = 200, body = Profile),
    (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody, description = "the user no longer exists"),
    (status = 422, body = ErrorBody, description = "a field breaks its rule")))]
pub async fn patch_me(
    State(state): State<AppState>,
    caller: Caller,
    Json(changes): Json<ProfileChanges>,
) -> Result<Json<Profile>, ApiError> {
    edit(&state, &caller, changes).await
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
) -> Result<Json<Profile>, ApiError> {
    let not_found = || ApiError::not_found("Profile not found");
    if !(caller.is_admin() || caller.user_id() == Some(user_id.as_str())) {
        return Err(not_found());
    }
    let mut conn = state.pool.acquire().await?;
    let row = store::find_by_user(&mut conn, &user_id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(row.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ProfilesQuery {
    /// From a previous page's `nextCursor`.
    pub cursor: Option<String>,
    /// Page size, 1 to 100 (default 20).
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
) -> Result<Json<ProfilePage>, ApiError> {
    if !caller.is_admin() {
        return Err(ApiError::forbidden("listing profiles needs an ADMIN"));
    }
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let mut conn = state.pool.acquire().await?;
    let mut rows = store::list(&mut conn, page.after.as_deref(), page.fetch()).await?;
    let next_cursor = page.finish(&mut rows, |p| &p.id);
    Ok(Json(ProfilePage {
        items: rows.into_iter().map(Profile::from).collect(),
        next_cursor,
    }))
}

async fn edit(
    state: &AppState,
    caller: &Caller,
    changes: ProfileChanges,
) -> Result<Json<Profile>, ApiError> {
    let user_id = user_of(caller)?;
    validate::changes(&changes)?;
    let mut tx = state.pool.begin().await?;
    let row = match store::update(&mut tx, user_id, &changes).await? {
        Some(row) => row,
        None => {
            ensure_user_exists(state, caller).await?;
            store::create_default(&mut tx, user_id).await?;
            store::update(&mut tx, user_id, &changes)
                .await?
                .ok_or_else(|| ApiError::not_found("Profile not found"))?
        }
    };
    record_update(&mut tx, &row, &changes).await?;
    tx.commit().await?;
    Ok(Json(row.into()))
}

async fn record_update(
    tx: &mut PgConnection,
    row: &ProfileRow,
    changes: &ProfileChanges,
) -> Result<(), ApiError> {
    let event = ProfileUpdated {
        user_id: row.user_id.clone(),
        profile_id: row.id.clone(),
        changed_fields: changes.fields().into_iter().map(String::from).collect(),
    };
    crate::OUTBOX.record(tx, PROFILE_UPDATED, &event).await?;
    Ok(())
}

fn user_of(caller: &Caller) -> Result<&str, ApiError> {
    caller
        .user_id()
        .ok_or_else(|| ApiError::forbidden("a service credential has no profile"))
}

/// Asks auth (with the caller's own token) whether the caller's user still exists.
async fn ensure_user_exists(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    match state.auth.me(caller.bearer()).await? {
        Some(user) if Some(user.id.as_str()) == caller.user_id() => Ok(()),
        _ => Err(ApiError::not_found("User not found")),
    }
}
