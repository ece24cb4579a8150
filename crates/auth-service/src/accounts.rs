//! Accounts: registration, signing in with a password, and service credentials. The rules live
//! here; `routes::auth` only translates HTTP to these calls and back.

use contracts::events::{self, LoginAttempt, UserRegistered};
use contracts::users::Role;
use platform::Validator;
use platform::config::ExposeSecret;
use subtle::ConstantTimeEq;

use crate::error::{AuthError, Result};
use crate::extract::{Caller, ClientInfo};
use crate::password::Verdict;
use crate::sessions::{self, Issued};
use crate::store::users::{self, NewUser, UserRow};
use crate::{AppState, outbox, validate};

/// What a new user gives to register.
pub struct Registration<'a> {
    pub email: &'a str,
    pub password: String,
    pub name: &'a str,
    pub role: Option<Role>,
}

/// Creates a user (CUSTOMER by default, or VENDOR; never ADMIN) and signs them in.
pub async fn register(state: &AppState, req: Registration<'_>) -> Result<(UserRow, Issued)> {
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

    let password_hash = hash_password(state, req.password).await?;
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
    let issued = sessions::issue(state, &mut tx, &user).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, %role, "user registered");
    Ok((user, issued))
}

/// Inserts a user whose email is unique regardless of case and records `user.registered`, in the
/// caller's transaction.
pub async fn create_user(conn: &mut sqlx::PgConnection, new: &NewUser<'_>) -> Result<UserRow> {
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
    outbox::OUTBOX
        .record(conn, events::USER_REGISTERED, &registered)
        .await?;
    Ok(user)
}

/// Hashes off the async threads: argon2id takes tens of milliseconds by design.
pub async fn hash_password(state: &AppState, password: String) -> Result<String> {
    let passwords = state.passwords.clone();
    state.hashing.run(move || passwords.hash(&password)).await
}

/// The signed-in user; a service credential has none.
pub async fn me(state: &AppState, caller: &Caller) -> Result<UserRow> {
    let user_id = caller
        .claims
        .user_id()
        .ok_or(AuthError::forbidden("a service credential has no user"))?;
    let mut conn = state.pool.acquire().await?;
    users::find_by_id(&mut conn, user_id)
        .await?
        .ok_or(AuthError::NotFound("user"))
}

/// Signs in with email and password. Failures are throttled per email and per client address,
/// cost the same time whether or not the email exists, and are recorded as `user.login_failed`;
/// a legacy bcrypt hash is replaced by argon2id on success.
pub async fn login(
    state: &AppState,
    client: &ClientInfo,
    email: &str,
    password: String,
) -> Result<(UserRow, Issued)> {
    let email = email.trim();
    // Before any work: an over-long email would be kept by the throttle and sent to the audit log.
    if email.chars().count() > validate::EMAIL_MAX {
        return Err(too_long("email", validate::EMAIL_MAX));
    }
    let reservation = state
        .throttle
        .reserve(email, client.ip.as_deref())
        .map_err(|wait| AuthError::Throttled {
            retry_after_secs: wait.as_secs().max(1),
        })?;
    let attempt = |user_id: Option<String>| LoginAttempt {
        user_id,
        // jsonb cannot hold U+0000 either: the event shows it as U+FFFD.
        email: email.replace('\0', "\u{FFFD}"),
        ip_address: client.ip.clone(),
        user_agent: client.user_agent.clone(),
    };
    // The reservation stays a failure unless the password matches (also when this request is
    // dropped meanwhile, or the check is refused as busy).
    let Some((user, rehash)) = check_password(state, email, password).await? else {
        let mut conn = state.pool.acquire().await?;
        outbox::OUTBOX
            .record(&mut conn, events::USER_LOGIN_FAILED, &attempt(None))
            .await?;
        return Err(AuthError::InvalidCredentials);
    };
    reservation.succeeded();
    if let Some(new_hash) = rehash
        && users::replace_password_hash(&state.pool, &user.id, &user.password_hash, &new_hash)
            .await?
    {
        tracing::info!(user_id = %user.id, "password hash upgraded to argon2id");
    }
    let mut tx = state.pool.begin().await?;
    let issued = sessions::issue(state, &mut tx, &user).await?;
    outbox::OUTBOX
        .record(
            &mut tx,
            events::USER_LOGGED_IN,
            &attempt(Some(user.id.clone())),
        )
        .await?;
    tx.commit().await?;
    Ok((user, issued))
}

/// The user `password` belongs to, with a new hash when theirs is outdated. An exact email match
/// is tried alone; legacy emails that differ only by case are tried in turn. Without a candidate
/// a dummy hash is checked, so an unknown email costs the time of a wrong password.
async fn check_password(
    state: &AppState,
    email: &str,
    password: String,
) -> Result<Option<(UserRow, Option<String>)>> {
    // No stored email holds a NUL (PostgreSQL text cannot): such an email is unknown.
    let candidates = if email.contains('\0') {
        Vec::new()
    } else {
        let mut conn = state.pool.acquire().await?;
        users::find_by_email(&mut conn, email).await?
    };
    let exact: Vec<UserRow> = candidates
        .iter()
        .filter(|u| u.email == email)
        .cloned()
        .collect();
    let tried = if exact.is_empty() { candidates } else { exact };
    let passwords = state.passwords.clone();
    state
        .hashing
        .run(move || {
            if tried.is_empty() || password.chars().count() > validate::PASSWORD_MAX {
                passwords.verify_nobody(&password);
                return None;
            }
            tried.into_iter().find_map(|user| {
                match passwords.verify(&password, &user.password_hash) {
                    Verdict::Match { needs_rehash } => {
                        let rehash = needs_rehash.then(|| passwords.hash(&password));
                        Some((user, rehash))
                    }
                    Verdict::Mismatch => None,
                }
            })
        })
        .await
}

/// A 422 naming `field`, over `max` characters.
fn too_long(field: &str, max: usize) -> AuthError {
    AuthError::Validation(vec![platform::FieldError::new(
        field,
        format!("must be at most {max} characters"),
    )])
}

/// The longest service client id and secret accepted (configured ones are far shorter).
const CLIENT_ID_MAX: usize = 128;
const CLIENT_SECRET_MAX: usize = 1024;

/// An access token with role `SERVICE` for a configured service client (`AUTH_SERVICE_CLIENTS`).
/// The secret is compared in constant time; failures are throttled like logins.
pub async fn service_token(
    state: &AppState,
    client: &ClientInfo,
    client_id: &str,
    client_secret: &str,
) -> Result<String> {
    if client_id.chars().count() > CLIENT_ID_MAX {
        return Err(too_long("clientId", CLIENT_ID_MAX));
    }
    if client_secret.len() > CLIENT_SECRET_MAX {
        return Err(too_long("clientSecret", CLIENT_SECRET_MAX));
    }
    let throttle_key = format!("{}{client_id}", contracts::auth::SERVICE_SUBJECT_PREFIX);
    let reservation = state
        .throttle
        .reserve(&throttle_key, client.ip.as_deref())
        .map_err(|wait| AuthError::Throttled {
            retry_after_secs: wait.as_secs().max(1),
        })?;
    let known = state.settings.service_clients.get(client_id);
    let secret_ok = known.is_some_and(|c| {
        bool::from(
            c.secret
                .expose_secret()
                .as_bytes()
                .ct_eq(client_secret.as_bytes()),
        )
    });
    if !secret_ok {
        return Err(AuthError::Unauthenticated);
    }
    reservation.succeeded();
    sessions::sign_access(state, &throttle_key, None, contracts::auth::SERVICE_ROLE)
}
