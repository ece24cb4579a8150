use std::sync::Arc;
use std::time::Duration;

use auth_client::{InvalidToken, Verifier, VerifyError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

fn invalid(result: Result<contracts::auth::AccessClaims, VerifyError>) -> InvalidToken {
    match result {
        Err(VerifyError::Invalid(reason)) => reason,
        other => panic!("expected an invalid token, got {other:?}"),
    }
}

#[tokio::test]
async fn a_valid_token_is_verified_and_the_keys_are_fetched_once() {
    let server = MockServer::start().await;
    let key = TestKey::new("k1");
    serve_jwks(&server, &[&key], 1).await;
    let verifier = Verifier::new(&server.uri()).unwrap();
    let claims = user_claims("u1", "CUSTOMER");
    let token = key.sign(&claims);

    for _ in 0..3 {
        assert_eq!(verifier.verify(&token).await.unwrap(), claims);
    }
}

#[tokio::test]
async fn building_a_verifier_asks_auth_nothing() {
    let server = MockServer::start().await;
    serve_jwks(&server, &[&TestKey::new("k1")], 0).await;
    let _verifier = Verifier::new(&server.uri()).unwrap();
}

#[tokio::test]
async fn a_token_signed_by_another_key_under_a_known_kid_is_refused() {
    let server = MockServer::start().await;
    let key = TestKey::new("k1");
    serve_jwks(&server, &[&key], 1).await;
    let verifier = Verifier::new(&server.uri()).unwrap();
    let forged = TestKey::new("k1").sign(&user_claims("u1", "ADMIN"));

    assert_eq!(
        invalid(verifier.verify(&forged).await),
        InvalidToken::Signature
    );
}

#[tokio::test]
async fn a_token_whose_claims_were_changed_after_signing_is_refused() {
    let server = MockServer::start().await;
    let key = TestKey::new("k1");
    serve_jwks(&server, &[&key], 1).await;
    let verifier = Verifier::new(&server.uri()).unwrap();
    let token = key.sign(&user_claims("u1", "CUSTOMER"));
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let tampered = user_claims("u1", "ADMIN");
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&tampered).unwrap());

    assert_eq!(
        invalid(verifier.verify(&parts.join(".")).await),
        InvalidToken::Signature
    );
}

#[tokio::test]
async fn an_expired_token_is_refused_but_small_clock_skew_is_tolerated() {
    let server = MockServer::start().await;
    let key = TestKey::new("k1");
    serve_jwks(&server, &[&key], 1).await;
    let verifier = Verifier::new(&server.uri()).unwrap();
    let mut expired = user_claims("u1", "CUSTOMER");
    expired.exp = now() - 120;
    let mut just_expired = user_claims("u1", "CUSTOMER");
    just_expired.exp = now() - 5;

    assert_eq!(
        invalid(verifier.verify(&key.sign(&expired)).await),
        InvalidToken::Expired
    );
    assert!(verifier.verify(&key.sign(&just_expired)).await.is_ok());
}

#[tokio::test]
async fn a_token_for_another_audience_or_from_another_issuer_is_refused() {
    let server = MockServer::start().await;
    let key = TestKey::new("k1");
    serve_jwks(&server, &[&key], 1).await;
    let verifier = Verifier::new(&server.uri()).unwrap();
    let mut other_aud = user_claims("u1", "CUSTOMER");
    other_aud.aud = "another-platform".into();
    let mut other_iss = user_claims("u1", "CUSTOMER");
    other_iss.iss = "someone-else".into();

    assert_eq!(
        invalid(verifier.verify(&key.sign(&other_aud)).await),
        InvalidToken::Audience
    );
    assert_eq!(
        invalid(verifier.verify(&key.sign(&other_iss)).await),
        InvalidToken::Issuer
    );
}

#[tokio::test]
async fn the_expected_issuer_and_audience_are_configurable() {
    let server = MockServer::start().await;
    let key = TestKey::new("k1");
    serve_jwks(&server, &[&key], 1).await;
    let verifier = Verifier::new(&server.uri())
        .unwrap()
        .with_issuer("staging-auth")
        .with_audience("staging");
    let mut claims = user_claims("u1", "CUSTOMER");
    claims.iss = "staging-auth".into();
    claims.aud = "staging".into();

    assert_eq!(verifier.verify(&key.sign(&claims)).await.unwrap(), claims);
    assert_eq!(
        invalid(
            verifier
                .verify(&key.sign(&user_claims("u1", "CUSTOMER")))
                .await
        ),
        InvalidToken::Issuer
    );
}

