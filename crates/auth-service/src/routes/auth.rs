//! `/auth/*`: registration, login, token refresh and logout, the caller's own user, and service
//! credentials.

use axum::extract::State;
use axum::http::StatusCode;
use contracts::events::{self, LoginAttempt, UserRegistered};
use contracts::users::{Role, User};
use platform::{ErrorBody, Json, Validator};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use crate::error::{AuthError, Result};
use crate::extract::{Caller, ClientInfo};
use crate::password::Verdict;
use crate::store::users::{self, NewUser, UserRow};
use crate::{AppState, outbox, sessions, validate};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    /// Trimmed; unique regardless of case; stored as given.
    pub email: String,
    /// 8 to 128 characters.
    pub password: String,
    /// 1 to 100 characters.
    pub name: String,
    /// `CUSTOMER` (default) or `VENDOR`; `ADMIN` cannot be self-registered.
    pub role: Option<Role>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceTokenRequest {
    pub client_id: String,
    pub client_secret: String,
}

/// A user with a fresh token pair.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub user: User,
    /// EdDSA JWT, valid `expiresIn` seconds.
    pub access_token: String,
    /// Opaque; valid 30 days, single use (`POST /auth/refresh` rotates it).
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceToken {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
}

fn session(user: &UserRow, issued: sessions::Issued) -> Session {
    Session {
        user: user.to_user(),
        access_token: issued.access_token,
        refresh_token: issued.refresh_token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
    }
}

/// Creates a user (CUSTOMER or VENDOR) and signs them in.
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterRequest, responses(
    (status = 201, body = Session),
    (status = 400, body = ErrorBody, description = "malformed JSON"),
    (status = 409, body = ErrorBody, description = "email already registered (any case)"),
    (status = 413, body = ErrorBody),
    (status = 422, body = ErrorBody, description = "invalid field, or ADMIN requested")))]
pub async fn register(
    State(state): State<AppState>,
    Json(req): Json<RegisterRequest>,
) -> Result<(StatusCode, Json<Session>)> {
    let email = req.email.trim();
    let name = req.name.trim();
    let role = req.role.unwrap_or(Role::Customer);
    let mut v = Validator::new();
    validate::check_email(&mut v, email);
    validate::check_password(&mut v, &req.password);
    validate::check_name(&mut v, name);
    v.check(
        role != Role::Admin,
        "role",
        "ADMIN cannot be self-registered",
    );
    v.finish()?;

    let password_hash = hash_password(&state, req.password).await?;
    let mut tx = state.pool.begin().await?;
    let user = create_user(
        &mut tx,
        &NewUser {
            email,
            password_hash: &password_hash,
            name,
            role,
            email_verified: false,
        },
    )
    .await?;
    let issued = sessions::issue(&state, &mut tx, &user).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, %role, "user registered");
    Ok((StatusCode::CREATED, Json(session(&user, issued))))
}

/// Inserts a user whose email is unique regardless of case and records `user.registered`, in the
/// caller's transaction. Shared with the bootstrap admin.
pub(crate) async fn create_user(
    conn: &mut sqlx::PgConnection,
    new: &NewUser<'_>,
) -> Result<UserRow> {
    users::lock_email(conn, new.email).await?;
    if !users::find_by_email(conn, new.email).await?.is_empty() {
        return Err(AuthError::EmailTaken);
    }
    let user = users::insert(conn, new).await?;
    let registered = UserRegistered {
        user_id: user.id.clone(),
        email: user.email.clone(),
        name: user.name.clone(),
        role: new.role,
    };
    outbox::record(conn, events::USER_REGISTERED, &registered).await?;
    Ok(user)
}

pub(crate) async fn hash_password(state: &AppState, password: String) -> Result<String> {
    let passwords = state.passwords.clone();
    tokio::task::spawn_blocking(move || passwords.hash(&password))
        .await
        .map_err(|e| AuthError::Internal(format!("password hashing task: {e}")))
}

/// Signs in with email and password.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest, responses(
    (status = 200, body = Session),
    (status = 401, body = ErrorBody, description = "unknown email or wrong password (same answer)"),
    (status = 422, body = ErrorBody),
    (status = 429, body = ErrorBody, description = "too many failures for this email or client; see Retry-After")))]
