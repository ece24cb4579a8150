//! `/users`: user lookups for other services (service credentials) and admins, and the admin's
//! user management. CUSTOMER and VENDOR tokens get 403 here.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use contracts::events::{self, UserDeleted, UserUpdated};
use contracts::users::{Role, User, UserPage};
use platform::pagination::PageRequest;
use platform::{ErrorBody, Json, Query, Validator};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{AuthError, Result};
use crate::extract::Caller;
use crate::store::refresh_tokens;
use crate::store::users::{self, UserChanges};
use crate::{AppState, outbox, validate};

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
    pub limit: Option<u32>,
}

/// The answer of `GET /users`: one user for `?email=`, a page otherwise.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum UsersAnswer {
    One(User),
    Page(UserPage),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateUserRequest {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub email_verified: Option<bool>,
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
    caller.require_admin_or_service()?;
    let mut conn = state.pool.acquire().await?;
    let user = users::find_by_id(&mut conn, &id)
        .await?
        .ok_or(AuthError::NotFound("user"))?;
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
    caller.require_admin_or_service()?;
    if let Some(email) = q.email {
        let email = email.trim();
        let mut conn = state.pool.acquire().await?;
        let found = users::find_by_email(&mut conn, email).await?;
        let user = found
            .into_iter()
            .next()
            .ok_or(AuthError::NotFound("user"))?;
        return Ok(Json(UsersAnswer::One(user.to_user())));
    }
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let mut rows = users::list(&state.pool, q.role, page.after.as_deref(), page.fetch()).await?;
    let next_cursor = page.finish(&mut rows, |u| &u.id);
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
    caller.require_admin()?;
    let name = req.name.as_deref().map(str::trim);
    let mut v = Validator::new();
    if let Some(name) = name {
        validate::check_name(&mut v, name);
    }
    v.check(
        req.name.is_some() || req.role.is_some() || req.email_verified.is_some(),
        "body",
        "give at least one of name, role, emailVerified",
    );
    v.finish()?;
    let changes = UserChanges {
        name: name.map(str::to_string),
        role: req.role,
        email_verified: req.email_verified,
    };
    let mut tx = state.pool.begin().await?;
    let user = users::update(&mut tx, &id, &changes)
        .await?
        .ok_or(AuthError::NotFound("user"))?;
    let updated = UserUpdated {
        user_id: user.id.clone(),
        email: user.email.clone(),
        name: user.name.clone(),
        role: user.role(),
        email_verified: user.email_verified,
    };
    outbox::OUTBOX
        .record(&mut tx, events::USER_UPDATED, &updated)
        .await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, by = %caller.claims.sub, "user updated");
    Ok(Json(user.to_user()))
}

/// Deletes a user and their refresh tokens (admins).
#[utoipa::path(delete, path = "/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = String, Path, description = "user id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    caller.require_admin()?;
    let mut tx = state.pool.begin().await?;
    let user = users::delete(&mut tx, &id)
        .await?
        .ok_or(AuthError::NotFound("user"))?;
    refresh_tokens::forget_user(&mut tx, &user.id).await?;
    outbox::OUTBOX
        .record(
            &mut tx,
            events::USER_DELETED,
            &UserDeleted {
                user_id: user.id.clone(),
            },
        )
        .await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, by = %caller.claims.sub, "user deleted");
    Ok(StatusCode::NO_CONTENT)
}