#[tokio::test]
async fn unsigned_and_hmac_tokens_are_refused_without_asking_auth() {
    let server = MockServer::start().await;
    let key = TestKey::new("k1");
    serve_jwks(&server, &[&key], 0).await;
    let verifier = Verifier::new(&server.uri()).unwrap();
    let claims = user_claims("u1", "ADMIN");
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let none = format!(
        "{}.{body}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k1"}"#)
    );
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some("k1".into());
    // The classic confusion attack: HMAC keyed with the public key's published bytes.
    let public_x = key.jwk()["x"].as_str().unwrap().to_string();
    let hs256 = jsonwebtoken::encode(
        &hs_header,
        &claims,
        &EncodingKey::from_secret(public_x.as_bytes()),
    )
    .unwrap();

    assert!(matches!(
        verifier.verify(&none).await,
        Err(VerifyError::Invalid(_))
    ));
    assert_eq!(
        invalid(verifier.verify(&hs256).await),
        InvalidToken::Algorithm
    );
    for garbage in ["", "not-a-jwt", "a.b.c"] {
        assert_eq!(
            invalid(verifier.verify(garbage).await),
            InvalidToken::Malformed
        );
    }
}

#[tokio::test]
async fn a_token_without_a_kid_is_refused() {
    let server = MockServer::start().await;
    let key = TestKey::new("k1");
    serve_jwks(&server, &[&key], 0).await;
    let verifier = Verifier::new(&server.uri()).unwrap();
    let signed = key.sign(&user_claims("u1", "CUSTOMER"));
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","typ":"JWT"}"#);
    let mut parts: Vec<&str> = signed.split('.').collect();
    parts[0] = &header;

    assert_eq!(
        invalid(verifier.verify(&parts.join(".")).await),
        InvalidToken::UnknownKey
    );
}

#[tokio::test]
async fn a_token_signed_by_a_new_key_is_accepted_after_one_refetch() {
    let server = MockServer::start().await;
    let old = TestKey::new("old");
    let new = TestKey::new("new");
    serve_jwks_once(&server, &[&old]).await;
    serve_jwks(&server, &[&old, &new], 1).await;
    let verifier = Verifier::new(&server.uri())
        .unwrap()
        .with_refetch_interval(Duration::ZERO);
    let claims = user_claims("u1", "CUSTOMER");

    assert!(verifier.verify(&old.sign(&claims)).await.is_ok());
    assert_eq!(verifier.verify(&new.sign(&claims)).await.unwrap(), claims);
    assert_eq!(verifier.verify(&new.sign(&claims)).await.unwrap(), claims);
    assert_eq!(jwks_requests(&server).await, 2);
}

#[tokio::test]
async fn made_up_kids_refetch_at_most_once_per_interval() {
    let server = MockServer::start().await;
    let key = TestKey::new("k1");
    serve_jwks(&server, &[&key], 2).await;
    let interval = SHORT;
    let verifier = Verifier::new(&server.uri())
        .unwrap()
        .with_refetch_interval(interval);
    let claims = user_claims("u1", "CUSTOMER");
    assert!(verifier.verify(&key.sign(&claims)).await.is_ok());

    for i in 0..10 {
        let garbage = key.sign_as(&format!("made-up-{i}"), &claims);
        assert_eq!(
            invalid(verifier.verify(&garbage).await),
            InvalidToken::UnknownKey
        );
    }
    assert_eq!(jwks_requests(&server).await, 1);

    tokio::time::sleep(interval + Duration::from_millis(50)).await;
    for i in 0..10 {
        let garbage = key.sign_as(&format!("later-{i}"), &claims);
        assert_eq!(
            invalid(verifier.verify(&garbage).await),
            InvalidToken::UnknownKey
        );
    }
    assert_eq!(jwks_requests(&server).await, 2);
}

#[tokio::test]
async fn keys_are_refetched_after_their_ttl_and_a_retired_key_stops_working() {
    let server = MockServer::start().await;
    let old = TestKey::new("old");
    let new = TestKey::new("new");
    serve_jwks_once(&server, &[&old]).await;
    serve_jwks(&server, &[&new], 1).await;
    let verifier = Verifier::new(&server.uri())
        .unwrap()
        .with_key_ttl(Duration::ZERO);
    let token = old.sign(&user_claims("u1", "CUSTOMER"));

    assert!(verifier.verify(&token).await.is_ok());
    assert_eq!(
        invalid(verifier.verify(&token).await),
        InvalidToken::UnknownKey
    );
}

