//! The authorization matrix, with the real processes: every route each service publishes in its
//! `/openapi.json`, called with every kind of credential (none, expired, tampered, unsigned,
//! HMAC-signed with the public key, wrong issuer or audience, a key auth does not publish, and
//! the real CUSTOMER, VENDOR, another user, ADMIN and service tokens), answers exactly the status
//! the table below gives, every status in that table is one the route documents, and nobody but
//! the owner and an ADMIN is shown the owner's data.
//!
//! Auth signs with a key this test generates (`AUTH_JWT_PRIVATE_KEY`), so the test can sign tokens
//! with any claims it likes. Requests are side-effect-light: GETs, bodies refused by validation,
//! or targets that do not exist.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::Ed25519KeyPair;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use e2e::{Platform, ServiceProcess};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};
use test_support::{Api, Reply, TestDb, eventually};

const PAYMENTS_SECRET: &str = "authz-payments-secret-0123";
const ADMIN_SECRET: &str = "authz-admin-secret-0123456";
const PROBE_SECRET: &str = "authz-probe-secret-0123456";
const ADMIN_EMAIL: &str = "root@authz.test";
const PASSWORD: &str = "a-long-password";

/// The credentials every route is called with. The forged ones all claim to be an ADMIN, so that
/// one accepted by mistake would open every door.
const BAD: [&str; 10] = [
    "no token",
    "expired",
    "tampered signature",
    "alg none",
    "HS256 with the public key",
    "HS256 with the JWK's x",
    "wrong issuer",
    "wrong audience",
    "unknown kid",
    "another key under auth's kid",
];
/// Real tokens: the owner of the resources in the paths (a CUSTOMER), a VENDOR, another CUSTOMER,
/// an ADMIN and a service credential.
const GOOD: [&str; 5] = ["owner", "vendor", "other", "admin", "service"];

/// One row of the matrix: a route, the concrete request, and the status per identity.
struct Row {
    service: &'static str,
    method: &'static str,
    /// The path as the OpenAPI document names it.
    route: &'static str,
    /// The path requested (parameters filled, query added).
    path: String,
    body: Option<Value>,
    /// For every bad credential (401 on a protected route).
    bad: u16,
    /// owner, vendor, other, admin, service.
    good: [u16; 5],
}

fn row(
    service: &'static str,
    method: &'static str,
    route: &'static str,
    path: impl Into<String>,
    body: Option<Value>,
    bad: u16,
    good: [u16; 5],
) -> Row {
    Row {
        service,
        method,
        route,
        path: path.into(),
        body,
        bad,
        good,
    }
}

/// What every service has: open to anyone, whatever the token.
fn system_rows(service: &'static str) -> Vec<Row> {
    ["/health", "/ready", "/metrics"]
        .into_iter()
        .map(|p| row(service, "GET", p, p, None, 200, [200; 5]))
        .collect()
}

/// The owner's resources and the ids the table fills paths with.
struct Fixture {
    owner_id: String,
    owner_email: String,
    payment_id: String,
}

