//! The payment state machine: pending -> processing -> completed | failed, pending -> cancelled.
//!
//! Every accepted transition happens in the caller's transaction, all at once: the payment row
//! (locked first, so two concurrent transitions of one payment never both win), one
//! `payment_transactions` row, and a `payment.status_changed` event. A refused transition writes
//! nothing.

use contracts::events::{PAYMENT_STATUS_CHANGED, PaymentStatusChanged};
use sqlx::PgConnection;

use crate::error::{PaymentError, Result};
use crate::status::Status;
use crate::store::payments::{self, PaymentRow, StatusUpdate};
use crate::store::transactions;
use crate::{money, outbox};

/// One transition and what it records.
#[derive(Debug, Clone, Default)]
pub struct Change<'a> {
    /// The `payment_transactions.status_message`.
    pub message: &'a str,
    pub psp_transaction_id: Option<&'a str>,
    pub psp_status: Option<&'a str>,
    pub failure_reason: Option<&'a str>,
    /// The user who asked for it (a cancellation), for the event.
    pub actor: Option<&'a str>,
}

/// Moves payment `id` to `to` in `tx`, or refuses with [`PaymentError::InvalidTransition`]
/// (nothing written). The payment row stays locked until `tx` ends.
pub async fn transition(
    tx: &mut PgConnection,
    id: &str,
    to: Status,
    change: Change<'_>,
) -> Result<PaymentRow> {
    let current = payments::lock(tx, id)
        .await?
        .ok_or(PaymentError::PaymentNotFound)?;
    let from = current.status();
    if !from.can_become(to) {
        return Err(PaymentError::InvalidTransition { from, to });
    }
    let update = StatusUpdate {
        status: to,
        psp_transaction_id: change.psp_transaction_id,
        psp_status: change.psp_status,
        failure_reason: change.failure_reason,
    };
    let row = payments::update_status(tx, id, &update).await?;
    transactions::insert(
        tx,
        &transactions::NewTransaction {
            payment_id: id,
            status: to,
            status_message: Some(change.message),
            psp_transaction_id: change.psp_transaction_id,
            metadata: None,
        },
    )
    .await?;
    let event = PaymentStatusChanged {
        payment_id: row.id.clone(),
        sender_id: row.sender_id.clone(),
        recipient_id: row.recipient_id.clone(),
        amount: money::show(row.amount),
        currency: row.currency.clone(),
        from: from.to_string(),
        to: to.to_string(),
        reason: change.failure_reason.map(String::from),
        actor_id: change.actor.map(String::from),
    };
    outbox::OUTBOX
        .record(tx, PAYMENT_STATUS_CHANGED, &event)
        .await?;
    metrics::counter!("payments_transitions_total", "from" => from.as_str(), "to" => to.as_str())
        .increment(1);
    Ok(row)
}
