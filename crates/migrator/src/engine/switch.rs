//! What a switch of topology (cutover, rollback) needs from around the migrator, which links no
//! service: the platform's services held while the databases are frozen and started again
//! after, and the audit chain of the side switched to extended over the audit rows the switch
//! brought in (admin's own code does that). [`run`] holds the order every switch follows.

use std::future::Future;

use futures::future::BoxFuture;

use crate::error::Result;

pub trait Platform: Send + Sync {
    /// Stops the running services (and holds them), or says it cannot: the switch then does
    /// not start.
    fn hold(&self) -> BoxFuture<'_, Result<()>>;
    /// Starts the held services again, in the topology the file now names.
    fn restart(&self) -> BoxFuture<'_, ()>;
    /// Anchors the audit rows a switch brought into the admin schema of the database at `url`,
    /// when admin keeps a chain there.
    fn anchor_audit<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<()>>;
}

/// Runs `switch` with the platform held; once it succeeded, anchors the audit rows it brought
/// into the database at `audit_url` (idempotent, so also after a run killed between the switch
/// and this). The platform starts again whatever the outcome.
pub async fn run<T>(
    platform: &dyn Platform,
    audit_url: &str,
    switch: impl Future<Output = Result<T>>,
) -> Result<T> {
    platform.hold().await?;
    let outcome = switch.await;
    let anchored = match &outcome {
        Ok(_) => platform.anchor_audit(audit_url).await,
        Err(_) => Ok(()),
    };
    platform.restart().await;
    let outcome = outcome?;
    anchored?;
    Ok(outcome)
}
