//! The user directory: lookups for other services (service credentials) and ADMINs, and what an
//! ADMIN may change. Each change records its event (`user.updated`, `user.deleted`) in its
//! transaction; a deleted user's refresh tokens go with it.
//!
//! In the shared topology the legacy database's foreign keys act on a deletion: the user's
//! refresh tokens and profile go with it (CASCADE), payments they received and their audit rows
//! lose the reference (SET NULL), and payments they sent keep them (RESTRICT): that deletion is
//! refused with 409 `user_referenced`.

use contracts::events::{self, UserDeleted, UserUpdated};
use contracts::users::Role;
use platform::Validator;
use platform::coalesce::Coalescer;
use platform::pagination::PageRequest;
use platform::readers::ReadPool;

use crate::error::{AuthError, Result};
use crate::extract::Caller;
use crate::store::refresh_tokens;
use crate::store::users::{self, UserChanges, UserRow};
use crate::{AppState, outbox, validate};

/// A user by id.
pub async fn get(state: &AppState, caller: &Caller, id: &str) -> Result<UserRow> {
    caller.require_admin_or_service()?;
    if id.contains('\0') {
        return Err(AuthError::NotFound("user")); // no id holds a NUL: PostgreSQL text cannot
    }
    let user = state
        .users_by_id
        .get(id.to_string())
        .await
        .map_err(|e| AuthError::from(platform::ApiError::from(e)))?;
    user.ok_or(AuthError::NotFound("user"))
}

/// Lookups by id for `get`: one lane per core (at least two, at most the pool's size), so that
/// under load lookups queue behind a statement in flight and go together; a lookup alone runs
/// the single-row statement.
pub fn users_by_id(readers: ReadPool, max_connections: u32) -> Coalescer<String, UserRow> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let lanes = cores.max(2).min(max_connections.max(1) as usize);
    Coalescer::new("users_by_id", lanes, 64, move |ids: Vec<String>| {
        let readers = readers.clone();
        async move {
            let mut conn = readers.acquire().await?;
            let rows = match ids.as_slice() {
                [id] => users::find_by_id(&mut conn, id)
                    .await?
                    .into_iter()
                    .collect(),
                ids => users::find_by_ids(&mut conn, ids).await?,
            };
            // Only a completed statement leaves the connection reusable (an error closes it).
            conn.release();
            Ok(rows.into_iter().map(|u| (u.id.clone(), u)).collect())
        }
    })
}

/// A user by email (trimmed; an exact match first, else one differing only by case).
pub async fn by_email(state: &AppState, caller: &Caller, email: &str) -> Result<UserRow> {
    caller.require_admin_or_service()?;
    if email.contains('\0') {
        return Err(AuthError::NotFound("user")); // see `get`
    }
    let mut conn = state.pool.acquire().await?;
    users::find_by_email(&mut conn, email.trim())
        .await?
        .into_iter()
        .next()
        .ok_or(AuthError::NotFound("user"))
}

/// One page of users (of one role, if given) and the cursor of the next page.
pub async fn list(
    state: &AppState,
    caller: &Caller,
    role: Option<Role>,
    page: PageRequest,
) -> Result<(Vec<UserRow>, Option<String>)> {
    caller.require_admin_or_service()?;
    let mut rows = users::list(&state.pool, role, page.after.as_deref(), page.fetch()).await?;
    let next_cursor = page.finish(&mut rows, |u| &u.id);
    Ok((rows, next_cursor))
}

/// What an ADMIN may change of a user; absent fields stay as they are.
pub struct UserEdit<'a> {
    pub name: Option<&'a str>,
    pub role: Option<Role>,
    pub email_verified: Option<bool>,
}

pub async fn update(
    state: &AppState,
    caller: &Caller,
    id: &str,
    edit: UserEdit<'_>,
) -> Result<UserRow> {
    caller.require_admin()?;
    if id.contains('\0') {
        return Err(AuthError::NotFound("user")); // see `get`
    }
    let name = edit.name.map(str::trim);
    let mut v = Validator::new();
    if let Some(name) = name {
        validate::check_name(&mut v, name);
    }
    v.check(
        edit.name.is_some() || edit.role.is_some() || edit.email_verified.is_some(),
        "body",
        "give at least one of name, role, emailVerified",
    );
    v.finish()?;
    let changes = UserChanges {
        name: name.map(str::to_string),
        role: edit.role,
        email_verified: edit.email_verified,
    };
    let mut tx = state.pool.begin().await?;
    let user = users::update(&mut tx, id, &changes)
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
    Ok(user)
}

pub async fn delete(state: &AppState, caller: &Caller, id: &str) -> Result<()> {
    caller.require_admin()?;
    if id.contains('\0') {
        return Err(AuthError::NotFound("user")); // see `get`
    }
    let mut tx = state.pool.begin().await?;
    let user = users::delete(&mut tx, id)
        .await
        .map_err(still_referenced)?
        .ok_or(AuthError::NotFound("user"))?;
    refresh_tokens::forget_user(&mut tx, &user.id).await?;
    let deleted = UserDeleted {
        user_id: user.id.clone(),
    };
    outbox::OUTBOX
        .record(&mut tx, events::USER_DELETED, &deleted)
        .await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, by = %caller.claims.sub, "user deleted");
    Ok(())
}

/// A foreign key violation on deleting a user: another table's `ON DELETE RESTRICT` key still
/// references it. Only the shared topology has such keys.
fn still_referenced(e: sqlx::Error) -> AuthError {
    match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => AuthError::UserReferenced {
            constraint: db.constraint().unwrap_or("a foreign key").to_string(),
        },
        _ => e.into(),
    }
}
