//! Every admin route is for ADMINs, and a refused attempt is audited.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{email, spawn};

/// Every route of the admin API.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/admin/audit-logs"),
    ("GET", "/admin/audit-logs/some-id"),
    ("GET", "/admin/audit-logs/export?format=csv"),
    ("GET", "/admin/audit-logs/verify"),
    ("GET", "/admin/config"),
    ("GET", "/admin/config/some.key"),
    ("PUT", "/admin/config/some.key"),
    ("DELETE", "/admin/config/some.key"),
];

#[tokio::test]
async fn every_route_is_for_admins_only() {
    let admin = spawn().await;
    let customer = admin.user("customer").await;
    let vendor_email = email("vendor");
    let vendor = admin
        .auth
        .api
        .post(
            "/auth/register",
            None,
            &json!({"email": vendor_email, "password": test_support::auth::PASSWORD, "name": "V", "role": "VENDOR"}),
        )
        .await;
    assert_eq!(vendor.status, 201, "{}", vendor.body);
    let vendor_token = vendor.body["accessToken"].as_str().unwrap().to_string();
    let service = admin.auth.service_token().await;
    let root = admin.admin_token().await;
    // A byte in the middle of the signature: the last character of base64url may only carry
    // padding bits, and changing it may leave the signature as it was.
    let mut tampered: Vec<char> = customer.token.chars().collect();
    let at = tampered.len() - 10;
    tampered[at] = if tampered[at] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();

    for (method, path) in ROUTES {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let body = (method == Method::PUT).then(|| json!({"value": 1}));
        for (who, token, status) in [
            ("no token", None, 401),
            ("a tampered token", Some(tampered.as_str()), 401),
            ("a CUSTOMER", Some(customer.token.as_str()), 403),
            ("a VENDOR", Some(vendor_token.as_str()), 403),
            ("a service credential", Some(service.as_str()), 403),
        ] {
            let reply = admin
                .api
                .call(method.clone(), path, token, body.as_ref())
                .await;
            assert_eq!(
                reply.status, status,
                "{method} {path} with {who}: {}",
                reply.body
            );
            assert!(
                reply.body["error"]["code"].is_string(),
                "{method} {path}: {}",
                reply.body
            );
        }
        let reply = admin
            .api
            .call(method.clone(), path, Some(&root), body.as_ref())
            .await;
        assert!(
            ![401, 403].contains(&reply.status.as_u16()),
            "{method} {path} as ADMIN: {} {}",
            reply.status,
            reply.body
        );
    }
}

#[tokio::test]
async fn a_refused_attempt_is_audited_with_the_caller_the_route_and_the_address() {
    let admin = spawn().await;
    let customer = admin.user("mallory").await;
    let refused = admin
        .api
        .http
        .put(admin.api.url("/admin/config/payments.max_amount"))
        .bearer_auth(&customer.token)
        .header("user-agent", "Mallory/2.0")
        .json(&json!({"value": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(admin.api.get("/admin/audit-logs", None).await.status, 401);

    let token = admin.admin_token().await;
    let rows = admin
        .wait_for_rows(&token, "action=admin.access_denied", 2)
        .await;
    let by_customer = rows
        .iter()
        .find(|r| r["details"]["status"] == 403)
        .expect("the 403 is audited");
    assert_eq!(by_customer["userId"], customer.id);
    assert_eq!(by_customer["resourceType"], "route");
    assert_eq!(by_customer["resourceId"], "/admin/config/{key}");
    assert_eq!(by_customer["ipAddress"], "127.0.0.1");
    assert_eq!(by_customer["userAgent"], "Mallory/2.0");
    assert_eq!(by_customer["details"]["role"], "CUSTOMER");
    assert_eq!(by_customer["details"]["method"], "PUT");
    assert_eq!(
        by_customer["details"]["path"],
        "/admin/config/payments.max_amount"
    );
    let anonymous = rows
        .iter()
        .find(|r| r["details"]["status"] == 401)
        .expect("the 401 is audited");
    assert_eq!(anonymous["userId"], serde_json::Value::Null);
    assert_eq!(anonymous["resourceId"], "/admin/audit-logs");
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM system_config")
        .fetch_one(&admin.pool)
        .await
        .unwrap();
    assert_eq!(written, 0, "the refused write wrote nothing");
}
