//! The provider at work: a POST goes to the ledger, and what it created sets off the work that
//! follows a charge (a settlement timer for a pending one, a webhook for a final one).
//!
//! That work runs in tasks of its own, never in the request's future: a caller that hangs up
//! (as callers of the timeout range do) must not cancel a charge half-way, nor its webhook.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tracing::Instrument;

use crate::charges::{Charge, NewCharge};
use crate::error::{Result, SandboxError};
use crate::ledger::{Ledger, Submission};
use crate::shutdown::Shutdown;
use crate::webhooks::{Delivery, Event, Webhooks};

/// Shared by every request.
#[derive(Debug, Clone)]
pub struct Psp {
    pub ledger: Arc<Ledger>,
    webhooks: Webhooks,
    latency: Duration,
    settle_delay: Duration,
    hang: Duration,
    shutdown: Shutdown,
}

/// How long a charge waits and holds.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub latency: Duration,
    pub settle_delay: Duration,
    pub hang: Duration,
}

impl Psp {
    pub fn new(ledger: Ledger, webhooks: Webhooks, timing: Timing, shutdown: Shutdown) -> Self {
        Self {
            ledger: Arc::new(ledger),
            webhooks,
            latency: timing.latency,
            settle_delay: timing.settle_delay,
            hang: timing.hang,
            shutdown,
        }
    }

    /// Picks up what a restart interrupted: settles the pending charges (at once if their delay
    /// is over) and sends the webhooks not yet delivered.
    pub async fn resume(&self, undelivered: Vec<Event>) {
        for charge in self.ledger.pending().await {
            self.settle_later(&charge);
        }
        for event in undelivered {
            self.notify(event);
        }
    }

    /// Handles one POST to the end, even if its caller stops waiting.
    pub async fn charge(&self, new: NewCharge) -> Result<Submission> {
        let psp = self.clone();
        // The span goes along: the webhooks it leads to belong to the charge's trace.
        tokio::spawn(async move { psp.submit(new).await }.in_current_span())
            .await
            .map_err(|e| SandboxError::Crashed(e.to_string()))?
    }

    async fn submit(&self, new: NewCharge) -> Result<Submission> {
        let submission = self.ledger.submit(new, Utc::now()).await?;
        if let Submission::Created { charge, event, .. } = &submission {
            tracing::info!(
                charge = %charge.id, reference = %charge.reference, status = ?charge.status,
                attempts = charge.attempts, "charge created"
            );
            match event {
                Some(event) => self.notify(event.as_ref().clone()),
                None => self.settle_later(charge),
            }
        }
        Ok(submission)
    }

    /// Waits like a real provider's network and processing: uniformly 0.5x to 1.5x the
    /// configured latency.
    pub async fn simulate_latency(&self) {
        let base = u64::try_from(self.latency.as_micros()).unwrap_or(u64::MAX);
        if base == 0 {
            return;
        }
        let micros = rand::random_range(base / 2..=base.saturating_add(base / 2));
        tokio::time::sleep(Duration::from_micros(micros)).await;
    }

    /// Waits out the hang of a timeout-range charge, or less if the sandbox stops first.
    pub async fn hang(&self) {
        tokio::select! {
            () = tokio::time::sleep(self.hang) => {}
            () = self.shutdown.wait() => {}
        }
    }

    /// A pending charge's settlement, due its settlement delay after its creation.
    fn settle_later(&self, charge: &Charge) {
        let psp = self.clone();
        let reference = charge.reference.clone();
        let waited = (Utc::now() - charge.created_at)
            .to_std()
            .unwrap_or_default();
        let wait = self.settle_delay.saturating_sub(waited);
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = psp.shutdown.wait() => return,
            }
            match psp.ledger.settle(&reference, Utc::now()).await {
                Ok(Some((charge, event))) => {
                    tracing::info!(
                        charge = %charge.id, %reference, status = ?charge.status, "charge settled"
                    );
                    psp.notify(event);
                }
                Ok(None) => {}
                // Still pending in the data file: the next start settles it.
                Err(e) => tracing::error!(%reference, error = %e, "cannot settle a charge"),
            }
        }.instrument(platform::otel::detached("settle charge")));
    }

    /// Delivers `event` in the background and records how it ended.
    fn notify(&self, event: Event) {
        let psp = self.clone();
        tokio::spawn(async move {
            let delivered = match psp.webhooks.deliver(&event, &psp.shutdown).await {
                Delivery::Delivered => true,
                Delivery::Abandoned => false,
                // Not recorded: a restart on the same data file sends it again.
                Delivery::Interrupted => return,
            };
            if let Err(e) = psp.ledger.webhook_done(&event.id, delivered).await {
                tracing::warn!(event = %event.id, error = %e, "cannot record a webhook's delivery");
            }
        }.instrument(platform::otel::detached("deliver webhook")));
    }
}
