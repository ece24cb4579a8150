//! What a user may do with payments: create one (sender = the caller, recipient found by email
//! through auth), cancel one of theirs while it is pending, read their own. A payment is visible
//! to its sender, its recipient and ADMINs; to anyone else it does not exist (404, never 403).

use auth_client::Caller;
use chrono::{NaiveDateTime, Utc};
use contracts::events::{PAYMENT_CREATED, PaymentCreated};
use platform::ApiError;
use platform::error::FieldError;
use platform::pagination::PageRequest;
use serde_json::Value;
use sqlx::PgConnection;
use tracing::Instrument;

use crate::error::{PaymentError, Result};
use crate::idempotency::{self, Claimed, Lease, Stored};
use crate::lifecycle::{self, Change};
use crate::status::Status;
use crate::store::jobs::{self, Kind};
use crate::store::payments::{self as store, Direction, ListFilter, PaymentRow};
use crate::store::{schedules, transactions};
use crate::validate::{self, NewPayment, PaymentType, ValidPayment};
use crate::views::{PaymentView, TransactionView};
use crate::{AppState, charging, money, outbox, users};

/// What a POST answers: its status and body, and whether they are a stored first answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub replayed: bool,
}

impl Answer {
    fn replay(stored: Stored) -> Self {
        Self {
            status: stored.status,
            body: stored.body,
            replayed: true,
        }
    }

    fn fresh(stored: Stored) -> Self {
        Self {
            status: stored.status,
            body: stored.body,
            replayed: false,
        }
    }
}

/// The answer to a payment: 202 while its outcome is not known yet (the provider has it), 201
/// otherwise.
fn answer_for(view: &PaymentView) -> Result<Stored> {
    let status = if view.status == Status::Processing {
        202
    } else {
        201
    };
    let body = serde_json::to_value(view).map_err(ApiError::internal)?;
    Ok(Stored { status, body })
}

/// Creates a payment from the caller to the user with `request.recipient_email`: the payment
/// (`pending`), its first history row, its schedule and `payment.created`, in one transaction
/// with the Idempotency-Key's stored answer. An instant payment is then charged at once.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    key: Option<&str>,
    request: NewPayment,
) -> Result<Answer> {
    let user_id = caller.user_id().ok_or(PaymentError::NoUser)?;
    let fingerprint = match key {
        Some(key) => {
            idempotency::check_key(key)?;
            let body = serde_json::to_value(&request).map_err(ApiError::internal)?;
            Some(idempotency::fingerprint("POST", "/payments", &body))
        }
        None => None,
    };
    let valid = validate::new_payment(request, Utc::now())?;
    let claimed = key.zip(fingerprint);
    let mut lease = match claim(state, user_id, claimed).await? {
        Start::Replay(answer) => return Ok(answer),
        Start::Go(lease) => lease,
    };
    let result = create_claimed(state, user_id, valid, &mut lease).await;
    released_on_error(result, lease).await
}

/// Whether a POST goes ahead (holding its key, if it sent one) or replays a stored answer.
enum Start {
    Go(Option<Lease>),
    Replay(Answer),
}

/// Claims `key` (with the request's fingerprint) for `user_id`, if the request sent one.
async fn claim(state: &AppState, user_id: &str, key: Option<(&str, String)>) -> Result<Start> {
    let Some((key, fingerprint)) = key else {
        return Ok(Start::Go(None));
    };
    let lease_time = state.settings.idempotency_lease;
    Ok(
        match idempotency::claim(&state.pool, user_id, key, &fingerprint, lease_time).await? {
            Claimed::Replay(stored) => Start::Replay(Answer::replay(stored)),
            Claimed::Fresh(lease) => Start::Go(Some(lease)),
        },
    )
}

/// Lets go of a key still held when its request failed, before the error is answered.
async fn released_on_error(result: Result<Answer>, lease: Option<Lease>) -> Result<Answer> {
    if result.is_err()
        && let Some(lease) = lease
    {
        lease.release().await;
    }
    result
}

