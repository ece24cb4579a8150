//! The ledger: every charge by its reference, behind one lock.
//!
//! The lock is what makes `reference` an idempotency key: a POST looks up, counts its attempt and
//! creates under it, so any number of identical POSTs arriving together create exactly one charge.
//! Each change is written to the data file (when there is one) before memory is changed, so what
//! a caller was told is what a restarted sandbox replays.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

use crate::charges::{Charge, ChargeStatus, NewCharge, Verdict};
use crate::error::SandboxError;
use crate::journal::{Journal, Record, Replayed};
use crate::outcomes::{Outcome, outcome};
use crate::webhooks::Event;

/// What a POST did.
#[derive(Debug, Clone)]
pub enum Submission {
    /// The first POST of the reference created `charge`; `event` is due when it is already final.
    Created {
        charge: Charge,
        outcome: Outcome,
        event: Option<Box<Event>>,
    },
    /// The reference already had this charge; only its attempts changed.
    Replayed(Charge),
    /// The simulated failure of a reference's first POST (5000.xx): nothing was created.
    Refused,
}

#[derive(Debug)]
pub struct Ledger {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    charges: HashMap<String, Charge>,
    /// References whose first POST was refused, with the attempts so far; gone once the charge
    /// exists.
    refused: HashMap<String, u32>,
    journal: Option<Journal>,
}

impl Inner {
    async fn write(&mut self, record: Record) -> Result<(), SandboxError> {
        if let Some(journal) = &mut self.journal {
            journal.append(&record).await.map_err(|e| {
                SandboxError::DataFile(format!("{}: {e}", journal.path().display()))
            })?;
        }
        Ok(())
    }
}

impl Ledger {
    /// An empty ledger kept in memory only.
    pub fn in_memory() -> Self {
        Self::from_parts(None, Replayed::default())
    }

    /// The ledger the data file held, appending to it from now on.
    pub fn from_journal(journal: Journal, replayed: Replayed) -> Self {
        Self::from_parts(Some(journal), replayed)
    }

    fn from_parts(journal: Option<Journal>, replayed: Replayed) -> Self {
        Self {
            inner: Mutex::new(Inner {
                charges: replayed.charges,
                refused: replayed.refused,
                journal,
            }),
        }
    }

    /// Handles one POST: replays the reference's charge, refuses a reused reference, or creates
    /// the charge its amount's [`Outcome`] calls for.
    pub async fn submit(
        &self,
        new: NewCharge,
        now: DateTime<Utc>,
    ) -> Result<Submission, SandboxError> {
        let mut inner = self.inner.lock().await;
        if let Some(existing) = inner.charges.get(&new.reference) {
            if existing.amount != new.amount || existing.currency != new.currency {
                return Err(SandboxError::ReferenceReused {
                    amount: existing.amount,
                    currency: existing.currency.clone(),
                });
            }
            let mut charge = existing.clone();
            charge.attempts = charge.attempts.saturating_add(1);
            inner
                .write(Record::Charge {
                    charge: Box::new(charge.clone()),
                    event: None,
                })
                .await?;
            inner.charges.insert(new.reference, charge.clone());
            return Ok(Submission::Replayed(charge));
        }

        let outcome = outcome(&new.amount);
        let earlier_attempts = inner.refused.get(&new.reference).copied();
        if outcome == Outcome::FailsFirst && earlier_attempts.is_none() {
            inner
                .write(Record::Refused {
                    reference: new.reference.clone(),
                    attempts: 1,
                })
                .await?;
            inner.refused.insert(new.reference, 1);
            return Ok(Submission::Refused);
        }

        let verdict = Verdict::at_creation(outcome);
        let charge = Charge {
            id: format!("ch_{}", uuid::Uuid::new_v4().simple()),
            reference: new.reference,
            amount: new.amount,
            currency: new.currency,
            description: new.description,
            settled_at: verdict.status.is_final().then_some(now),
            status: verdict.status,
            decline_code: verdict.decline_code,
            message: verdict.message,
            attempts: earlier_attempts.unwrap_or(0).saturating_add(1),
            created_at: now,
        };
        let event = Event::for_charge(&charge, now).map(Box::new);
        inner
            .write(Record::Charge {
                charge: Box::new(charge.clone()),
                event: event.clone(),
            })
            .await?;
        inner.refused.remove(&charge.reference);
        inner
            .charges
            .insert(charge.reference.clone(), charge.clone());
        Ok(Submission::Created {
            charge,
            outcome,
            event,
        })
    }

