use contracts::auth::AccessClaims;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

async fn refresh(app: &TestApp, token: &Value) -> test_support::Reply {
    app.post("/auth/refresh", &json!({"refreshToken": token}))
        .await
}

#[tokio::test]
async fn refresh_rotates_and_the_old_token_stops_working() {
    let app = spawn_app().await;
    let first = app.register("rot@example.com", "rotate-pass").await;
    let response = refresh(&app, &first["refreshToken"]).await;
    assert_eq!(response.status, 200);
    let second: Value = response.body.clone();
    assert_ne!(second["refreshToken"], first["refreshToken"]);
    assert_eq!(second["user"]["id"], first["user"]["id"]);
    assert_eq!(
        app.get_as("/auth/me", second["accessToken"].as_str().unwrap())
            .await
            .status,
        200
    );
    assert_eq!(
        refresh(&app, &second["refreshToken"]).await.status,
        200,
        "the new one works"
    );
}

#[tokio::test]
async fn reusing_a_rotated_token_revokes_every_session_of_the_user() {
    let app = spawn_app().await;
    let a = app.register("reuse@example.com", "reuse-pass").await;
    let other_session: Value = app.login("reuse@example.com", "reuse-pass").await.body;
    let b: Value = refresh(&app, &a["refreshToken"]).await.body;

    let replay = refresh(&app, &a["refreshToken"]).await;
    assert_eq!(replay.status, 401);
    assert_eq!(
        refresh(&app, &b["refreshToken"]).await.status,
        401,
        "the rotated-to token is revoked"
    );
    assert_eq!(
        refresh(&app, &other_session["refreshToken"]).await.status,
        401,
        "other sessions too"
    );
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM refresh_tokens WHERE user_id = $1")
        .bind(a["user"]["id"].as_str().unwrap())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(live, 0);
}

#[tokio::test]
async fn logout_revokes_the_refresh_token() {
    let app = spawn_app().await;
    let s = app.register("out@example.com", "logout-pass").await;
    let response = app
        .post("/auth/logout", &json!({"refreshToken": s["refreshToken"]}))
        .await;
    assert_eq!(response.status, 204);
    assert_eq!(refresh(&app, &s["refreshToken"]).await.status, 401);
    let again = app
        .post("/auth/logout", &json!({"refreshToken": s["refreshToken"]}))
        .await;
    assert_eq!(again.status, 204, "idempotent");
}

#[tokio::test]
async fn refresh_tokens_are_stored_only_as_sha256() {
    let app = spawn_app().await;
    let s = app.register("store@example.com", "store-pass").await;
    let raw = s["refreshToken"].as_str().unwrap();
    let stored: Vec<String> = sqlx::query_scalar("SELECT token FROM refresh_tokens")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(stored[0].starts_with("sha256:") && stored[0].len() == 7 + 64);
    assert!(!stored[0].contains(raw));
    // The stored value itself is not a usable token.
    assert_eq!(refresh(&app, &json!(stored[0])).await.status, 401);
}

#[tokio::test]
async fn a_legacy_raw_token_is_accepted_once_and_rotated_into_the_hashed_form() {
    let app = spawn_app().await;
    let user = app
        .insert_legacy_user("rawtok@example.com", "raw-pass-123")
        .await;
    let raw = "legacy-poc2-refresh-token-eyJhbGciOi.abc";
    sqlx::query(
        "INSERT INTO refresh_tokens (id, user_id, token, expires_at) VALUES ($1, $2, $3, now() + interval '1 day')",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(&user)
    .bind(raw)
    .execute(&app.pool)
    .await
    .unwrap();
    let response = refresh(&app, &json!(raw)).await;
    assert_eq!(response.status, 200);
    let stored: Vec<String> = sqlx::query_scalar("SELECT token FROM refresh_tokens")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(stored[0].starts_with("sha256:"), "no raw token left");
    assert_eq!(
        refresh(&app, &json!(raw)).await.status,
        401,
        "accepted once"
    );
}

#[tokio::test]
async fn an_expired_refresh_token_is_refused() {
    let app = spawn_app().await;
    let s = app.register("exp@example.com", "expire-pass").await;
    sqlx::query("UPDATE refresh_tokens SET expires_at = now() - interval '1 minute'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(refresh(&app, &s["refreshToken"]).await.status, 401);
}

#[tokio::test]
async fn access_tokens_verify_with_the_published_jwks() {
    let app = spawn_app().await;
    let s = app.register("jwks@example.com", "jwks-pass-1").await;
    let token = s["accessToken"].as_str().unwrap();
    let jwks = app.get("/.well-known/jwks.json").await.body;
    let key = &jwks["keys"][0];
    assert_eq!(
        (
            key["kty"].as_str(),
            key["crv"].as_str(),
            key["alg"].as_str()
        ),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
    );

    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.kid.as_deref(), key["kid"].as_str());

    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&["mfe-auth"]);
    validation.set_audience(&["mfe-platform"]);
    let decoding = DecodingKey::from_ed_components(key["x"].as_str().unwrap()).unwrap();
    let claims = jsonwebtoken::decode::<AccessClaims>(token, &decoding, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims.sub, s["user"]["id"].as_str().unwrap());
    assert_eq!(claims.email.as_deref(), Some("jwks@example.com"));
    assert_eq!(claims.role, "CUSTOMER");
    assert_eq!(claims.exp - claims.iat, 900);
    assert!(!claims.jti.is_empty());
}

fn forge(app: &TestApp, edit: impl FnOnce(&mut AccessClaims)) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut claims = AccessClaims {
        sub: "someone".into(),
        email: None,
        role: "ADMIN".into(),
        iss: "mfe-auth".into(),
        aud: "mfe-platform".into(),
        exp: now + 600,
        iat: now,
        jti: "j".into(),
    };
    edit(&mut claims);
    let key = EncodingKey::from_ed_pem(app.key_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &key).unwrap()
}

#[tokio::test]
async fn expired_tampered_or_foreign_access_tokens_are_refused() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    assert_eq!(app.get_as("/users", &admin).await.status, 200);

    let now = chrono::Utc::now().timestamp();
    for bad in [
        forge(&app, |c| c.exp = now - 120),
        forge(&app, |c| c.aud = "someone-else".into()),
        forge(&app, |c| c.iss = "evil".into()),
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &json!({"sub": "x", "role": "ADMIN", "iss": "mfe-auth", "aud": "mfe-platform", "exp": now + 600}), &EncodingKey::from_secret(b"guess")).unwrap(),
        format!("{}x", &admin[..admin.len() - 1]),
        "not-a-jwt".to_string(),
    ] {
        let response = app.get_as("/users", &bad).await;
        assert_eq!(response.status, 401, "accepted a bad token");
        assert_eq!(response.headers["www-authenticate"], "Bearer");
    }
    assert_eq!(
        app.http
            .get(app.url("/users"))
            .send()
            .await
            .unwrap()
            .status(),
        401,
        "no token"
    );
}
