//! `/users`: user lookups for other services (service credentials) and admins, and the admin's
//! user management. CUSTOMER and VENDOR tokens get 403 here.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use contracts::users::{Role, User, UserPage};
use platform::pagination::PageRequest;
use platform::{ErrorBody, Json, Query};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::directory::{self, UserEdit};
use crate::error::Result;
use crate::extract::Caller;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct UsersQuery {
    /// Look one user up by email (case-insensitive, exact match preferred): 200 with the user or 404.
    pub email: Option<String>,
    /// List filter.
    pub role: Option<Role>,
    /// From a previous page's `nextCursor`.
    pub cursor: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// The answer of `GET /users`: one user for `?email=`, a page otherwise.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum UsersAnswer {
    One(User),
    Page(UserPage),
}

/// At least one field; `null` is not a value of any (absent fields stay as they are).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateUserRequest {
    /// Trimmed, then 1 to 100 characters without control characters.
    #[serde(default, deserialize_with = "not_null")]
    #[schema(schema_with = crate::routes::auth::name_schema)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    #[schema(value_type = Role)]
    pub role: Option<Role>,
    #[serde(default, deserialize_with = "not_null")]
    #[schema(value_type = bool)]
    pub email_verified: Option<bool>,
}

/// A field that is present must hold a value: `null` is a 422 naming it, not "unchanged".
fn not_null<'de, D, T>(deserializer: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    match Option::<T>::deserialize(deserializer)? {
        Some(value) => Ok(Some(value)),
        None => Err(serde::de::Error::custom("must not be null")),
    }
}

/// A user by id.
#[utoipa::path(get, path = "/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = String, Path, description = "user id")),
    responses((status = 200, body = User), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not an ADMIN nor a service"), (status = 404, body = ErrorBody)))]
pub async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<User>> {
    let user = directory::get(&state, &caller, &id).await?;
    Ok(Json(user.to_user()))
}

/// With `email`: that user (service credentials and admins). Without: a page of users in a stable
/// order (admins; services too, for reconciliation jobs).
#[utoipa::path(get, path = "/users", tag = "users", security(("bearer" = [])), params(UsersQuery),
    responses((status = 200, body = UsersAnswer), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "no user has this email"), (status = 422, body = ErrorBody)))]
pub async fn find_users(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<UsersQuery>,
) -> Result<Json<UsersAnswer>> {
    if let Some(email) = q.email {
        let user = directory::by_email(&state, &caller, &email).await?;
        return Ok(Json(UsersAnswer::One(user.to_user())));
    }
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let (rows, next_cursor) = directory::list(&state, &caller, q.role, page).await?;
    Ok(Json(UsersAnswer::Page(UserPage {
        items: rows.iter().map(|u| u.to_user()).collect(),
        next_cursor,
    })))
}

/// Changes a user's name, role or verification (admins).
#[utoipa::path(patch, path = "/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = String, Path, description = "user id")), request_body = UpdateUserRequest,
    responses((status = 200, body = User), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(req): Json<UpdateUserRequest>,
) -> Result<Json<User>> {
    let edit = UserEdit {
        name: req.name.as_deref(),
        role: req.role,
        email_verified: req.email_verified,
    };
    let user = directory::update(&state, &caller, &id, edit).await?;
    Ok(Json(user.to_user()))
}

/// Deletes a user and their refresh tokens (admins). In the shared topology a user who sent
/// payments is kept by the legacy foreign key: 409 `user_referenced`.
#[utoipa::path(delete, path = "/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = String, Path, description = "user id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "shared topology: rows of another table still reference the user (payments they sent)", body = ErrorBody)))]
pub async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    directory::delete(&state, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