fn matrix(f: &Fixture) -> Vec<Row> {
    let (a, p) = (&f.owner_id, &f.payment_id);
    let missing = uuid::Uuid::new_v4();
    let mut rows = Vec::new();
    for service in ["auth", "payments", "admin", "profile"] {
        rows.extend(system_rows(service));
    }
    #[rustfmt::skip]
    rows.extend([
        // auth: public routes answer the same to everybody (an empty body is refused).
        row("auth", "GET", "/.well-known/jwks.json", "/.well-known/jwks.json", None, 200, [200; 5]),
        row("auth", "POST", "/auth/register", "/auth/register", Some(json!({})), 422, [422; 5]),
        row("auth", "POST", "/auth/login", "/auth/login", Some(json!({})), 422, [422; 5]),
        row("auth", "POST", "/auth/refresh", "/auth/refresh", Some(json!({})), 422, [422; 5]),
        row("auth", "POST", "/auth/logout", "/auth/logout", Some(json!({})), 422, [422; 5]),
        row("auth", "POST", "/auth/service-token", "/auth/service-token", Some(json!({})), 422, [422; 5]),
        // auth: the caller's own user; a service credential has none.
        row("auth", "GET", "/auth/me", "/auth/me", None, 401, [200, 200, 200, 200, 403]),
        // auth: the directory, for ADMINs and services; administration for ADMINs only.
        row("auth", "GET", "/users/{id}", format!("/users/{a}"), None, 401, [403, 403, 403, 200, 200]),
        row("auth", "GET", "/users", format!("/users?email={}", f.owner_email), None, 401, [403, 403, 403, 200, 200]),
        row("auth", "PATCH", "/users/{id}", format!("/users/{missing}"), Some(json!({"name": "Nobody"})), 401, [403, 403, 403, 404, 403]),
        row("auth", "DELETE", "/users/{id}", format!("/users/{missing}"), None, 401, [403, 403, 403, 404, 403]),
        // payments: to an unknown recipient nothing is written; a service pays nobody.
        row("payments", "POST", "/payments", "/payments",
            Some(json!({"recipientEmail": "nobody@authz.test", "amount": "1.00", "type": "instant"})),
            401, [404, 404, 404, 404, 403]),
        // The owner's completed payment: only its parties and ADMINs see it, only its sender
        // may cancel it (and a completed payment cannot be).
        row("payments", "POST", "/payments/{id}/cancel", format!("/payments/{p}/cancel"), None, 401, [409, 404, 404, 403, 403]),
        row("payments", "GET", "/payments/{id}", format!("/payments/{p}"), None, 401, [200, 404, 404, 200, 404]),
        row("payments", "GET", "/payments/{id}/transactions", format!("/payments/{p}/transactions"), None, 401, [200, 404, 404, 200, 404]),
        row("payments", "GET", "/payments", "/payments", None, 401, [200, 200, 200, 200, 403]),
        // The provider's webhook is signed, not bearer-authenticated: unsigned is 401 for all.
        row("payments", "POST", "/psp/webhooks", "/psp/webhooks", Some(json!({})), 401, [401; 5]),
        // admin: ADMINs only.
        row("admin", "GET", "/admin/audit-logs", "/admin/audit-logs?limit=5", None, 401, [403, 403, 403, 200, 403]),
        row("admin", "GET", "/admin/audit-logs/{id}", format!("/admin/audit-logs/{missing}"), None, 401, [403, 403, 403, 404, 403]),
        row("admin", "GET", "/admin/audit-logs/export", "/admin/audit-logs/export?format=ndjson", None, 401, [403, 403, 403, 200, 403]),
        row("admin", "GET", "/admin/audit-logs/verify", "/admin/audit-logs/verify", None, 401, [403, 403, 403, 200, 403]),
        row("admin", "GET", "/admin/config", "/admin/config", None, 401, [403, 403, 403, 200, 403]),
        row("admin", "GET", "/admin/config/{key}", "/admin/config/authz.missing", None, 401, [403, 403, 403, 404, 403]),
        row("admin", "PUT", "/admin/config/{key}", "/admin/config/authz.missing", Some(json!([])), 401, [403, 403, 403, 422, 403]),
        row("admin", "DELETE", "/admin/config/{key}", "/admin/config/authz.missing", None, 401, [403, 403, 403, 404, 403]),
        // profile: the caller's own profile (a service has none); another's is the owner's or
        // an ADMIN's, to anyone else it does not exist.
        row("profile", "GET", "/profile/me", "/profile/me", None, 401, [200, 200, 200, 200, 403]),
        row("profile", "PUT", "/profile/me", "/profile/me", Some(json!({})), 401, [200, 200, 200, 200, 403]),
        row("profile", "PATCH", "/profile/me", "/profile/me", Some(json!({})), 401, [200, 200, 200, 200, 403]),
        row("profile", "GET", "/profiles/{userId}", format!("/profiles/{a}"), None, 401, [200, 404, 404, 200, 404]),
        row("profile", "GET", "/profiles", "/profiles", None, 401, [403, 403, 403, 200, 403]),
    ]);
    rows
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn pkcs8() -> Vec<u8> {
    Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .unwrap()
        .as_ref()
        .to_vec()
}

fn pem(der: &[u8]) -> String {
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(der)
    )
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The bad credentials, in the order of [`BAD`], each claiming to be `admin` (id and email),
/// then a control: the same claims signed rightly.
fn forged(
    der: &[u8],
    kid: &str,
    x: &str,
    valid_admin_token: &str,
    admin: &(String, String),
) -> Vec<Option<String>> {
    let claims = |iss: &str, aud: &str, exp: i64| {
        json!({
            "sub": admin.0, "email": admin.1, "role": "ADMIN", "iss": iss, "aud": aud,
            "exp": exp, "iat": now() - 5, "jti": uuid::Uuid::new_v4().to_string(),
        })
    };
    let good = claims("mfe-auth", "mfe-platform", now() + 600);
    let key = EncodingKey::from_ed_der(der);
    let stranger = EncodingKey::from_ed_der(&pkcs8());
    let public = URL_SAFE_NO_PAD.decode(x).unwrap();
    let tampered = {
        let (head, signature) = valid_admin_token.rsplit_once('.').unwrap();
        let mut signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        signature[10] ^= 0x01;
        format!("{head}.{}", b64(&signature))
    };
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(good.to_string().as_bytes())
    );
    vec![
        None,
        Some(sign(
            Algorithm::EdDSA,
            Some(kid),
            &claims("mfe-auth", "mfe-platform", now() - 120),
            &key,
        )),
        Some(tampered),
        Some(none),
        Some(sign(
            Algorithm::HS256,
            Some(kid),
            &good,
            &EncodingKey::from_secret(&public),
        )),
        Some(sign(
            Algorithm::HS256,
            Some(kid),
            &good,
            &EncodingKey::from_secret(x.as_bytes()),
        )),
        Some(sign(
            Algorithm::EdDSA,
            Some(kid),
            &claims("someone-else", "mfe-platform", now() + 600),
            &key,
        )),
        Some(sign(
            Algorithm::EdDSA,
            Some(kid),
            &claims("mfe-auth", "another-platform", now() + 600),
            &key,
        )),
        Some(sign(
            Algorithm::EdDSA,
            Some("unknown-kid"),
            &good,
            &stranger,
        )),
        Some(sign(Algorithm::EdDSA, Some(kid), &good, &stranger)),
        // The control, last: the same claims rightly signed are an ADMIN's.
        Some(sign(Algorithm::EdDSA, Some(kid), &good, &key)),
    ]
}

