//! `/admin/config`: the system configuration, read and written under ETags.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use platform::pagination::PageRequest;
use platform::{ErrorBody, Json, Query};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::PageParams;
use crate::AppState;
use crate::access::Admin;
use crate::configuration::{self, Condition, Written};
use crate::error::{AdminError, Result};
use crate::store::system_config as store;
use crate::views::{ConfigEntryView, ConfigPage};

/// The body of `PUT /admin/config/{key}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigWrite {
    /// Any JSON value (`null` included), at most 64 KiB.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = serde_json::Value, required = true)]
    pub value: Option<Box<RawValue>>,
    /// At most 1000 characters.
    #[schema(max_length = 1000)]
    pub description: Option<String>,
}

/// A field that is present is `Some`, even when it is `null`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

fn condition(headers: &HeaderMap, name: header::HeaderName) -> Result<Option<Condition>> {
    match headers.get(&name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|v| Some(Condition::parse(v)))
            .map_err(|_| {
                AdminError::from(platform::ApiError::bad_request(format!(
                    "{name} is not a list of entity tags"
                )))
            }),
    }
}

fn with_etag(status: StatusCode, entry: ConfigEntryView) -> Response {
    let etag = HeaderValue::from_str(&entry.etag).ok();
    let mut response = (status, Json(entry)).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// Every entry, by key, a page at a time.
#[utoipa::path(get, path = "/admin/config", tag = "config", security(("bearer" = [])),
    params(PageParams), responses(
    (status = 200, body = ConfigPage),
    (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody, description = "not an ADMIN"),
    (status = 422, body = ErrorBody, description = "a bad limit or cursor")))]
pub async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    Query(page): Query<PageParams>,
) -> Result<Json<ConfigPage>> {
    let page = PageRequest::parse(page.limit, page.cursor.as_deref())?;
    let mut conn = state.pool.acquire().await?;
    let mut rows = store::list(&mut conn, page.after.as_deref(), page.fetch()).await?;
    let next_cursor = page.finish(&mut rows, |row| row.key.as_str());
    Ok(Json(ConfigPage {
        items: rows.into_iter().map(ConfigEntryView::from).collect(),
        next_cursor,
    }))
}

/// One entry, with its `ETag`.
#[utoipa::path(get, path = "/admin/config/{key}", tag = "config", security(("bearer" = [])),
    params(("key" = String, Path, pattern = "^[a-z0-9_.-]{1,128}$", description = "[a-z0-9_.-], at most 128 characters")),
    responses(
    (status = 200, body = ConfigEntryView, headers(("ETag" = String))),
    (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody, description = "not an ADMIN"),
    (status = 404, body = ErrorBody),
    (status = 422, body = ErrorBody, description = "a bad key")))]
pub async fn get(
    State(state): State<AppState>,
    _admin: Admin,
    Path(key): Path<String>,
) -> Result<Response> {
    configuration::check_key(&key)?;
    let mut conn = state.pool.acquire().await?;
    let row = store::get(&mut conn, &key, false)
        .await?
        .ok_or(AdminError::NotFound("Config key"))?;
    Ok(with_etag(StatusCode::OK, row.into()))
}

/// Creates (201) or replaces (200) an entry. Replacing needs `If-Match` with the ETag read
/// (428 without it, 412 when the entry changed since); `If-None-Match: *` creates only.
#[utoipa::path(put, path = "/admin/config/{key}", tag = "config", security(("bearer" = [])),
    params(
        ("key" = String, Path, pattern = "^[a-z0-9_.-]{1,128}$", description = "[a-z0-9_.-], at most 128 characters"),
        ("If-Match" = Option<String>, Header, description = "The ETag read, or *"),
        ("If-None-Match" = Option<String>, Header, description = "* to create only")),
    request_body = ConfigWrite, responses(
    (status = 200, body = ConfigEntryView, headers(("ETag" = String))),
    (status = 201, body = ConfigEntryView, headers(("ETag" = String))),
    (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody, description = "not an ADMIN"),
    (status = 412, body = ErrorBody, description = "precondition_failed: the entry changed"),
    (status = 422, body = ErrorBody, description = "a bad key, value or description"),
    (status = 428, body = ErrorBody, description = "precondition_required: the key exists")))]
pub async fn put(
    State(state): State<AppState>,
    admin: Admin,
    Path(key): Path<String>,
    headers: HeaderMap,
    Json(body): Json<ConfigWrite>,
) -> Result<Response> {
    configuration::check_key(&key)?;
    let entry = configuration::check_entry(body.value, body.description)?;
    let if_match = condition(&headers, header::IF_MATCH)?;
    let if_none_match = condition(&headers, header::IF_NONE_MATCH)?;
    let (written, row) =
        configuration::put(&state, admin.id(), &key, entry, if_match, if_none_match).await?;
    let status = match written {
        Written::Created => StatusCode::CREATED,
        Written::Updated => StatusCode::OK,
    };
    Ok(with_etag(status, row.into()))
}

/// Deletes an entry; with `If-Match`, only if it is still the one read (412 otherwise).
#[utoipa::path(delete, path = "/admin/config/{key}", tag = "config", security(("bearer" = [])),
    params(
        ("key" = String, Path, pattern = "^[a-z0-9_.-]{1,128}$", description = "[a-z0-9_.-], at most 128 characters"),
        ("If-Match" = Option<String>, Header, description = "The ETag read, or *")),
    responses(
    (status = 204, description = "deleted"),
    (status = 400, body = ErrorBody, description = "`If-Match` is not a list of entity tags"),
    (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody, description = "not an ADMIN"),
    (status = 404, body = ErrorBody),
    (status = 412, body = ErrorBody, description = "precondition_failed: the entry changed"),
    (status = 422, body = ErrorBody, description = "a bad key")))]
pub async fn delete(
    State(state): State<AppState>,
    admin: Admin,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode> {
    configuration::check_key(&key)?;
    let if_match = condition(&headers, header::IF_MATCH)?;
    configuration::delete(&state, admin.id(), &key, if_match).await?;
    Ok(StatusCode::NO_CONTENT)
}