/// `create` once the Idempotency-Key (if any) is claimed; `lease` is taken once the payment
/// is committed, and left for the caller to release if this fails before.
async fn create_claimed(
    state: &AppState,
    user_id: &str,
    valid: ValidPayment,
    lease: &mut Option<Lease>,
) -> Result<Answer> {
    // Asked before the transaction: no transaction stays open across a call to auth.
    let sender = users::sender(state, user_id).await?;
    let recipient = users::recipient(state, &valid.recipient_email).await?;
    if sender.id == recipient.id {
        return Err(ApiError::validation(vec![FieldError::new(
            "recipientEmail",
            "is the sender's own: a payment needs another recipient",
        )])
        .into());
    }
    let names = users::known(&[&sender, &recipient]);
    let instant = valid.payment_type == PaymentType::Instant;

    let id = uuid::Uuid::new_v4().to_string();
    let mut tx = state.pool.begin().await?;
    let new = NewRecord {
        id: &id,
        sender_id: &sender.id,
        recipient_id: &recipient.id,
        amount: valid.amount.decimal(),
        currency: &valid.currency,
        payment_type: valid.payment_type,
        description: valid.description.as_deref(),
        metadata: valid.metadata.as_ref(),
        message: "Payment created",
        parent: None,
    };
    if let Err(e) = record_new(&mut tx, &new).await {
        // Shared topology: auth (or the cache) knew a user the legacy `users` no longer has.
        match e {
            PaymentError::SenderNotFound => state.auth.invalidate_user(&sender.id).await,
            PaymentError::RecipientNotFound => state.auth.invalidate_user(&recipient.id).await,
            _ => {}
        }
        return Err(e);
    }
    if let Some(at) = valid.scheduled_at {
        schedules::insert(&mut tx, &id, at, valid.interval.map(|i| i.as_str())).await?;
    }
    let (kind, due_at) = match valid.payment_type {
        // The request charges it itself right after the commit; the worker only if it died.
        PaymentType::Instant => (
            Kind::Charge,
            valid.due_at + state.settings.worker.charge_grace,
        ),
        PaymentType::Scheduled => (Kind::Charge, valid.due_at),
        PaymentType::Recurring => (Kind::Occurrence, valid.due_at),
    };
    jobs::put(&mut tx, &id, kind, due_at).await?;
    let row = store::find(&mut tx, &id)
        .await?
        .ok_or(PaymentError::PaymentNotFound)?;
    let stored = answer_for(&PaymentView::new(row, &names))?;
    if let Some(lease) = lease.as_mut() {
        // An instant payment's key stays held while it is charged: see `Held::finish` below.
        lease.store(&mut tx, &stored, !instant).await?;
    }
    tx.commit().await?;
    let held = lease.take().map(Lease::committed);
    metrics::counter!("payments_created_total", "type" => valid.payment_type.as_str()).increment(1);

    if !instant {
        return Ok(Answer::fresh(stored));
    }
    charge_instant(state, &id, &names, held).await
}

/// An instant payment, committed: charged at once, and answered (and its key's answer stored)
/// as the charge left it.
async fn charge_instant(
    state: &AppState,
    id: &str,
    names: &crate::views::Names,
    held: Option<idempotency::Held>,
) -> Result<Answer> {
    // On a task of its own: a client hanging up drops this request's future, and the charge with
    // it, which would then wait for the reconciler (the provider's timeout and more).
    let charge = {
        let (state, id) = (state.clone(), id.to_string());
        // In the request's span: the charge belongs to its trace.
        tokio::spawn(async move { charging::charge_now(&state, &id).await }.in_current_span())
    };
    if let Err(e) = charge.await {
        tracing::error!(payment_id = %id, error = %e, "the charge task failed");
    }
    // The connection goes back before `finish` takes one: holding it there, as many requests as
    // the pool has connections would each wait for another one, until the acquire timeout.
    let row = {
        let mut conn = state.pool.acquire().await?;
        store::find(&mut conn, id)
            .await?
            .ok_or(PaymentError::PaymentNotFound)?
    };
    let charged = answer_for(&PaymentView::new(row, names))?;
    if let Some(held) = held {
        held.finish(&charged).await;
    }
    Ok(Answer::fresh(charged))
}