async fn login(auth: &Api, email: &str, password: &str) -> (String, String) {
    let reply = auth
        .post(
            "/auth/login",
            None,
            &json!({"email": email, "password": password}),
        )
        .await;
    assert_eq!(reply.status, 200, "{email}: {}", reply.body);
    (
        reply.body["accessToken"].as_str().unwrap().to_string(),
        reply.body["user"]["id"].as_str().unwrap().to_string(),
    )
}

async fn register(auth: &Api, email: &str, name: &str, role: Option<&str>) -> String {
    let mut body = json!({"email": email, "password": PASSWORD, "name": name});
    if let Some(role) = role {
        body["role"] = json!(role);
    }
    let reply = auth.post("/auth/register", None, &body).await;
    assert_eq!(reply.status, 201, "{email}: {}", reply.body);
    reply.body["user"]["id"].as_str().unwrap().to_string()
}

/// (method, path) of every operation in a service's OpenAPI document, and their documented
/// statuses.
async fn documented(api: &Api) -> Vec<(String, String, BTreeSet<u16>)> {
    let doc = api.get("/openapi.json", None).await;
    assert_eq!(doc.status, 200, "{}", doc.text);
    let mut ops = Vec::new();
    for (path, item) in doc.body["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Some(responses) = op["responses"].as_object() else {
                continue;
            };
            let statuses = responses.keys().filter_map(|s| s.parse().ok()).collect();
            ops.push((method.to_uppercase(), path.clone(), statuses));
        }
    }
    ops
}

