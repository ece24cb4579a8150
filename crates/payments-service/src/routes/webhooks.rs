//! `POST /psp/webhooks`: the provider tells how a charge settled. Signed by the provider and
//! checked before anything is read; a duplicate delivery, or one that comes after the reconciler
//! settled the payment, changes nothing and is acknowledged, so the provider stops retrying.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use platform::{ErrorBody, Json};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::charging::{self, Settled};
use crate::error::{PaymentError, Result};
use crate::psp::WebhookError;
use crate::psp::sandbox::SIGNATURE_HEADER;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookReceipt {
    pub received: bool,
    /// `completed`, `failed`, `pending` (not settled yet), `unchanged` (settled before) or
    /// `ignored` (no such payment).
    pub outcome: &'static str,
}

/// A charge settled at the provider.
#[utoipa::path(post, path = "/psp/webhooks", tag = "psp",
    params(("PSP-Signature" = String, Header, description = "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">")),
    request_body(content = Object, description = "the provider's event: {id, type, createdAt, data: charge}"),
    responses(
    (status = 200, body = WebhookReceipt),
    (status = 401, body = ErrorBody, description = "a missing, forged or stale signature"),
    (status = 422, body = ErrorBody, description = "a signed body that is not an event")))]
pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookReceipt>> {
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let now = chrono::Utc::now().timestamp();
    let charge = match state.psp.read_webhook(signature, &body, now) {
        Ok(charge) => charge,
        Err(WebhookError::Malformed) => {
            return Err(platform::ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                platform::error::code::VALIDATION_FAILED,
                "the webhook is not a charge event",
            )
            .into());
        }
        Err(e) => {
            metrics::counter!("psp_webhooks_total", "outcome" => "refused").increment(1);
            tracing::warn!(error = %e, "webhook refused");
            return Err(PaymentError::InvalidSignature(match e {
                WebhookError::MissingSignature => "no PSP-Signature header",
                WebhookError::Stale => "the signature is too old",
                _ => "the signature does not match",
            }));
        }
    };
    let outcome = match charging::settle(&state, &charge).await {
        Ok(Settled::Now(status)) => status.as_str(),
        Ok(Settled::Pending) => "pending",
        Ok(Settled::Already) => "unchanged",
        Err(PaymentError::PaymentNotFound) => "ignored",
        Err(e) => return Err(e),
    };
    metrics::counter!("psp_webhooks_total", "outcome" => outcome).increment(1);
    Ok(Json(WebhookReceipt {
        received: true,
        outcome,
    }))
}
