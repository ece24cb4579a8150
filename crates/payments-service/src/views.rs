//! Payments as clients see them. They live outside `routes` because a response is also what an
//! Idempotency-Key stores and replays, in the transaction that writes the payment.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::money;
use crate::status::Status;
use crate::store::payments::PaymentRow;
use crate::store::transactions::TransactionRow;

/// A payment, with its sender's and recipient's names (null when auth no longer knows the user).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
    /// A UUID for payments made here; migrated legacy payments keep their ids as they are.
    pub id: String,
    pub sender_id: String,
    pub sender_name: Option<String>,
    /// Null on legacy payments without a recipient.
    pub recipient_id: Option<String>,
    pub recipient_name: Option<String>,
    /// A decimal string with two decimals, e.g. `"12.30"`.
    pub amount: String,
    pub currency: String,
    pub status: Status,
    /// `instant`, `scheduled` or `recurring`.
    #[serde(rename = "type")]
    pub payment_type: String,
    pub description: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    pub psp_transaction_id: Option<String>,
    pub psp_status: Option<String>,
    pub failure_reason: Option<String>,
    pub completed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When a scheduled payment is due, or a recurring one started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<DateTime<Utc>>,
    /// `day`, `week` or `month`, for a recurring payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
}

/// User names by id, as resolved through auth (`None`: auth does not know the user).
pub type Names = HashMap<String, Option<String>>;

impl PaymentView {
    pub fn new(row: PaymentRow, names: &Names) -> Self {
        let name = |id: &str| names.get(id).cloned().flatten();
        Self {
            sender_name: name(&row.sender_id),
            recipient_name: row.recipient_id.as_deref().and_then(name),
            status: row.status(),
            amount: money::show(row.amount),
            id: row.id,
            sender_id: row.sender_id,
            recipient_id: row.recipient_id,
            currency: row.currency,
            payment_type: row.payment_type,
            description: row.description,
            metadata: row.metadata,
            psp_transaction_id: row.psp_transaction_id,
            psp_status: row.psp_status,
            failure_reason: row.failure_reason,
            completed_at: row.completed_at.map(|t| t.and_utc()),
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
            scheduled_at: row.scheduled_at,
            interval: row.interval,
        }
    }
}

/// One step of a payment's history (`payment_transactions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransactionView {
    pub id: String,
    pub payment_id: String,
    pub status: Status,
    pub status_message: Option<String>,
    pub psp_transaction_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

impl From<TransactionRow> for TransactionView {
    fn from(row: TransactionRow) -> Self {
        Self {
            status: row.status.parse().unwrap_or(Status::Pending),
            id: row.id,
            payment_id: row.payment_id,
            status_message: row.status_message,
            psp_transaction_id: row.psp_transaction_id,
            metadata: row.metadata,
            created_at: row.created_at.and_utc(),
        }
    }
}