/// A payment to insert with its first history row and its `payment.created` event.
pub struct NewRecord<'a> {
    pub id: &'a str,
    pub sender_id: &'a str,
    pub recipient_id: &'a str,
    pub amount: rust_decimal::Decimal,
    pub currency: &'a str,
    pub payment_type: PaymentType,
    pub description: Option<&'a str>,
    pub metadata: Option<&'a Value>,
    /// The first history row's message.
    pub message: &'a str,
    /// The recurring payment this is an occurrence of.
    pub parent: Option<&'a str>,
}

/// In the shared topology the legacy keys `payments.sender_id`/`recipient_id -> users` stay: a
/// user deleted since auth was asked (or since it was cached) is refused by the database, and
/// answered as auth's "not found" would have been.
pub async fn record_new(tx: &mut PgConnection, new: &NewRecord<'_>) -> Result<()> {
    store::insert(
        tx,
        &store::NewPayment {
            id: new.id,
            sender_id: new.sender_id,
            recipient_id: new.recipient_id,
            amount: new.amount,
            currency: new.currency,
            payment_type: new.payment_type.as_str(),
            description: new.description,
            metadata: new.metadata,
        },
    )
    .await
    .map_err(missing_user)?;
    transactions::insert(
        tx,
        &transactions::NewTransaction {
            payment_id: new.id,
            status: Status::Pending,
            status_message: Some(new.message),
            psp_transaction_id: None,
            metadata: None,
        },
    )
    .await?;
    let event = PaymentCreated {
        payment_id: new.id.to_string(),
        sender_id: new.sender_id.to_string(),
        recipient_id: Some(new.recipient_id.to_string()),
        amount: money::show(new.amount),
        currency: new.currency.to_string(),
        payment_type: new.payment_type.as_str().to_string(),
        status: Status::Pending.to_string(),
        parent_payment_id: new.parent.map(String::from),
    };
    outbox::OUTBOX.record(tx, PAYMENT_CREATED, &event).await?;
    Ok(())
}

/// A payment's user missing from the legacy `users` (a foreign key of the shared topology).
fn missing_user(e: sqlx::Error) -> PaymentError {
    if let sqlx::Error::Database(db) = &e
        && db.is_foreign_key_violation()
    {
        match db.constraint() {
            Some("payments_sender_id_fkey") => return PaymentError::SenderNotFound,
            Some("payments_recipient_id_fkey") => return PaymentError::RecipientNotFound,
            _ => {}
        }
    }
    e.into()
}

/// Cancels a pending payment of the caller's (its sender's only). A recurring payment stops
/// making occurrences; the ones made already stand on their own.
pub async fn cancel(
    state: &AppState,
    caller: &Caller,
    key: Option<&str>,
    id: &str,
) -> Result<Answer> {
    let user_id = caller.user_id().ok_or(PaymentError::NoUser)?;
    let claimed = match key {
        Some(key) => {
            idempotency::check_key(key)?;
            let path = format!("/payments/{id}/cancel");
            Some((key, idempotency::fingerprint("POST", &path, &Value::Null)))
        }
        None => None,
    };
    let mut lease = match claim(state, user_id, claimed).await? {
        Start::Replay(answer) => return Ok(answer),
        Start::Go(lease) => lease,
    };
    let result = cancel_claimed(state, caller, user_id, id, &mut lease).await;
    released_on_error(result, lease).await
}

