use std::collections::HashSet;

use serde_json::{Value, json};

use crate::helpers::{SERVICE_CLIENT, error_code, spawn_app};

#[tokio::test]
async fn a_customer_is_refused_on_the_user_and_admin_routes() {
    let app = spawn_app().await;
    let me = app.register("cust@example.com", "customer-pass").await;
    let token = me["accessToken"].as_str().unwrap();
    let id = me["user"]["id"].as_str().unwrap();
    let h = &app.http;
    for request in [
        h.get(app.url(&format!("/users/{id}"))),
        h.get(app.url("/users?email=cust@example.com")),
        h.get(app.url("/users")),
        h.patch(app.url(&format!("/users/{id}")))
            .json(&json!({"role": "ADMIN"})),
        h.delete(app.url(&format!("/users/{id}"))),
    ] {
        let response =
            test_support::Reply::read(request.bearer_auth(token).send().await.unwrap()).await;
        assert_eq!(response.status, 403);
        assert_eq!(error_code(&response), "forbidden");
    }
    let role: String = sqlx::query_scalar("SELECT role::text FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(role, "CUSTOMER", "nothing changed");
}

#[tokio::test]
async fn a_service_credential_looks_users_up_by_id_and_email() {
    let app = spawn_app().await;
    let user = app.register("Lookup@Example.com", "lookup-pass").await;
    let id = user["user"]["id"].as_str().unwrap();
    let service = app.service_token().await;

    let by_id = app.get_as(&format!("/users/{id}"), &service).await;
    assert_eq!(by_id.status, 200);
    let by_id: Value = by_id.body.clone();
    assert_eq!(by_id, user["user"]);

    let by_email: Value = app
        .get_as("/users?email=lookup@example.com", &service)
        .await
        .body;
    assert_eq!(by_email["id"], id);

    assert_eq!(
        app.get_as("/users/00000000-0000-0000-0000-000000000000", &service)
            .await
            .status,
        404
    );
    assert_eq!(
        app.get_as("/users?email=ghost@example.com", &service)
            .await
            .status,
        404
    );
    let patch = app
        .http
        .patch(app.url(&format!("/users/{id}")))
        .bearer_auth(&service)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    let patch = test_support::Reply::read(patch).await;
    assert_eq!(patch.status, 403, "services only read");
    let me = app.get_as("/auth/me", &service).await;
    assert_eq!(me.status, 403);
}

#[tokio::test]
async fn service_credentials_need_the_configured_secret() {
    let app = spawn_app().await;
    for (client, secret) in [
        (SERVICE_CLIENT, "wrong-secret-0123456789"),
        ("unknown-service", "whatever-secret-123"),
    ] {
        let response = app
            .post(
                "/auth/service-token",
                &json!({"clientId": client, "clientSecret": secret}),
            )
            .await;
        assert_eq!(response.status, 401);
    }
    let token = app.service_token().await;
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["role"], "SERVICE");
    assert_eq!(claims["sub"], format!("service:{SERVICE_CLIENT}"));
}

#[tokio::test]
async fn an_admin_pages_through_users_with_a_cursor_and_a_role_filter() {
    let app = spawn_app().await;
    for i in 0..5 {
        app.register(&format!("page{i}@example.com"), "paging-pass")
            .await;
    }
    app.post("/auth/register", &json!({"email": "vend@example.com", "password": "vendor-pass", "name": "V", "role": "VENDOR"})).await;
    let admin = app.admin_token().await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/users?limit=2&cursor={c}"),
            None => "/users?limit=2".to_string(),
        };
        let page: Value = app.get_as(&path, &admin).await.body.clone();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|u| u["id"].as_str().unwrap().to_string()));
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "5 customers, 1 vendor, the admin");
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        7,
        "no duplicates"
    );
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "stable order");

    let vendors: Value = app.get_as("/users?role=VENDOR", &admin).await.body;
    assert_eq!(vendors["items"].as_array().unwrap().len(), 1);
    assert_eq!(vendors["items"][0]["email"], "vend@example.com");

    for bad in [
        "/users?limit=0",
        "/users?limit=101",
        "/users?cursor=%%%",
        "/users?role=KING",
        "/users?limit=abc",
    ] {
        let response = app.get_as(bad, &admin).await;
        assert_eq!(response.status, 422, "{bad}");
        assert_eq!(error_code(&response), "validation_failed");
    }
}

