//! What the profile service does when auth publishes: a registered user gets the default (empty)
//! profile (seed 4.2), a deleted user loses theirs and is remembered as deleted, so that a
//! registration event arriving late (after retries) does not bring the profile back. Both are
//! idempotent on their own, and the consumer's inbox makes a redelivered event a no-op anyway.
//! In the shared topology a registration whose user is gone from `users` by the time it is
//! applied (the legacy foreign key refuses its profile) is applied as a no-op, not retried.

use contracts::events::{USER_DELETED, USER_REGISTERED, UserDeleted, UserRegistered};
use events::{Envelope, Handler, HandlerFuture};
use sqlx::PgConnection;

use crate::store::profiles::Created;
use crate::store::{deleted_users, profiles};

pub struct UserEvents;

impl Handler for UserEvents {
    fn handle<'a>(&'a self, tx: &'a mut PgConnection, event: &'a Envelope) -> HandlerFuture<'a> {
        Box::pin(async move {
            match event.event_type.as_str() {
                USER_REGISTERED => {
                    let data: UserRegistered = event.data_as()?;
                    check_user_id(&data.user_id)?;
                    if deleted_users::is_buried(tx, &data.user_id).await? {
                        tracing::info!(user_id = %data.user_id, "registration of a deleted user ignored");
                        return Ok(());
                    }
                    match profiles::create_default(tx, &data.user_id).await? {
                        Created::New => {
                            tracing::info!(user_id = %data.user_id, "default profile created");
                        }
                        Created::Existed => {}
                        // Shared topology: deleted before its registration was applied; its
                        // `user.deleted` follows.
                        Created::NoSuchUser => tracing::info!(
                            user_id = %data.user_id,
                            "registration of a user no longer in users ignored"
                        ),
                    }
                }
                USER_DELETED => {
                    let data: UserDeleted = event.data_as()?;
                    check_user_id(&data.user_id)?;
                    deleted_users::bury(tx, &data.user_id).await?;
                    if profiles::delete_by_user(tx, &data.user_id).await? {
                        tracing::info!(user_id = %data.user_id, "profile deleted with its user");
                    }
                }
                other => return Err(format!("no handler for event type {other:?}").into()),
            }
            Ok(())
        })
    }
}

fn check_user_id(user_id: &str) -> Result<(), events::HandlerError> {
    if user_id.trim().is_empty() || user_id.len() > 200 {
        return Err(format!("invalid userId {user_id:?}").into());
    }
    Ok(())
}