async fn cancel_claimed(
    state: &AppState,
    caller: &Caller,
    user_id: &str,
    id: &str,
    lease: &mut Option<Lease>,
) -> Result<Answer> {
    let row = visible(state, caller, id).await?;
    if row.sender_id != user_id {
        return Err(PaymentError::forbidden(
            "only the sender may cancel a payment",
        ));
    }
    let names = users::names(state, participants(&row)).await?;
    let mut tx = state.pool.begin().await?;
    jobs::lock(&mut tx, id).await?;
    let change = Change {
        message: "Cancelled by the sender",
        actor: Some(user_id),
        ..Change::default()
    };
    let row = lifecycle::transition(&mut tx, id, Status::Cancelled, change).await?;
    jobs::delete(&mut tx, id).await?;
    let body = serde_json::to_value(PaymentView::new(row, &names)).map_err(ApiError::internal)?;
    let stored = Stored { status: 200, body };
    if let Some(lease) = lease.as_mut() {
        lease.store(&mut tx, &stored, true).await?;
    }
    tx.commit().await?;
    if let Some(lease) = lease.take() {
        lease.committed();
    }
    Ok(Answer::fresh(stored))
}

/// A payment, for its sender, its recipient or an ADMIN.
pub async fn get(state: &AppState, caller: &Caller, id: &str) -> Result<PaymentView> {
    let row = visible(state, caller, id).await?;
    let names = users::names(state, participants(&row)).await?;
    Ok(PaymentView::new(row, &names))
}

/// A payment's history, oldest first.
pub async fn history(state: &AppState, caller: &Caller, id: &str) -> Result<Vec<TransactionView>> {
    visible(state, caller, id).await?;
    let mut conn = state.pool.acquire().await?;
    let rows = transactions::of_payment(&mut conn, id).await?;
    Ok(rows.into_iter().map(TransactionView::from).collect())
}

/// Which of the caller's payments a list shows.
pub struct ListQuery {
    pub direction: Direction,
    pub status: Option<Status>,
    pub payment_type: Option<PaymentType>,
    pub from: Option<NaiveDateTime>,
    pub to: Option<NaiveDateTime>,
    pub page: PageRequest,
}

/// One page of the caller's payments, newest first; the cursor of the next page, if any.
pub async fn list(
    state: &AppState,
    caller: &Caller,
    query: ListQuery,
) -> Result<(Vec<PaymentView>, Option<String>)> {
    let user_id = caller.user_id().ok_or(PaymentError::NoUser)?;
    let after = match query.page.after.as_deref() {
        Some(cursor) => Some(platform::pagination::parse_time_key(cursor)?),
        None => None,
    };
    let filter = ListFilter {
        user_id,
        direction: query.direction,
        status: query.status,
        payment_type: query.payment_type.map(PaymentType::as_str),
        from: query.from,
        to: query.to,
        after,
        limit: query.page.fetch(),
    };
    let rows = {
        let mut conn = state.readers.acquire().await?;
        let rows = store::list(&mut conn, &filter).await?;
        conn.release();
        rows
    };
    let mut keyed: Vec<(String, PaymentRow)> = rows
        .into_iter()
        .map(|row| (cursor_key(&row), row))
        .collect();
    let next_cursor = query.page.finish(&mut keyed, |(key, _)| key);
    let names = users::names(state, keyed.iter().flat_map(|(_, row)| participants(row))).await?;
    let views = keyed
        .into_iter()
        .map(|(_, row)| PaymentView::new(row, &names))
        .collect();
    Ok((views, next_cursor))
}

fn participants(row: &PaymentRow) -> impl Iterator<Item = &str> {
    std::iter::once(row.sender_id.as_str()).chain(row.recipient_id.as_deref())
}

async fn visible(state: &AppState, caller: &Caller, id: &str) -> Result<PaymentRow> {
    let mut conn = state.pool.acquire().await?;
    let row = store::find(&mut conn, id)
        .await?
        .ok_or(PaymentError::PaymentNotFound)?;
    let user = caller.user_id();
    let party = user.is_some_and(|u| row.sender_id == u || row.recipient_id.as_deref() == Some(u));
    if party || caller.is_admin() {
        Ok(row)
    } else {
        Err(PaymentError::PaymentNotFound)
    }
}

/// A list's keyset position: the row's creation time and id.
fn cursor_key(row: &PaymentRow) -> String {
    platform::pagination::time_key(&row.created_at, &row.id)
}
