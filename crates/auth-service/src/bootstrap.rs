//! The operator's ADMIN: with `AUTH_BOOTSTRAP_ADMIN_EMAIL`/`_PASSWORD` set and no account with that
//! email, the service creates that admin at start, also on a migrated database that already has
//! legacy admins (the operator's own account must not depend on knowing theirs). Never promotes or
//! changes an existing account.
//!
//! In the shared topology that account is a row of the legacy `users` table: an explicit,
//! configured write, kept there (the operator needs an ADMIN before cutover and after a
//! rollback too) and logged as such. With an account already there nothing is written.

use contracts::users::Role;
use platform::config::ExposeSecret;
use platform::{Topology, Validator};

use crate::AppState;
use crate::accounts::{create_user, hash_password};
use crate::error::AuthError;
use crate::settings::BootstrapAdmin;
use crate::store::users::{self, NewUser};
use crate::validate;

pub async fn ensure_admin(
    state: &AppState,
    admin: &BootstrapAdmin,
    topology: Topology,
) -> anyhow::Result<()> {
    let mut conn = state.pool.acquire().await?;
    let existing = users::find_by_email(&mut conn, &admin.email).await?;
    drop(conn);
    if let Some(user) = existing.first() {
        if user.role != Role::Admin.as_str() {
            tracing::warn!(
                "the bootstrap admin's email belongs to an existing non-admin user; not promoting it"
            );
        }
        return Ok(());
    }
    let mut v = Validator::new();
    validate::check_email(&mut v, &admin.email);
    validate::check_password(&mut v, admin.password.expose_secret());
    if let Err(e) = v.finish() {
        anyhow::bail!(platform::ConfigError::new(
            "AUTH_BOOTSTRAP_ADMIN_EMAIL/PASSWORD",
            e.message
        ));
    }
    let hash = hash_password(state, admin.password.expose_secret().to_string()).await?;
    let mut tx = state.pool.begin().await?;
    let new = NewUser {
        email: &admin.email,
        password_hash: &hash,
        name: "Administrator",
        role: Role::Admin,
        email_verified: true,
    };
    match create_user(&mut tx, &new).await {
        Ok(user) => {
            tx.commit().await?;
            if topology == Topology::Shared {
                tracing::info!(
                    user_id = %user.id,
                    "created the bootstrap admin (AUTH_BOOTSTRAP_ADMIN_EMAIL) in the legacy users \
                     table: the shared topology runs on the legacy database"
                );
            } else {
                tracing::info!(user_id = %user.id, "created the bootstrap admin");
            }
        }
        Err(AuthError::EmailTaken) => {
            tracing::warn!(
                "the bootstrap admin's email belongs to an existing non-admin user; not promoting it"
            );
        }
        Err(e) => return Err(anyhow::anyhow!("creating the bootstrap admin: {e}")),
    }
    Ok(())
}
