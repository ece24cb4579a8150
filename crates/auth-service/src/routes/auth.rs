//! `/auth/*`: registration, login, token refresh and logout, the caller's own user, and service
//! credentials.

use axum::extract::State;
use axum::http::StatusCode;
use contracts::users::{Role, User};
use platform::{ErrorBody, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::Result;
use crate::extract::{Caller, ClientInfo};
use crate::store::users::UserRow;
use crate::{AppState, accounts, sessions};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    /// Trimmed; unique regardless of case; stored as given. One `@`, a dotted domain, no spaces
    /// or control characters, at most 254 characters.
    #[schema(schema_with = email_schema)]
    pub email: String,
    /// 8 to 128 characters.
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    /// Trimmed, then 1 to 100 characters without control characters.
    #[schema(schema_with = name_schema)]
    pub name: String,
    /// `CUSTOMER` (default) or `VENDOR`; `ADMIN` cannot be self-registered.
    #[schema(value_type = Option<SelfRegisteredRole>)]
    pub role: Option<Role>,
}

/// The roles a user may give themselves: `ADMIN` is granted by an admin (`PATCH /users/{id}`).
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum SelfRegisteredRole {
    Customer,
    Vendor,
}

/// What `char::is_whitespace` (and so `str::trim`) takes, for patterns: regex `\s` differs.
macro_rules! space {
    () => {
        r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
    };
}
/// What `char::is_control` takes.
macro_rules! control {
    () => {
        r"\x00-\x1f\x7f-\x9f"
    };
}

/// [`crate::validate::email_is_valid`] as a pattern: a local part, `@`, a domain with a dot
/// neither first nor last; no `@`, spaces or control characters. (The service trims spaces around
/// an email first; the schema asks for none, so that `maxLength` means what the service checks.)
pub const EMAIL_PATTERN: &str = concat!(
    "^[^@",
    space!(),
    control!(),
    "]+@",
    "[^@.",
    space!(),
    control!(),
    "][^@",
    space!(),
    control!(),
    "]*\\.",
    "[^@",
    space!(),
    control!(),
    "]*[^@.",
    space!(),
    control!(),
    "]$"
);

/// [`crate::validate::check_name`] as a pattern: trimmed, 1 to 100 characters (98 between the
/// first and the last) and no control characters; spaces around it are not counted.
pub const NAME_PATTERN: &str = concat!(
    "^[",
    space!(),
    "]*",
    "[^",
    space!(),
    control!(),
    "]",
    "(?:[^",
    control!(),
    "]{0,98}[^",
    space!(),
    control!(),
    "])?",
    "[",
    space!(),
    "]*$"
);

fn text_schema(pattern: &str, max_length: Option<usize>) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .pattern(Some(pattern))
        .max_length(max_length)
        .build()
}

/// A registration's email: [`EMAIL_PATTERN`], at most 254 characters.
pub fn email_schema() -> utoipa::openapi::Object {
    text_schema(EMAIL_PATTERN, Some(crate::validate::EMAIL_MAX))
}

/// A user's name: [`NAME_PATTERN`] (which bounds its length).
pub fn name_schema() -> utoipa::openapi::Object {
    text_schema(NAME_PATTERN, None)
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
    let registration = accounts::Registration {
        email: &req.email,
        password: req.password,
        name: &req.name,
        role: req.role,
    };
    let (user, issued) = accounts::register(&state, registration).await?;
    Ok((StatusCode::CREATED, Json(session(&user, issued))))
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
    let (user, issued) = accounts::login(&state, &client, &req.email, req.password).await?;
    Ok(Json(session(&user, issued)))
}

/// Trades a refresh token for a new pair; the old token stops working. Presenting an already
/// used token revokes all of the user's refresh tokens.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest, responses(
    (status = 200, body = Session),
    (status = 401, body = ErrorBody, description = "unknown, expired, revoked or reused token"),
    (status = 422, body = ErrorBody, description = "a missing field or wrong type")))]
pub async fn refresh(
    State(state): State<AppState>,
    Json(req): Json<RefreshRequest>,
) -> Result<Json<Session>> {
    let (user, issued) = sessions::rotate(&state, req.refresh_token.trim()).await?;
    Ok(Json(session(&user, issued)))
}

/// Revokes a refresh token. Idempotent.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = RefreshRequest, responses(
    (status = 204, description = "revoked (or was not valid)"),
    (status = 422, body = ErrorBody, description = "a missing field or wrong type")))]
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
    Ok(Json(accounts::me(&state, &caller).await?.to_user()))
}

/// Issues a service credential (role `SERVICE`) to a configured service client
/// (`AUTH_SERVICE_CLIENTS`). End users cannot obtain one: they know no client secret.
#[utoipa::path(post, path = "/auth/service-token", tag = "auth", request_body = ServiceTokenRequest, responses(
    (status = 200, body = ServiceToken),
    (status = 401, body = ErrorBody),
    (status = 422, body = ErrorBody, description = "a missing field or wrong type"),
    (status = 429, body = ErrorBody)))]
pub async fn service_token(
    State(state): State<AppState>,
    client: ClientInfo,
    Json(req): Json<ServiceTokenRequest>,
) -> Result<Json<ServiceToken>> {
    let access_token =
        accounts::service_token(&state, &client, &req.client_id, &req.client_secret).await?;
    Ok(Json(ServiceToken {
        access_token,
        token_type: "Bearer",
        expires_in: state.settings.access_ttl.as_secs(),
    }))
}
