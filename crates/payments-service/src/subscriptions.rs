//! What the payments service does when auth publishes: a changed or deleted user is dropped from
//! the user cache (seed 4.3), so names and lookups are fresh at once instead of after the TTL.
//!
//! Each replica of the service has its own cache but the replicas share one queue, so an event
//! reaches one of them; the others forget the user when its cache entry expires (5 minutes).

use std::sync::Arc;

use auth_client::AuthClient;
use contracts::events::{USER_DELETED, USER_UPDATED, UserDeleted, UserUpdated};
use events::{Envelope, Handler, HandlerFuture};
use sqlx::PgConnection;

pub struct UserEvents {
    pub auth: Arc<AuthClient>,
}

impl Handler for UserEvents {
    fn handle<'a>(&'a self, _tx: &'a mut PgConnection, event: &'a Envelope) -> HandlerFuture<'a> {
        Box::pin(async move {
            let user_id = match event.event_type.as_str() {
                USER_UPDATED => event.data_as::<UserUpdated>()?.user_id,
                USER_DELETED => event.data_as::<UserDeleted>()?.user_id,
                other => return Err(format!("no handler for event type {other:?}").into()),
            };
            self.auth.invalidate_user(&user_id).await;
            tracing::debug!(%user_id, event = %event.event_type, "cached user dropped");
            Ok(())
        })
    }
}
