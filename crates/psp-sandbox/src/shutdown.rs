//! The signal that ends the sandbox's background work (settlement timers, webhook deliveries,
//! held responses) when it stops, so that a sandbox restarted on the same data file is the only
//! writer of that file.

use tokio::sync::watch;

/// Resolves once the sandbox stops. Clones are cheap; each background task holds one.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<()>);

/// Stops every [`Shutdown`] made from it when dropped.
#[derive(Debug)]
pub struct Stop {
    _sender: watch::Sender<()>,
}

pub fn channel() -> (Stop, Shutdown) {
    let (sender, receiver) = watch::channel(());
    (Stop { _sender: sender }, Shutdown(receiver))
}

impl Shutdown {
    /// Resolves when the [`Stop`] is dropped. No value is ever sent, so `changed` only returns
    /// (with an error) once the sender is gone.
    pub async fn wait(&self) {
        let mut receiver = self.0.clone();
        while receiver.changed().await.is_ok() {}
    }
}
