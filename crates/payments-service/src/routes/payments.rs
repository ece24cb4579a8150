//! `/payments`: create, list, read, cancel, and a payment's history. Handlers only translate HTTP
//! to [`crate::payments`] and back.

use auth_client::Caller;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use platform::pagination::PageRequest;
use platform::{ErrorBody, Json, Query};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::Result;
use crate::payments::{self, Answer, ListQuery};
use crate::status::Status;
use crate::store::payments::Direction;
use crate::validate::{NewPayment, PaymentType};
use crate::views::{PaymentView, TransactionView};

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>> {
    match headers.get(IDEMPOTENCY_KEY) {
        None => Ok(None),
        Some(value) => match value.to_str() {
            Ok(key) => Ok(Some(key.to_string())),
            Err(_) => Err(crate::idempotency::invalid_key()),
        },
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let mut response = (status, Json(self.body)).into_response();
        if self.replayed {
            response
                .headers_mut()
                .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        }
        response
    }
}

/// Creates a payment from the caller. An instant payment is charged before the answer: 201 when
/// it settled (`completed` or `failed`), 202 while the provider's outcome is unknown
/// (`processing`; the reconciler settles it). Scheduled and recurring payments answer 201
/// `pending`.
#[utoipa::path(post, path = "/payments", tag = "payments", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, pattern = r"^[\x21-\x7e]{1,255}$",
        description = "Retries with the same key and body within 24 h get the first answer again (Idempotent-Replayed: true)")),
    request_body = NewPayment, responses(
    (status = 201, body = PaymentView),
    (status = 202, body = PaymentView, description = "sent to the provider, outcome not known yet"),
    (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody, description = "a service credential cannot pay"),
    (status = 404, body = ErrorBody, description = "Sender not found / Recipient not found"),
    (status = 409, body = ErrorBody, description = "idempotency_key_in_use"),
    (status = 422, body = ErrorBody, description = "a field breaks its rule, or idempotency_key_reused"),
    (status = 503, body = ErrorBody, description = "auth_unavailable")))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<NewPayment>,
) -> Result<Answer> {
    let key = idempotency_key(&headers)?;
    payments::create(&state, &caller, key.as_deref(), body).await
}

/// Cancels a pending payment; only its sender may. A recurring payment makes no more occurrences.
#[utoipa::path(post, path = "/payments/{id}/cancel", tag = "payments", security(("bearer" = [])),
    params(("id" = String, Path, description = "payment id"),
        ("Idempotency-Key" = Option<String>, Header, pattern = r"^[\x21-\x7e]{1,255}$", description = "as for POST /payments")),
    responses(
    (status = 200, body = PaymentView),
    (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody, description = "the caller is not the sender"),
    (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody, description = "invalid_transition: not pending any more"),
    (status = 422, body = ErrorBody, description = "a bad Idempotency-Key, or idempotency_key_reused")))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Answer> {
    let key = idempotency_key(&headers)?;
    payments::cancel(&state, &caller, key.as_deref(), &id).await
}

/// A payment, for its sender, its recipient or an ADMIN; to anyone else it does not exist.
#[utoipa::path(get, path = "/payments/{id}", tag = "payments", security(("bearer" = [])),
    params(("id" = String, Path, description = "payment id")), responses(
    (status = 200, body = PaymentView),
    (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody),
    (status = 503, body = ErrorBody, description = "auth_unavailable (names)")))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<PaymentView>> {
    Ok(Json(payments::get(&state, &caller, &id).await?))
}

/// A payment's history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransactionList {
    /// Oldest first.
    pub items: Vec<TransactionView>,
}

/// A payment's history (`payment_transactions`), oldest first, for whoever may see the payment.
#[utoipa::path(get, path = "/payments/{id}/transactions", tag = "payments", security(("bearer" = [])),
    params(("id" = String, Path, description = "payment id")), responses(
    (status = 200, body = TransactionList),
    (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody)))]
pub async fn transactions(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TransactionList>> {
    Ok(Json(TransactionList {
        items: payments::history(&state, &caller, &id).await?,
    }))
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DirectionParam {
    Sent,
    Received,
    All,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PaymentsQuery {
    /// `sent`, `received` or `all` (default).
    #[param(inline)]
    pub direction: Option<DirectionParam>,
    pub status: Option<Status>,
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub payment_type: Option<PaymentType>,
    /// Created at or after (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Created before (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// From a previous page's `nextCursor`.
    pub cursor: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// One page of `GET /payments`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPage {
    /// Newest first.
    pub items: Vec<PaymentView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The caller's payments, newest first, a page at a time.
#[utoipa::path(get, path = "/payments", tag = "payments", security(("bearer" = [])),
    params(PaymentsQuery), responses(
    (status = 200, body = PaymentPage),
    (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody, description = "a service credential has no payments"),
    (status = 422, body = ErrorBody, description = "a bad filter, limit or cursor"),
    (status = 503, body = ErrorBody, description = "auth_unavailable (names)")))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<PaymentsQuery>,
) -> Result<Json<PaymentPage>> {
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let query = ListQuery {
        direction: match q.direction.unwrap_or(DirectionParam::All) {
            DirectionParam::Sent => Direction::Sent,
            DirectionParam::Received => Direction::Received,
            DirectionParam::All => Direction::All,
        },
        status: q.status,
        payment_type: q.payment_type,
        from: q.from.map(|t| t.naive_utc()),
        to: q.to.map(|t| t.naive_utc()),
        page,
    };
    let (items, next_cursor) = payments::list(&state, &caller, query).await?;
    Ok(Json(PaymentPage { items, next_cursor }))
}
