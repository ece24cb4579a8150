//! `/charges`: create a charge (idempotent by reference), look one up, list them. Handlers
//! translate HTTP to [`crate::psp`] and [`crate::ledger`] and back.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use platform::{ErrorBody, Json, Query, Validator};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::charges::{Charge, ChargeRequest};
use crate::error::{Result, SandboxError};
use crate::ledger::Submission;
use crate::outcomes::Outcome;
use crate::psp::Psp;

/// Set to `true` on a POST answered with the reference's existing charge.
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";
pub const MAX_LIST_LIMIT: u32 = 1000;

/// Creates a charge, or returns the reference's existing one.
///
/// Idempotent by `reference`: the first POST creates the charge (201); a later POST with the same
/// reference, amount and currency returns the existing charge as it is now (200,
/// `Idempotent-Replayed: true`) and charges nothing; the same reference with another amount or
/// currency is 409 `reference_reused`. Every POST of a reference counts in the charge's
/// `attempts`. The amount decides the outcome:
#[utoipa::path(post, path = "/charges", tag = "charges", request_body = ChargeRequest, responses(
    (status = 201, body = Charge, description = "created; its status follows the outcome table"),
    (status = 200, body = Charge, description = "the reference's existing charge, unchanged but for `attempts`",
        headers(("Idempotent-Replayed" = String, description = "`true`"))),
    (status = 400, body = ErrorBody, description = "malformed JSON"),
    (status = 409, body = ErrorBody, description = "`reference_reused`: the reference has a charge of another amount or currency"),
    (status = 422, body = ErrorBody, description = "`validation_failed`, naming each bad field"),
    (status = 500, body = ErrorBody, description = "`internal`: the simulated failure of a 5000.xx charge's first POST; nothing was charged")))]
pub async fn create_charge(
    State(psp): State<Psp>,
    Json(body): Json<ChargeRequest>,
) -> Result<Response> {
    psp.simulate_latency().await;
    let new = body.validate()?;
    match psp.charge(new).await? {
        Submission::Created {
            charge, outcome, ..
        } => {
            if outcome == Outcome::Timeout {
                psp.hang().await;
            }
            Ok((StatusCode::CREATED, Json(charge)).into_response())
        }
        Submission::Replayed(charge) => {
            Ok((StatusCode::OK, [(REPLAYED_HEADER, "true")], Json(charge)).into_response())
        }
        Submission::Refused => Err(SandboxError::SimulatedFailure),
    }
}

/// The charge of a reference, as it is now.
#[utoipa::path(get, path = "/charges/{reference}", tag = "charges",
    params(("reference" = String, Path, description = "the caller's reference, percent-encoded")),
    responses(
    (status = 200, body = Charge),
    (status = 404, body = ErrorBody, description = "`not_found`: no charge has this reference")))]
pub async fn get_charge(
    State(psp): State<Psp>,
    Path(reference): Path<String>,
) -> Result<Json<Charge>> {
    psp.simulate_latency().await;
    psp.ledger
        .get(&reference)
        .await
        .map(Json)
        .ok_or(SandboxError::NotFound)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// How many of the newest charges to return, 1 to 1000 (default 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// `GET /charges`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChargeList {
    /// Oldest first.
    pub items: Vec<Charge>,
}

/// The newest charges (up to `limit`), oldest first; for operators and tests.
#[utoipa::path(get, path = "/charges", tag = "charges", params(ListParams), responses(
    (status = 200, body = ChargeList),
    (status = 422, body = ErrorBody, description = "`limit` is out of range")))]
pub async fn list_charges(
    State(psp): State<Psp>,
    Query(params): Query<ListParams>,
) -> Result<Json<ChargeList>> {
    psp.simulate_latency().await;
    let limit = params.limit.unwrap_or(MAX_LIST_LIMIT);
    let mut v = Validator::new();
    v.check(
        (1..=MAX_LIST_LIMIT).contains(&limit),
        "limit",
        "must be between 1 and 1000",
    );
    v.finish()?;
    let items = psp.ledger.newest(limit as usize).await;
    Ok(Json(ChargeList { items }))
}
