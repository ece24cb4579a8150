//! Taking a payment through the provider, without ever charging twice or leaving it stuck.
//!
//! 1. In one transaction, holding the payment's job: the payment becomes `processing` and its job
//!    becomes "reconcile later". Only then is the provider called, with the payment's id as the
//!    charge's reference.
//! 2. A definite answer (succeeded, declined) settles the payment and drops the job, in one
//!    transaction. An unknown one (timeout, 5xx, unreachable) leaves it `processing`.
//! 3. The reconciler (the job, when due) asks the provider about the reference: a settled charge
//!    settles the payment; a charge the provider never received is sent again with the same
//!    reference, which the provider deduplicates on.
//!
//! A webhook settles through the same door as the reconciler; whichever comes second finds the
//! payment final already and changes nothing. A process killed at any point leaves either a
//! `pending` payment with its charge job, or a `processing` one with its reconcile job.

use chrono::Utc;
use serde_json::{Value, json};
use sqlx::PgConnection;

use crate::AppState;
use crate::error::{PaymentError, Result};
use crate::lifecycle::{self, Change};
use crate::payments::{NewRecord, record_new};
use crate::psp::{Charge, ChargeRequest, ChargeStatus, PspError};
use crate::status::Status;
use crate::store::jobs::{self, Job, Kind};
use crate::store::payments as store;
use crate::store::schedules;
use crate::validate::{Interval, PaymentType};

/// How a charge's answer was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The payment became `completed` or `failed`.
    Now(Status),
    /// The provider has not decided; the payment stays `processing`.
    Pending,
    /// The payment was final already (a duplicate webhook, or the reconciler was first).
    Already,
}

/// Charges an instant payment right after the request created it, unless a worker holds its
/// job. Failures are logged: the payment is then left to the worker or the reconciler.
pub async fn charge_now(state: &AppState, id: &str) {
    let started = async {
        let mut tx = state.pool.begin().await?;
        if jobs::take(&mut tx, id, Kind::Charge).await?.is_none() {
            return Ok::<_, PaymentError>(None);
        }
        let request = begin_charge(state, &mut tx, id).await?;
        tx.commit().await?;
        Ok(request)
    };
    match started.await {
        Ok(Some(request)) => send(state, &request).await,
        Ok(None) => {}
        Err(e) => tracing::warn!(payment_id = %id, error = %e, "could not start the charge"),
    }
}

/// Runs the next due job, if any; false when none is due.
pub async fn run_due_job(state: &AppState) -> Result<bool> {
    let mut tx = state.pool.begin().await?;
    let Some(job) = jobs::take_due(&mut tx).await? else {
        return Ok(false);
    };
    match job.kind {
        Kind::Charge => {
            let request = begin_charge(state, &mut tx, &job.payment_id).await?;
            tx.commit().await?;
            if let Some(request) = request {
                send(state, &request).await;
            }
        }
        Kind::Occurrence => {
            make_occurrence(&mut tx, &job).await?;
            tx.commit().await?;
        }
        Kind::Reconcile => {
            // Put off first, so that no other worker asks at the same time, and so that a
            // provider that stays down is asked less and less often.
            let next = Utc::now() + reconcile_delay(state, job.attempts + 1);
            jobs::postpone(&mut tx, &job.payment_id, next, None).await?;
            tx.commit().await?;
            reconcile(state, &job.payment_id).await?;
        }
    }
    Ok(true)
}

fn reconcile_delay(state: &AppState, attempts: i32) -> chrono::Duration {
    let worker = &state.settings.worker;
    let factor = 2u32.saturating_pow(attempts.clamp(0, 20) as u32);
    let delay = worker
        .reconcile_after
        .saturating_mul(factor)
        .min(worker.reconcile_max);
    chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX)
}

