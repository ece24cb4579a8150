//! Users, found only through auth (seed 4.1) and cached there (seed 4.3): the sender by id, the
//! recipient by email, and the names a payment shows.

use std::collections::HashSet;

use contracts::users::User;
use futures_util::{StreamExt, stream};

use crate::AppState;
use crate::error::{PaymentError, Result};
use crate::views::Names;

/// How many lookups of one page run at once: a page of uncached users must not queue 100
/// requests on auth at the same moment, nor wait for them one by one.
const CONCURRENT_LOOKUPS: usize = 8;

pub async fn sender(state: &AppState, user_id: &str) -> Result<User> {
    state
        .auth
        .user(user_id)
        .await?
        .ok_or(PaymentError::SenderNotFound)
}

pub async fn recipient(state: &AppState, email: &str) -> Result<User> {
    state
        .auth
        .user_by_email(email)
        .await?
        .ok_or(PaymentError::RecipientNotFound)
}

/// The names of these users. A user auth does not know has no name (`None`), which is not an
/// error; auth being unavailable for a user not cached is (503).
pub async fn names<'a>(state: &AppState, ids: impl IntoIterator<Item = &'a str>) -> Result<Names> {
    let unique: HashSet<String> = ids.into_iter().map(String::from).collect();
    let lookups = stream::iter(unique)
        .map(|id| {
            let auth = state.auth.clone();
            async move {
                let found = auth.user(&id).await;
                (id, found)
            }
        })
        .buffer_unordered(CONCURRENT_LOOKUPS)
        .collect::<Vec<_>>()
        .await;
    let mut names = Names::new();
    for (id, found) in lookups {
        names.insert(id, found?.map(|user| user.name));
    }
    Ok(names)
}

/// Names known already, with no lookup (the users a new payment was made between).
pub fn known(users: &[&User]) -> Names {
    users
        .iter()
        .map(|user| (user.id.clone(), Some(user.name.clone())))
        .collect()
}