    /// Moves a pending charge to its final state; `None` when it is not pending (any more).
    pub async fn settle(
        &self,
        reference: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(Charge, Event)>, SandboxError> {
        let mut inner = self.inner.lock().await;
        let Some(pending) = inner.charges.get(reference) else {
            return Ok(None);
        };
        if pending.status != ChargeStatus::Pending {
            return Ok(None);
        }
        let verdict = Verdict::at_settlement(outcome(&pending.amount));
        let charge = Charge {
            status: verdict.status,
            decline_code: verdict.decline_code,
            message: verdict.message,
            settled_at: Some(now),
            ..pending.clone()
        };
        let Some(event) = Event::for_charge(&charge, now) else {
            return Ok(None);
        };
        inner
            .write(Record::Charge {
                charge: Box::new(charge.clone()),
                event: Some(Box::new(event.clone())),
            })
            .await?;
        inner
            .charges
            .insert(charge.reference.clone(), charge.clone());
        Ok(Some((charge, event)))
    }

    /// Records that the webhook `event` was delivered or given up, so a restart does not send it
    /// again. Only the data file needs to know.
    pub async fn webhook_done(&self, event: &str, delivered: bool) -> Result<(), SandboxError> {
        self.inner
            .lock()
            .await
            .write(Record::WebhookDone {
                event: event.to_string(),
                delivered,
            })
            .await
    }

    pub async fn get(&self, reference: &str) -> Option<Charge> {
        self.inner.lock().await.charges.get(reference).cloned()
    }

    /// The `limit` newest charges, oldest first.
    pub async fn newest(&self, limit: usize) -> Vec<Charge> {
        let mut charges: Vec<Charge> = {
            let inner = self.inner.lock().await;
            inner.charges.values().cloned().collect()
        };
        charges.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let skip = charges.len().saturating_sub(limit);
        charges.split_off(skip)
    }

    /// Charges still waiting for settlement.
    pub async fn pending(&self) -> Vec<Charge> {
        let inner = self.inner.lock().await;
        inner
            .charges
            .values()
            .filter(|c| c.status == ChargeStatus::Pending)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;

    fn new(reference: &str, amount: &str) -> NewCharge {
        NewCharge {
            reference: reference.into(),
            amount: crate::charges::parse_amount(amount).unwrap(),
            currency: "USD".into(),
            description: None,
        }
    }

    #[tokio::test]
    async fn a_reference_charges_once_and_counts_its_attempts() {
        let ledger = Ledger::in_memory();
        let first = ledger.submit(new("r1", "10.00"), Utc::now()).await.unwrap();
        let Submission::Created { charge, event, .. } = first else {
            panic!("expected a new charge");
        };
        assert_eq!(charge.status, ChargeStatus::Succeeded);
        assert!(event.is_some());
        let again = ledger.submit(new("r1", "10.0"), Utc::now()).await.unwrap();
        let Submission::Replayed(replayed) = again else {
            panic!("expected a replay");
        };
        assert_eq!(replayed.id, charge.id);
        assert_eq!(replayed.attempts, 2);
        let reused = ledger.submit(new("r1", "10.01"), Utc::now()).await;
        assert!(matches!(
            reused,
            Err(SandboxError::ReferenceReused { amount, .. }) if amount == Decimal::new(1000, 2)
        ));
    }

    #[tokio::test]
    async fn a_pending_charge_settles_once() {
        let ledger = Ledger::in_memory();
        ledger
            .submit(new("p", "3001.00"), Utc::now())
            .await
            .unwrap();
        assert_eq!(ledger.pending().await.len(), 1);
        let (charge, event) = ledger.settle("p", Utc::now()).await.unwrap().unwrap();
        assert_eq!(charge.status, ChargeStatus::Declined);
        assert_eq!(event.data, charge);
        assert!(ledger.settle("p", Utc::now()).await.unwrap().is_none());
        assert!(ledger.pending().await.is_empty());
    }

    #[tokio::test]
    async fn the_refused_first_post_counts_as_an_attempt() {
        let ledger = Ledger::in_memory();
        let first = ledger
            .submit(new("f", "5000.00"), Utc::now())
            .await
            .unwrap();
        assert!(matches!(first, Submission::Refused));
        assert!(ledger.get("f").await.is_none());
        let second = ledger
            .submit(new("f", "5000.00"), Utc::now())
            .await
            .unwrap();
        let Submission::Created { charge, .. } = second else {
            panic!("expected a new charge");
        };
        assert_eq!(charge.status, ChargeStatus::Succeeded);
        assert_eq!(charge.attempts, 2);
    }

    #[tokio::test]
    async fn the_newest_charges_come_oldest_first() {
        let ledger = Ledger::in_memory();
        let start = Utc::now();
        for i in 0..5 {
            let at = start + chrono::Duration::seconds(i);
            ledger
                .submit(new(&format!("n{i}"), "1.00"), at)
                .await
                .unwrap();
        }
        let refs: Vec<_> = ledger
            .newest(3)
            .await
            .into_iter()
            .map(|c| c.reference)
            .collect();
        assert_eq!(refs, ["n2", "n3", "n4"]);
    }
}
