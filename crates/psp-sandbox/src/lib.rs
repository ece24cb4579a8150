//! A sandbox payment service provider, like Stripe's or Braintree's test mode: the payments
//! service charges through it over HTTP exactly as it would through a real provider.
//!
//! It behaves like one where it matters to a client: charges are idempotent by the caller's
//! reference, a few amount ranges decline, settle late, time out or fail once (see
//! [`outcomes`]), final states are announced by webhooks signed with a shared secret and retried
//! until the receiver takes them, and with a data file it does not forget its charges across a
//! restart.

pub mod charges;
pub mod error;
pub mod journal;
pub mod ledger;
pub mod outcomes;
pub mod psp;
pub mod routes;
pub mod settings;
pub mod shutdown;
pub mod webhooks;

use std::future::Future;

use axum::Router;
use tokio::net::TcpListener;

pub use charges::{Charge, ChargeStatus, DeclineCode};
pub use outcomes::{Outcome, outcome};
pub use settings::Settings;
pub use webhooks::{Event, EventType, SIGNATURE_HEADER, sign};

use crate::journal::Journal;
use crate::ledger::Ledger;
use crate::psp::{Psp, Timing};
use crate::shutdown::Stop;
use crate::webhooks::Webhooks;

pub const NAME: &str = "psp-sandbox";

/// The sandbox bound to its port, ready to serve.
pub struct Sandbox {
    listener: TcpListener,
    router: Router,
    port: u16,
    stop: Stop,
}

impl Sandbox {
    /// The bound port (useful when the configured port was 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` resolves. From then on no new background work starts, held
    /// responses are answered and in-flight requests finish; settlement timers and webhook
    /// deliveries stop (with a data file, the next start picks them up again).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let stop = self.stop;
        let shutdown = async move {
            shutdown.await;
            drop(stop);
        };
        platform::server::serve(self.listener, self.router, shutdown).await
    }
}

/// Replays the data file (if any), resumes what it left pending and binds the configured port.
pub async fn build(settings: Settings) -> anyhow::Result<Sandbox> {
    let (stop, shutdown) = shutdown::channel();
    let (ledger, undelivered) = match &settings.data_file {
        Some(path) => {
            let (journal, mut replayed) = Journal::open(path).await?;
            tracing::info!(
                file = %path.display(),
                charges = replayed.charges.len(),
                undelivered_webhooks = replayed.undelivered.len(),
                "replayed the data file"
            );
            let undelivered = std::mem::take(&mut replayed.undelivered);
            (Ledger::from_journal(journal, replayed), undelivered)
        }
        None => (Ledger::in_memory(), Vec::new()),
    };
    let webhooks = Webhooks::new(
        settings.webhook_url.clone(),
        settings.webhook_secret.clone(),
    )?;
    let timing = Timing {
        latency: settings.latency,
        settle_delay: settings.settle_delay,
        hang: settings.hang,
    };
    let psp = Psp::new(ledger, webhooks, timing, shutdown);
    let listener = platform::server::bind(&settings.host, settings.port)
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot listen on {}:{}: {e}", settings.host, settings.port)
        })?;
    let port = listener.local_addr()?.port();
    psp.resume(undelivered).await;
    Ok(Sandbox {
        listener,
        router: routes::router(psp),
        port,
        stop,
    })
}