/// Moves the payment to `processing` and its job to "reconcile later", in `tx`; the charge to
/// send once `tx` commits. `None` when the payment is no longer pending (cancelled meanwhile).
async fn begin_charge(
    state: &AppState,
    tx: &mut PgConnection,
    id: &str,
) -> Result<Option<ChargeRequest>> {
    let change = Change {
        message: jobs::SENT_TO_PROVIDER,
        psp_status: Some("submitted"),
        ..Change::default()
    };
    let row = match lifecycle::transition(tx, id, Status::Processing, change).await {
        Ok(row) => row,
        Err(PaymentError::InvalidTransition { .. } | PaymentError::PaymentNotFound) => {
            jobs::delete(tx, id).await?;
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    // Not before the call itself has timed out: asking while it is still in flight would race it.
    let in_flight = chrono::Duration::from_std(state.settings.psp.timeout).unwrap_or_default();
    let reconcile_at = Utc::now() + in_flight + reconcile_delay(state, 0);
    jobs::put(tx, id, Kind::Reconcile, reconcile_at).await?;
    Ok(Some(charge_of(row)))
}

/// The charge of a payment: always under its id, so that asking again never charges twice.
fn charge_of(row: store::PaymentRow) -> ChargeRequest {
    ChargeRequest {
        reference: row.id,
        amount: row.amount,
        currency: row.currency,
        description: row.description,
    }
}

/// Sends a charge and applies a definite answer; an unknown one waits for the reconciler.
async fn send(state: &AppState, request: &ChargeRequest) {
    let id = &request.reference;
    let outcome = match state.psp.charge(request).await {
        Ok(charge) => settle(state, &charge).await,
        Err(PspError::Unknown(cause)) => {
            tracing::warn!(payment_id = %id, %cause, "charge outcome unknown; left to the reconciler");
            return;
        }
        Err(PspError::Refused { status, message }) => refuse(state, id, status, &message).await,
    };
    if let Err(e) = outcome {
        tracing::warn!(payment_id = %id, error = %e, "could not record the charge's outcome");
    }
}

/// The provider refused the charge request itself (4xx): no charge exists, so the payment fails.
async fn refuse(state: &AppState, id: &str, status: u16, message: &str) -> Result<Settled> {
    tracing::error!(payment_id = %id, status, %message, "the provider refused the charge");
    let reason = format!("refused by the provider ({status})");
    let mut tx = state.pool.begin().await?;
    let change = Change {
        message: "Refused by the provider",
        psp_status: Some("refused"),
        failure_reason: Some(&reason),
        ..Change::default()
    };
    finish(&mut tx, id, Status::Failed, change).await?;
    tx.commit().await?;
    Ok(Settled::Now(Status::Failed))
}

/// Applies what the provider says about a charge to its payment (`charge.reference`).
pub async fn settle(state: &AppState, charge: &Charge) -> Result<Settled> {
    let id = charge.reference.as_str();
    let mut tx = state.pool.begin().await?;
    let reason;
    let (to, change) = match charge.status {
        ChargeStatus::Pending => {
            store::set_psp(
                &mut tx,
                id,
                Some(&charge.id),
                ChargeStatus::Pending.as_str(),
            )
            .await?;
            tx.commit().await?;
            return Ok(Settled::Pending);
        }
        ChargeStatus::Succeeded => (
            Status::Completed,
            Change {
                message: "Charge succeeded",
                psp_transaction_id: Some(&charge.id),
                psp_status: Some(ChargeStatus::Succeeded.as_str()),
                ..Change::default()
            },
        ),
        ChargeStatus::Declined => {
            reason = charge.failure_reason();
            (
                Status::Failed,
                Change {
                    message: "Charge declined",
                    psp_transaction_id: Some(&charge.id),
                    psp_status: Some(ChargeStatus::Declined.as_str()),
                    failure_reason: Some(&reason),
                    ..Change::default()
                },
            )
        }
    };
    let settled = finish(&mut tx, id, to, change).await?;
    tx.commit().await?;
    Ok(settled)
}

async fn finish(
    tx: &mut PgConnection,
    id: &str,
    to: Status,
    change: Change<'_>,
) -> Result<Settled> {
    jobs::lock(tx, id).await?;
    match lifecycle::transition(tx, id, to, change).await {
        Ok(_) => {
            jobs::delete(tx, id).await?;
            tracing::info!(payment_id = %id, status = %to, "payment settled");
            Ok(Settled::Now(to))
        }
        Err(PaymentError::InvalidTransition { from, .. }) if from.is_final() => {
            Ok(Settled::Already)
        }
        Err(e) => Err(e),
    }
}

/// Asks the provider how the charge of a `processing` payment ended, and applies it.
pub async fn reconcile(state: &AppState, id: &str) -> Result<()> {
    let row = {
        let mut conn = state.pool.acquire().await?;
        store::find(&mut conn, id).await?
    };
    let Some(row) = row.filter(|row| row.status() == Status::Processing) else {
        let mut conn = state.pool.acquire().await?;
        jobs::delete(&mut conn, id).await?;
        return Ok(());
    };
    metrics::counter!("payments_reconciliations_total").increment(1);
    match state.psp.charge_status(id).await {
        Ok(Some(charge)) => {
            let settled = settle(state, &charge).await?;
            tracing::info!(payment_id = %id, ?settled, "reconciled");
        }
        Ok(None) => {
            // The provider never received it (the process died before the call, or the call
            // failed before it arrived): send it again, under the same reference.
            tracing::info!(payment_id = %id, "the provider has no such charge; sending it again");
            send(state, &charge_of(row)).await;
        }
        Err(e) => {
            tracing::warn!(payment_id = %id, error = %e, "could not reconcile yet");
            let mut conn = state.pool.acquire().await?;
            jobs::note_error(&mut conn, id, &e.to_string()).await?;
        }
    }
    Ok(())
}

/// Ends a recurring payment that has no recipient left: in the shared topology, deleting the
/// recipient makes the legacy key (`payments_recipient_id_fkey`, ON DELETE SET NULL) clear it.
/// With no one to pay, the parent is cancelled (its event says why) and makes no more
/// occurrences; the ones made already stand.
async fn end_without_recipient(tx: &mut PgConnection, parent_id: &str) -> Result<()> {
    let change = Change {
        message: "Cancelled: the recipient no longer exists",
        failure_reason: Some("recipient deleted"),
        ..Change::default()
    };
    lifecycle::transition(tx, parent_id, Status::Cancelled, change).await?;
    jobs::delete(tx, parent_id).await?;
    tracing::warn!(payment_id = %parent_id, "recurring payment cancelled: its recipient no longer exists");
    Ok(())
}

/// Makes the next occurrence of a recurring payment (a child payment, charged at once) and
/// schedules the one after it, in `tx`. A parent no longer pending (cancelled) makes no more.
async fn make_occurrence(tx: &mut PgConnection, job: &Job) -> Result<()> {
    let parent_id = job.payment_id.as_str();
    let parent = store::lock(tx, parent_id).await?;
    let Some(parent) = parent.filter(|p| p.status() == Status::Pending) else {
        jobs::delete(tx, parent_id).await?;
        return Ok(());
    };
    let (Some(start), Some(interval)) = (parent.scheduled_at, parent.interval.as_deref()) else {
        jobs::delete(tx, parent_id).await?;
        return Ok(());
    };
    let interval: Interval = serde_json::from_value(Value::String(interval.to_string()))
        .map_err(|e| PaymentError::from(platform::ApiError::internal(e)))?;
    let occurrence = schedules::next_occurrence(tx, parent_id).await?;
    let mut metadata = match parent.metadata.clone() {
        Some(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    metadata.insert("recurringParentId".into(), json!(parent_id));
    metadata.insert("occurrence".into(), json!(occurrence));
    let metadata = Value::Object(metadata);
    let child_id = uuid::Uuid::new_v4().to_string();
    let message = format!("Occurrence {occurrence} of recurring payment {parent_id}");
    let Some(recipient) = parent.recipient_id.as_deref() else {
        return end_without_recipient(tx, parent_id).await;
    };
    record_new(
        tx,
        &NewRecord {
            id: &child_id,
            sender_id: &parent.sender_id,
            recipient_id: recipient,
            amount: parent.amount,
            currency: &parent.currency,
            payment_type: PaymentType::Recurring,
            description: parent.description.as_deref(),
            metadata: Some(&metadata),
            message: &message,
            parent: Some(parent_id),
        },
    )
    .await?;
    jobs::put(tx, &child_id, Kind::Charge, Utc::now()).await?;
    let next = interval.after(start, occurrence as u32);
    jobs::put(tx, parent_id, Kind::Occurrence, next).await?;
    tracing::info!(payment_id = %parent_id, occurrence, child = %child_id, %next, "recurring payment occurred");
    Ok(())
}
