//! The public half of the signing key, for every service that verifies access tokens.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::AppState;
use crate::keys::Jwks;

/// The JSON Web Key Set of the keys that sign access tokens (Ed25519, `kid` = RFC 7638 thumbprint).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", responses((status = 200, body = Jwks)))]
pub async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        axum::Json(state.keys.jwks().clone()),
    )
}
