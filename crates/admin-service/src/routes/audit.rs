//! `/admin/audit-logs`: the list, one entry, the export and the chain's verification.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use platform::pagination::PageRequest;
use platform::{ErrorBody, Json, Query};
use serde::Deserialize;
use utoipa::IntoParams;

use super::PageParams;
use crate::AppState;
use crate::access::Admin;
use crate::audit::chain::{self, Verification};
use crate::audit::export::{self, Format};
use crate::audit::query::{self, Filters};
use crate::error::Result;
use crate::views::{AuditLogDetail, AuditLogPage};

/// The audit log, newest first, a page at a time. Pages are keyset scans: rows written while a
/// client pages through never make it skip or repeat one.
#[utoipa::path(get, path = "/admin/audit-logs", tag = "audit", security(("bearer" = [])),
    params(Filters, PageParams), responses(
    (status = 200, body = AuditLogPage),
    (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody, description = "not an ADMIN"),
    (status = 422, body = ErrorBody, description = "a bad filter, limit or cursor")))]
pub async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    Query(filters): Query<Filters>,
    Query(page): Query<PageParams>,
) -> Result<Json<AuditLogPage>> {
    let page = PageRequest::parse(page.limit, page.cursor.as_deref())?;
    let filter = filters.check()?;
    let (items, next_cursor) = query::page(&state, &filter, &page).await?;
    Ok(Json(AuditLogPage { items, next_cursor }))
}

/// One entry, with its user's current id, name and email from auth (`user` is null when the
/// entry has no user, auth no longer knows them, or auth cannot be asked: see `userLookup`).
#[utoipa::path(get, path = "/admin/audit-logs/{id}", tag = "audit", security(("bearer" = [])),
    params(("id" = String, Path, description = "The entry's id")), responses(
    (status = 200, body = AuditLogDetail),
    (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody, description = "not an ADMIN"),
    (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<AuditLogDetail>> {
    Ok(Json(query::detail(&state, &id).await?))
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `csv` (RFC 4180, formulas neutralised) or `ndjson` (one entry per line).
    #[param(inline)]
    pub format: Format,
}

/// Every entry matching the filters, newest first, streamed: memory stays flat whatever the
/// size of the log.
#[utoipa::path(get, path = "/admin/audit-logs/export", tag = "audit", security(("bearer" = [])),
    params(ExportParams, Filters), responses(
    (status = 200, content((String = "text/csv"), (String = "application/x-ndjson")), description = "CSV with a header row, or NDJSON"),
    (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody, description = "not an ADMIN"),
    (status = 422, body = ErrorBody, description = "a bad format or filter"),
    (status = 503, body = ErrorBody, description = "as many exports as ADMIN_EXPORTS_AT_ONCE run already; see Retry-After")))]
pub async fn export(
    State(state): State<AppState>,
    _admin: Admin,
    Query(params): Query<ExportParams>,
    Query(filters): Query<Filters>,
) -> Result<Response> {
    let filter = filters.check()?;
    let Ok(turn) = state.exports.clone().try_acquire_owned() else {
        return Err(platform::ApiError::busy(
            "as many exports as allowed are running; retry shortly",
            5,
        )
        .into());
    };
    // The turn goes with the stream: released when the transfer ends, however it ends.
    let rows = export::stream(state.pool.clone(), filter, params.format);
    let body = Body::from_stream(futures_util::StreamExt::map(rows, move |chunk| {
        let _turn = &turn;
        chunk
    }));
    let disposition = format!(
        "attachment; filename=\"audit-logs.{}\"",
        params.format.extension()
    );
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(params.format.content_type()),
    );
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// Recomputes the hash chain over the whole log and names the first entry changed, deleted or
/// inserted out of band. 200 either way: `valid` says which.
#[utoipa::path(get, path = "/admin/audit-logs/verify", tag = "audit", security(("bearer" = [])),
    responses(
    (status = 200, body = Verification),
    (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody, description = "not an ADMIN")))]
pub async fn verify(State(state): State<AppState>, _admin: Admin) -> Result<Json<Verification>> {
    Ok(Json(chain::verify(&state.pool).await?))
}