pub async fn login(
    State(state): State<AppState>,
    client: ClientInfo,
    Json(req): Json<LoginRequest>,
) -> Result<Json<Session>> {
    let email = req.email.trim().to_string();
    if let Some(wait) = state.throttle.retry_after(&email, client.ip.as_deref()) {
        return Err(AuthError::Throttled {
            retry_after_secs: wait.as_secs().max(1),
        });
    }
    let candidates = {
        let mut conn = state.pool.acquire().await?;
        users::find_by_email(&mut conn, &email).await?
    };
    let password = req.password;
    let passwords = state.passwords.clone();
    // An exact match is tried alone; legacy emails that differ only by case are tried in turn.
    let exact: Vec<UserRow> = candidates
        .iter()
        .filter(|u| u.email == email)
        .cloned()
        .collect();
    let tried = if exact.is_empty() { candidates } else { exact };
    let outcome = tokio::task::spawn_blocking(move || {
        if tried.is_empty() || password.chars().count() > validate::PASSWORD_MAX {
            passwords.verify_nobody(&password);
            return None;
        }
        tried.into_iter().find_map(
            |user| match passwords.verify(&password, &user.password_hash) {
                Verdict::Match { needs_rehash } => {
                    let rehash = needs_rehash.then(|| passwords.hash(&password));
                    Some((user, rehash))
                }
                Verdict::Mismatch => None,
            },
        )
    })
    .await
    .map_err(|e| AuthError::Internal(format!("password check task: {e}")))?;

    let attempt = |user_id: Option<String>| LoginAttempt {
        user_id,
        email: email.clone(),
        ip_address: client.ip.clone(),
        user_agent: client.user_agent.clone(),
    };
    let Some((user, rehash)) = outcome else {
        state.throttle.record_failure(&email, client.ip.as_deref());
        let mut conn = state.pool.acquire().await?;
        outbox::record(&mut conn, events::USER_LOGIN_FAILED, &attempt(None)).await?;
        return Err(AuthError::InvalidCredentials);
    };
    state.throttle.record_success(&email);
    if let Some(new_hash) = rehash
        && users::replace_password_hash(&state.pool, &user.id, &user.password_hash, &new_hash)
            .await?
    {
        tracing::info!(user_id = %user.id, "password hash upgraded to argon2id");
    }
    let mut tx = state.pool.begin().await?;
    let issued = sessions::issue(&state, &mut tx, &user).await?;
    outbox::record(
        &mut tx,
        events::USER_LOGGED_IN,
        &attempt(Some(user.id.clone())),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(session(&user, issued)))
}

/// Trades a refresh token for a new pair; the old token stops working. Presenting an already
/// used token revokes all of the user's refresh tokens.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest, responses(
    (status = 200, body = Session),
    (status = 401, body = ErrorBody, description = "unknown, expired, revoked or reused token")))]
pub async fn refresh(
    State(state): State<AppState>,
    Json(req): Json<RefreshRequest>,
) -> Result<Json<Session>> {
    let (user, issued) = sessions::rotate(&state, req.refresh_token.trim()).await?;
    Ok(Json(session(&user, issued)))
}

/// Revokes a refresh token. Idempotent.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = RefreshRequest, responses(
    (status = 204, description = "revoked (or was not valid)")))]
pub async fn logout(
    State(state): State<AppState>,
    Json(req): Json<RefreshRequest>,
) -> Result<StatusCode> {
    sessions::revoke(&state, req.refresh_token.trim()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user.
#[utoipa::path(get, path = "/auth/me", tag = "auth", security(("bearer" = [])), responses(
    (status = 200, body = User),
    (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody, description = "a service credential has no user"),
    (status = 404, body = ErrorBody, description = "the user was deleted")))]
pub async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<User>> {
    if caller.is_service() {
        return Err(AuthError::Forbidden("a service credential has no user"));
    }
    let mut conn = state.pool.acquire().await?;
    let user = users::find_by_id(&mut conn, &caller.claims.sub)
        .await?
        .ok_or(AuthError::NotFound("user"))?;
    Ok(Json(user.to_user()))
}

/// Issues a service credential (role `SERVICE`) to a configured service client
/// (`AUTH_SERVICE_CLIENTS`). End users cannot obtain one: they know no client secret.
#[utoipa::path(post, path = "/auth/service-token", tag = "auth", request_body = ServiceTokenRequest, responses(
    (status = 200, body = ServiceToken),
    (status = 401, body = ErrorBody),
    (status = 429, body = ErrorBody)))]
pub async fn service_token(
    State(state): State<AppState>,
    client: ClientInfo,
    Json(req): Json<ServiceTokenRequest>,
) -> Result<Json<ServiceToken>> {
    let throttle_key = format!("service:{}", req.client_id);
    if let Some(wait) = state
        .throttle
        .retry_after(&throttle_key, client.ip.as_deref())
    {
        return Err(AuthError::Throttled {
            retry_after_secs: wait.as_secs().max(1),
        });
    }
    let known = state.settings.service_clients.get(&req.client_id);
    let secret_ok =
        known.is_some_and(|c| bool::from(c.secret.as_bytes().ct_eq(req.client_secret.as_bytes())));
    if !secret_ok {
        state
            .throttle
            .record_failure(&throttle_key, client.ip.as_deref());
        return Err(AuthError::Unauthenticated);
    }
    let sub = format!("service:{}", req.client_id);
    let access_token = sessions::sign_access(&state, &sub, None, contracts::auth::SERVICE_ROLE)?;
    Ok(Json(ServiceToken {
        access_token,
        token_type: "Bearer",
        expires_in: state.settings.access_ttl.as_secs(),
    }))
}