#[tokio::test]
async fn every_route_answers_every_credential_as_documented() {
    let platform = Platform::new();
    let (payments_db, admin_db) = (TestDb::unborn(), TestDb::unborn());
    let der = pkcs8();
    let mut auth_env = platform.auth_env();
    auth_env.extend([
        ("AUTH_JWT_PRIVATE_KEY".to_string(), pem(&der)),
        (
            "AUTH_SERVICE_CLIENTS".into(),
            format!(
                "payments-service={PAYMENTS_SECRET},admin-service={ADMIN_SECRET},authz-probe={PROBE_SECRET}"
            ),
        ),
        ("AUTH_BOOTSTRAP_ADMIN_EMAIL".into(), ADMIN_EMAIL.into()),
        ("AUTH_BOOTSTRAP_ADMIN_PASSWORD".into(), PASSWORD.into()),
    ]);
    let auth = ServiceProcess::start("auth-service", &auth_env);
    let mut admin_env = platform.broker.env("admin-service");
    admin_env.extend([
        ("ADMIN_DATABASE_URL".to_string(), admin_db.url.clone()),
        ("AUTH_SERVICE_URL".into(), auth.base.clone()),
        ("ADMIN_AUTH_CLIENT_SECRET".into(), ADMIN_SECRET.into()),
    ]);
    let admin = ServiceProcess::start("admin-service", &admin_env);
    admin.wait_ready(Duration::from_secs(15)).await;
    let profile = platform.start_profile(&auth);
    let psp_port = e2e::free_port();
    let _sandbox = e2e::start_sandbox(psp_port, None, &[("PSP_SANDBOX_LATENCY_MS", "0")]);
    let mut payments_env = platform.broker.env("payments-service");
    payments_env.extend([
        ("PAYMENTS_DATABASE_URL".to_string(), payments_db.url.clone()),
        ("AUTH_SERVICE_URL".into(), auth.base.clone()),
        ("PAYMENTS_AUTH_CLIENT_SECRET".into(), PAYMENTS_SECRET.into()),
        ("PSP_WEBHOOK_SECRET".into(), e2e::WEBHOOK_SECRET.into()),
        ("PSP_URL".into(), format!("http://127.0.0.1:{psp_port}")),
    ]);
    let payments = ServiceProcess::start("payments-service", &payments_env);
    for service in [&auth, &profile, &payments] {
        service.wait_ready(Duration::from_secs(15)).await;
    }
    let apis = [
        ("auth", Api::new(auth.base.clone())),
        ("payments", Api::new(payments.base.clone())),
        ("admin", Api::new(admin.base.clone())),
        ("profile", Api::new(profile.base.clone())),
    ];
    let api = |name: &str| &apis.iter().find(|(n, _)| *n == name).unwrap().1;
    let auth_api = api("auth");

    // The people: the owner of the resources, a VENDOR, another customer, the bootstrap ADMIN.
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let owner_name = format!("Owner {tag}");
    let owner_email = format!("owner-{tag}@authz.test");
    register(auth_api, &owner_email, &owner_name, None).await;
    register(
        auth_api,
        &format!("vendor-{tag}@authz.test"),
        "Vendor",
        Some("VENDOR"),
    )
    .await;
    register(auth_api, &format!("other-{tag}@authz.test"), "Other", None).await;
    let (owner_token, owner_id) = login(auth_api, &owner_email, PASSWORD).await;
    let (vendor_token, _) = login(auth_api, &format!("vendor-{tag}@authz.test"), PASSWORD).await;
    let (other_token, _) = login(auth_api, &format!("other-{tag}@authz.test"), PASSWORD).await;
    let (admin_token, admin_id) = login(auth_api, ADMIN_EMAIL, PASSWORD).await;
    let me = auth_api.get("/auth/me", Some(&vendor_token)).await;
    assert_eq!(me.body["role"], "VENDOR", "{}", me.body);
    let service = auth_api
        .post(
            "/auth/service-token",
            None,
            &json!({"clientId": "authz-probe", "clientSecret": PROBE_SECRET}),
        )
        .await;
    assert_eq!(service.status, 200, "{}", service.body);
    let service_token = service.body["accessToken"].as_str().unwrap().to_string();

    // The owner's resources: a profile and a completed payment (to the ADMIN, so that neither
    // the VENDOR nor the other customer is one of its parties).
    let profile_api = api("profile");
    let mine = profile_api.get("/profile/me", Some(&owner_token)).await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    let patched = profile_api
        .call(
            Method::PATCH,
            "/profile/me",
            Some(&owner_token),
            Some(&json!({"bio": format!("bio of {tag}")})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let payments_api = api("payments");
    let paid = payments_api
        .post(
            "/payments",
            Some(&owner_token),
            &json!({"recipientEmail": ADMIN_EMAIL, "amount": "7.31", "type": "instant"}),
        )
        .await;
    assert!(paid.status == 201 || paid.status == 202, "{}", paid.body);
    let payment_id = paid.body["id"].as_str().unwrap().to_string();
    let completed = eventually(Duration::from_secs(15), || async {
        let reply = payments_api
            .get(&format!("/payments/{payment_id}"), Some(&owner_token))
            .await;
        (reply.body["status"] == "completed").then_some(())
    })
    .await;
    assert!(completed.is_some(), "the owner's payment completes");

    // The credentials.
    let jwks = auth_api.get("/.well-known/jwks.json", None).await;
    let (kid, x) = (
        jwks.body["keys"][0]["kid"].as_str().unwrap().to_string(),
        jwks.body["keys"][0]["x"].as_str().unwrap().to_string(),
    );
    let admin_email = me_email(auth_api, &admin_token).await;
    let mut forgeries = forged(&der, &kid, &x, &admin_token, &(admin_id, admin_email));
    let control = forgeries.pop().flatten().unwrap();
    let config = api("admin").get("/admin/config", Some(&control)).await;
    assert_eq!(
        config.status, 200,
        "the control forgery is an ADMIN's: {}",
        config.body
    );
    let mut identities: Vec<(&str, Option<String>)> = BAD.into_iter().zip(forgeries).collect();
    identities.extend(GOOD.into_iter().zip([
        Some(owner_token),
        Some(vendor_token),
        Some(other_token),
        Some(admin_token),
        Some(service_token),
    ]));

    let fixture = Fixture {
        owner_id: owner_id.clone(),
        owner_email: owner_email.clone(),
        payment_id: payment_id.clone(),
    };
    let rows = matrix(&fixture);

    // The table covers exactly the routes the services publish, and asks only documented
    // statuses of them.
    let mut failures = Vec::new();
    for (service, service_api) in &apis {
        let ops = documented(service_api).await;
        let published: BTreeSet<(String, String)> =
            ops.iter().map(|(m, p, _)| (m.clone(), p.clone())).collect();
        let tabled: BTreeSet<(String, String)> = rows
            .iter()
            .filter(|r| r.service == *service)
            .map(|r| (r.method.to_string(), r.route.to_string()))
            .collect();
        assert_eq!(
            published, tabled,
            "{service}: the routes published vs the table"
        );
        for r in rows.iter().filter(|r| r.service == *service) {
            let (_, _, statuses) = ops
                .iter()
                .find(|(m, p, _)| m == r.method && p == r.route)
                .unwrap();
            for status in std::iter::once(r.bad).chain(r.good) {
                if !statuses.contains(&status) {
                    failures.push(format!(
                        "{service} {} {}: {status} is not documented ({statuses:?})",
                        r.method, r.route
                    ));
                }
            }
        }
    }

    // Every cell.
    let bio = format!("bio of {tag}");
    let secrets = [owner_email.as_str(), owner_name.as_str(), bio.as_str()];
    let mut cells = 0;
    for r in &rows {
        let service_api = api(r.service);
        for (i, (who, token)) in identities.iter().enumerate() {
            let expected = if i < BAD.len() {
                r.bad
            } else {
                r.good[i - BAD.len()]
            };
            if r.route == "/ready" {
                // Readiness is not the token's business, but a broker reconnect may make it
                // flicker: each cell asks once the service says it is ready to nobody.
                let ready = eventually(Duration::from_secs(10), || async {
                    (service_api.get("/ready", None).await.status == 200).then_some(())
                })
                .await;
                assert!(ready.is_some(), "{} is not ready", r.service);
            }
            let method = Method::from_bytes(r.method.as_bytes()).unwrap();
            let reply = service_api
                .call(method, &r.path, token.as_deref(), r.body.as_ref())
                .await;
            cells += 1;
            check(r, who, expected, &reply, &secrets, &fixture, &mut failures);
        }
    }
    // The token is checked before the body: a bad one is 401 even with a body of the wrong shape.
    for r in rows
        .iter()
        .filter(|r| r.bad == 401 && r.body.is_some() && r.route != "/psp/webhooks")
    {
        let service_api = api(r.service);
        for (who, token) in &identities[..BAD.len()] {
            let method = Method::from_bytes(r.method.as_bytes()).unwrap();
            let reply = service_api
                .call(method, &r.path, token.as_deref(), Some(&json!([])))
                .await;
            cells += 1;
            let who = format!("{who} (body of the wrong shape)");
            check(r, &who, 401, &reply, &secrets, &fixture, &mut failures);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cells} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

async fn me_email(auth: &Api, token: &str) -> String {
    let me = auth.get("/auth/me", Some(token)).await;
    me.body["email"].as_str().unwrap().to_string()
}

fn check(
    r: &Row,
    who: &str,
    expected: u16,
    reply: &Reply,
    secrets: &[&str],
    f: &Fixture,
    failures: &mut Vec<String>,
) {
    let cell = format!("{} {} {} as {who}", r.service, r.method, r.path);
    if reply.status.as_u16() != expected {
        failures.push(format!(
            "{cell}: {} instead of {expected}: {}",
            reply.status,
            reply.text.chars().take(200).collect::<String>()
        ));
        return;
    }
    if expected >= 400
        && r.route != "/psp/webhooks"
        && reply.body["error"]["code"].as_str().is_none()
    {
        failures.push(format!(
            "{cell}: not the platform's error body: {}",
            reply.text
        ));
    }
    // Only the owner and an ADMIN may see the owner's data, and services the user directory.
    let directory = who == "service" && r.route.starts_with("/users");
    if who == "owner" || who == "admin" || directory || r.route == "/metrics" {
        return;
    }
    for secret in secrets {
        if reply.text.contains(secret) {
            failures.push(format!(
                "{cell}: shows the owner's {secret:?}: {}",
                reply.text
            ));
        }
    }
    if reply.status.is_success()
        && (reply.text.contains(&f.owner_id) || reply.text.contains(&f.payment_id))
    {
        failures.push(format!("{cell}: shows the owner's ids: {}", reply.text));
    }
}