#[tokio::test]
async fn without_keys_an_unreachable_auth_is_an_unavailability_not_an_invalid_token() {
    let verifier = Verifier::new(&dead_url()).unwrap();
    let token = TestKey::new("k1").sign(&user_claims("u1", "CUSTOMER"));

    let error = verifier.verify(&token).await.unwrap_err();

    assert!(
        matches!(&error, VerifyError::KeysUnavailable(cause) if cause.contains("jwks.json")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_failing_jwks_endpoint_is_retried_only_after_the_retry_interval() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(JWKS_PATH))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    let key = TestKey::new("k1");
    serve_jwks(&server, &[&key], 1).await;
    let verifier = Verifier::new(&server.uri())
        .unwrap()
        .with_retry_interval(SHORT);
    let token = key.sign(&user_claims("u1", "CUSTOMER"));

    for _ in 0..5 {
        assert!(matches!(
            verifier.verify(&token).await,
            Err(VerifyError::KeysUnavailable(_))
        ));
    }
    assert_eq!(jwks_requests(&server).await, 1);
    tokio::time::sleep(SHORT + Duration::from_millis(50)).await;
    assert!(matches!(
        verifier.verify(&token).await,
        Err(VerifyError::KeysUnavailable(_))
    ));
    tokio::time::sleep(SHORT + Duration::from_millis(50)).await;
    assert!(verifier.verify(&token).await.is_ok());
}

#[tokio::test]
async fn held_keys_keep_working_while_auth_is_down() {
    let server = MockServer::start().await;
    let key = TestKey::new("k1");
    serve_jwks_once(&server, &[&key]).await;
    Mock::given(method("GET"))
        .and(path(JWKS_PATH))
        .respond_with(ResponseTemplate::new(503))
        .expect(1..)
        .mount(&server)
        .await;
    let verifier = Verifier::new(&server.uri())
        .unwrap()
        .with_key_ttl(Duration::ZERO);
    let token = key.sign(&user_claims("u1", "CUSTOMER"));

    assert!(verifier.verify(&token).await.is_ok());
    assert!(verifier.verify(&token).await.is_ok());
    assert!(verifier.verify(&token).await.is_ok());
}

#[tokio::test]
async fn keys_of_unknown_kinds_in_the_set_are_skipped() {
    let server = MockServer::start().await;
    let key = TestKey::new("k1");
    let mut set = jwks(&[&key]);
    set["keys"].as_array_mut().unwrap().extend([
        serde_json::json!({"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB", "alg": "RS256"}),
        serde_json::json!({"kty": "future-kind", "kid": "f"}),
        serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}),
    ]);
    Mock::given(method("GET"))
        .and(path(JWKS_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(set))
        .expect(1)
        .mount(&server)
        .await;
    let verifier = Verifier::new(&server.uri()).unwrap();

    assert!(
        verifier
            .verify(&key.sign(&user_claims("u1", "CUSTOMER")))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn concurrent_first_requests_share_one_fetch() {
    let server = MockServer::start().await;
    let key = TestKey::new("k1");
    Mock::given(method("GET"))
        .and(path(JWKS_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(jwks(&[&key]))
                .set_delay(Duration::from_millis(100)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let verifier = Arc::new(Verifier::new(&server.uri()).unwrap());
    let token = key.sign(&user_claims("u1", "CUSTOMER"));

    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let verifier = verifier.clone();
            let token = token.clone();
            tokio::spawn(async move { verifier.verify(&token).await })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().is_ok());
    }
}

#[tokio::test]
async fn a_remembered_token_is_verified_again_when_its_kid_names_another_key() {
    let server = MockServer::start().await;
    let first = TestKey::new("k1");
    let replaced = TestKey::new("k1");
    serve_jwks_once(&server, &[&first]).await;
    serve_jwks(&server, &[&replaced], 1).await;
    let verifier = Verifier::new(&server.uri())
        .unwrap()
        .with_key_ttl(Duration::ZERO);
    let token = first.sign(&user_claims("u1", "CUSTOMER"));

    assert!(verifier.verify(&token).await.is_ok());
    // Auth now publishes another key under the same kid: what the first key vouched for is over.
    assert_eq!(
        invalid(verifier.verify(&token).await),
        InvalidToken::Signature
    );
}
