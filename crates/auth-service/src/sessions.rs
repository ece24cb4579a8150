//! Access and refresh tokens: issuing a pair, rotating a refresh token (with reuse detection),
//! and revoking one.

use chrono::{NaiveDateTime, Utc};
use contracts::auth::AccessClaims;
use sqlx::PgConnection;

use crate::AppState;
use crate::error::{AuthError, Result};
use crate::store::{refresh_tokens, users};
use crate::tokens;

/// What a client gets on register, login and refresh.
pub struct Issued {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

/// Signs an access token for `user` and stores a new refresh token, in the caller's transaction.
pub async fn issue(
    state: &AppState,
    conn: &mut PgConnection,
    user: &users::UserRow,
) -> Result<Issued> {
    let access_token = sign_access(state, &user.id, Some(&user.email), user.role().as_str())?;
    let refresh_token = tokens::generate();
    refresh_tokens::insert(
        conn,
        &user.id,
        &tokens::hash(&refresh_token),
        refresh_expiry(state),
    )
    .await?;
    Ok(Issued {
        access_token,
        refresh_token,
        expires_in: state.settings.access_ttl.as_secs(),
    })
}

/// Signs an access token; `email` is absent for service credentials.
pub fn sign_access(state: &AppState, sub: &str, email: Option<&str>, role: &str) -> Result<String> {
    let now = Utc::now().timestamp();
    let claims = AccessClaims {
        sub: sub.to_string(),
        email: email.map(str::to_string),
        role: role.to_string(),
        iss: state.settings.issuer.clone(),
        aud: state.settings.audience.clone(),
        iat: now,
        exp: now + state.settings.access_ttl.as_secs() as i64,
        jti: uuid::Uuid::new_v4().to_string(),
    };
    state
        .keys
        .sign(&claims)
        .map_err(|e| AuthError::Internal(format!("signing an access token: {e}")))
}

fn refresh_expiry(state: &AppState) -> NaiveDateTime {
    let ttl = chrono::Duration::from_std(state.settings.refresh_ttl)
        .unwrap_or(chrono::Duration::days(30));
    (Utc::now() + ttl).naive_utc()
}

/// Trades a refresh token for a new pair. The presented token stops working; presenting a token
/// that was already traded revokes every refresh token of its user (it has leaked).
pub async fn rotate(state: &AppState, presented: &str) -> Result<(users::UserRow, Issued)> {
    if presented.contains('\0') {
        // No token holds a NUL (PostgreSQL text cannot store one): unknown, not a lookup.
        return Err(AuthError::InvalidRefreshToken);
    }
    let hashed = tokens::hash(presented);
    let mut tx = state.pool.begin().await?;
    let row = match refresh_tokens::lock(&mut tx, &hashed).await? {
        Some(row) => Some(row),
        // A legacy row holds the raw token; a value shaped like our hashes is never one.
        None if !presented.starts_with(tokens::HASH_PREFIX) => {
            refresh_tokens::lock(&mut tx, presented).await?
        }
        None => None,
    };
    let Some(row) = row else {
        if let Some(user_id) = refresh_tokens::rotated_owner(&mut tx, &hashed).await? {
            let revoked = refresh_tokens::revoke_all(&mut tx, &user_id).await?;
            tx.commit().await?;
            tracing::warn!(%user_id, revoked, "refresh token reuse detected; revoked all of the user's sessions");
        }
        return Err(AuthError::InvalidRefreshToken);
    };
    refresh_tokens::delete(&mut tx, &row.id).await?;
    if row.expires_at <= Utc::now().naive_utc() {
        tx.commit().await?;
        return Err(AuthError::InvalidRefreshToken);
    }
    refresh_tokens::remember_rotated(&mut tx, &hashed, &row.user_id, row.expires_at).await?;
    let user = users::find_by_id(&mut tx, &row.user_id)
        .await?
        .ok_or(AuthError::InvalidRefreshToken)?;
    let issued = issue(state, &mut tx, &user).await?;
    tx.commit().await?;
    Ok((user, issued))
}

/// Revokes one refresh token (hashed or legacy raw). Unknown tokens are not an error: logging out
/// twice is fine.
pub async fn revoke(state: &AppState, presented: &str) -> Result<()> {
    if presented.contains('\0') {
        return Ok(()); // never a token: see `rotate`
    }
    let mut tx = state.pool.begin().await?;
    let mut row = refresh_tokens::lock(&mut tx, &tokens::hash(presented)).await?;
    if row.is_none() && !presented.starts_with(tokens::HASH_PREFIX) {
        row = refresh_tokens::lock(&mut tx, presented).await?;
    }
    if let Some(row) = row {
        refresh_tokens::delete(&mut tx, &row.id).await?;
    }
    tx.commit().await?;
    Ok(())
}