#[tokio::test]
async fn an_admin_updates_a_user_and_an_event_is_recorded() {
    let app = spawn_app().await;
    let user = app.register("edit@example.com", "edit-password").await;
    let id = user["user"]["id"].as_str().unwrap();
    let admin = app.admin_token().await;
    let patch = |body: Value| {
        app.http
            .patch(app.url(&format!("/users/{id}")))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };

    let response = patch(json!({"name": "Edited Name", "role": "VENDOR", "emailVerified": true}))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (
            body["name"].as_str(),
            body["role"].as_str(),
            body["emailVerified"].as_bool()
        ),
        (Some("Edited Name"), Some("VENDOR"), Some(true))
    );
    let events = app.outbox("user.updated").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["role"], "VENDOR");

    assert_eq!(patch(json!({})).await.unwrap().status(), 422);
    assert_eq!(patch(json!({"name": ""})).await.unwrap().status(), 422);
    assert_eq!(
        patch(json!({"email": "new@example.com"}))
            .await
            .unwrap()
            .status(),
        422,
        "unknown fields are refused"
    );
    let missing = app
        .http
        .patch(app.url("/users/nope"))
        .bearer_auth(&admin)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    let missing = test_support::Reply::read(missing).await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn an_admin_deletes_a_user_with_their_sessions() {
    let app = spawn_app().await;
    let user = app.register("gone@example.com", "gone-password").await;
    let id = user["user"]["id"].as_str().unwrap();
    let admin = app.admin_token().await;
    let response = app
        .http
        .delete(app.url(&format!("/users/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    let response = test_support::Reply::read(response).await;
    assert_eq!(response.status, 204);
    assert_eq!(
        app.get_as(&format!("/users/{id}"), &admin).await.status,
        404
    );
    let response = app
        .post(
            "/auth/refresh",
            &json!({"refreshToken": user["refreshToken"]}),
        )
        .await;
    assert_eq!(response.status, 401);
    assert_eq!(
        app.outbox("user.deleted").await,
        vec![json!({"userId": id})]
    );
    let again = app
        .http
        .delete(app.url(&format!("/users/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    let again = test_support::Reply::read(again).await;
    assert_eq!(again.status, 404);
}

/// Lookups by id are batched while others are in flight (`platform::coalesce`): under a burst
/// every request still gets its own user (or 404), duplicates and unknown ids included, and a
/// lookup made after a change sees it.
#[tokio::test]
async fn concurrent_lookups_by_id_each_get_their_own_user() {
    let app = spawn_app().await;
    let mut users = Vec::new();
    for n in 0..6 {
        let user = app
            .register(&format!("burst{n}@example.com"), "burst-pass")
            .await;
        users.push(user["user"].clone());
    }
    let service = app.service_token().await;
    let ids: Vec<String> = (0..240)
        .map(|i| match i % 8 {
            7 => format!("no-such-user-{i}"),
            n => users[n % users.len()]["id"].as_str().unwrap().to_string(),
        })
        .collect();
    let replies = futures_util::future::join_all(ids.iter().map(|id| {
        app.http
            .get(app.url(&format!("/users/{id}")))
            .bearer_auth(&service)
            .send()
    }))
    .await;
    for (id, reply) in ids.iter().zip(replies) {
        let reply = test_support::Reply::read(reply.unwrap()).await;
        match users.iter().find(|u| u["id"] == id.as_str()) {
            Some(user) => {
                assert_eq!(reply.status, 200, "{id}");
                assert_eq!(&reply.body, user, "{id} got another user");
            }
            None => {
                assert_eq!(reply.status, 404, "{id}");
                assert_eq!(error_code(&reply), "not_found");
            }
        }
    }
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    let figure = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains("lookup=\"users_by_id\""))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{metrics}"))
            .parse()
            .unwrap()
    };
    let (keys, statements) = (
        figure("db_lookup_batch_size_sum"),
        figure("db_lookup_batch_size_count"),
    );
    assert!(
        keys > statements,
        "no two lookups went together: {keys} keys in {statements} statements"
    );

    let first = users[0]["id"].as_str().unwrap();
    sqlx::query("UPDATE users SET name = 'Renamed' WHERE id = $1")
        .bind(first)
        .execute(&app.pool)
        .await
        .unwrap();
    let after = app.get_as(&format!("/users/{first}"), &service).await;
    assert_eq!(
        after.body["name"], "Renamed",
        "a lookup after a change sees it"
    );
}
