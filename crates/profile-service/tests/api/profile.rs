//! The profile API: lazy creation, validation, access rules, events.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{error_of, spawn_platform};

#[tokio::test]
async fn registering_through_auth_creates_the_default_profile_within_two_seconds() {
    let platform = spawn_platform().await;
    let user = platform.register("new@example.com").await;
    let took = platform
        .wait_for_profiles(&user.id, 1, Duration::from_secs(2))
        .await;
    assert!(took.is_some(), "no profile 2 s after registration");

    let me = platform.get("/profile/me", &user.token).await;
    assert_eq!(me.status, 200);
    let body: Value = me.body.clone();
    assert_eq!(body["userId"], user.id.as_str());
    for field in ["avatarUrl", "phone", "address", "bio", "preferences"] {
        assert_eq!(body[field], Value::Null, "{field} starts empty");
    }
}

#[tokio::test]
async fn a_missing_profile_is_created_on_first_access() {
    let platform = spawn_platform().await;
    let user = platform.register("lazy@example.com").await;
    platform
        .wait_for_profiles(&user.id, 1, Duration::from_secs(5))
        .await
        .expect("default profile");
    sqlx::query("DELETE FROM user_profiles WHERE user_id = $1")
        .bind(&user.id)
        .execute(&platform.pool)
        .await
        .unwrap();

    let me = platform.get("/profile/me", &user.token).await;
    assert_eq!(me.status, 200);
    assert_eq!(platform.profile_count(&user.id).await, 1);
}

#[tokio::test]
async fn a_user_deleted_in_auth_loses_the_profile_and_gets_no_new_one() {
    let platform = spawn_platform().await;
    let user = platform.register("gone@example.com").await;
    platform
        .wait_for_profiles(&user.id, 1, Duration::from_secs(5))
        .await
        .expect("default profile");
    let admin = platform.admin().await;
    let deleted = platform
        .auth
        .api
        .call(
            Method::DELETE,
            &format!("/users/{}", user.id),
            Some(&admin.token),
            None,
        )
        .await;
    assert!(deleted.status.is_success(), "{}", deleted.status);
    platform
        .wait_for_profiles(&user.id, 0, Duration::from_secs(5))
        .await
        .expect("user.deleted removes the profile");

    // The access token is still valid for a while; auth says the user is gone.
    let me = platform.get("/profile/me", &user.token).await;
    assert_eq!(me.status, 404);
    assert_eq!(platform.profile_count(&user.id).await, 0);
}

#[tokio::test]
async fn put_replaces_and_patch_changes_only_what_it_names() {
    let platform = spawn_platform().await;
    let user = platform.register("edit@example.com").await;
    let full = json!({
        "avatarUrl": "https://cdn.example.com/a.png",
        "phone": "+4915112345678",
        "address": "Straße 1, 10115 Berlin",
        "bio": "Hello 👋",
        "preferences": {"theme": "dark", "nested": {"n": [1, null]}},
    });
    let put = platform
        .send(Method::PUT, "/profile/me", &user.token, &full)
        .await;
    assert_eq!(put.status, 200);
    let body: Value = put.body.clone();
    for (field, value) in full.as_object().unwrap() {
        assert_eq!(&body[field], value, "{field}");
    }

    let patch = platform
        .send(
            Method::PATCH,
            "/profile/me",
            &user.token,
            &json!({"bio": null, "phone": "+12025550123"}),
        )
        .await;
    assert_eq!(patch.status, 200);
    let body: Value = patch.body.clone();
    assert_eq!(body["bio"], Value::Null, "null clears");
    assert_eq!(body["phone"], "+12025550123");
    assert_eq!(body["address"], full["address"], "absent fields stay");

    let put = platform
        .send(
            Method::PUT,
            "/profile/me",
            &user.token,
            &json!({"bio": "only this"}),
        )
        .await;
    let body: Value = put.body.clone();
    assert_eq!(body["bio"], "only this");
    assert_eq!(body["address"], Value::Null, "PUT leaves out nothing");
    assert_eq!(body["preferences"], Value::Null);
    assert_eq!(platform.profile_count(&user.id).await, 1);
}

#[tokio::test]
async fn invalid_fields_get_422_naming_each_field_and_change_nothing() {
    let platform = spawn_platform().await;
    let user = platform.register("rules@example.com").await;
    let cases = [
        ("avatarUrl", json!("ftp://example.com/a.png")),
        ("avatarUrl", json!("not a url")),
        (
            "avatarUrl",
            json!(format!("https://example.com/{}", "a".repeat(2040))),
        ),
        ("phone", json!("015112345678")),
        ("phone", json!("+49 151 1234")),
        ("phone", json!("+1234567890123456")),
        ("address", json!("a".repeat(501))),
        ("bio", json!("b".repeat(1001))),
        ("preferences", json!([1, 2])),
        ("preferences", json!("dark")),
        ("preferences", json!({"blob": "x".repeat(16 * 1024)})),
    ];
    for (field, value) in cases {
        for method in [Method::PUT, Method::PATCH] {
            let response = platform
                .send(
                    method.clone(),
                    "/profile/me",
                    &user.token,
                    &json!({field: value}),
                )
                .await;
            assert_eq!(response.status, 422, "{method} {field} = {value}");
            let error = error_of(&response);
            assert_eq!(error["fields"][0]["field"], field, "{error}");
        }
    }
    let limits = json!({
        "avatarUrl": format!("https://example.com/{}", "a".repeat(2048 - 20)),
        "address": "a".repeat(500),
        "bio": "é".repeat(1000),
        "phone": "+123456789012345",
    });
    let ok = platform
        .send(Method::PUT, "/profile/me", &user.token, &limits)
        .await;
    assert_eq!(ok.status, 200, "the limits themselves are allowed");

    let several = platform
        .send(
            Method::PATCH,
            "/profile/me",
            &user.token,
            &json!({"phone": "x", "bio": "b".repeat(1001)}),
        )
        .await;
    let error = error_of(&several);
    assert_eq!(error["fields"].as_array().unwrap().len(), 2, "{error}");

    let unknown = platform
        .send(
            Method::PATCH,
            "/profile/me",
            &user.token,
            &json!({"avatarURL": "https://x.example"}),
        )
        .await;
    assert_eq!(unknown.status, 422);
    assert!(error_of(&unknown).to_string().contains("avatarURL"));

    let me: Value = platform.get("/profile/me", &user.token).await.body;
    assert_eq!(me["bio"], "é".repeat(1000), "refused edits changed nothing");
}

#[tokio::test]
async fn a_profile_is_visible_to_its_owner_and_admins_only() {
    let platform = spawn_platform().await;
    let owner = platform.register("owner@example.com").await;
    let other = platform.register("other@example.com").await;
    let admin = platform.admin().await;
    platform.get("/profile/me", &owner.token).await;
    let path = format!("/profiles/{}", owner.id);

    assert_eq!(platform.get(&path, &owner.token).await.status, 200);
    assert_eq!(platform.get(&path, &admin.token).await.status, 200);
    let denied = platform.get(&path, &other.token).await;
    assert_eq!(denied.status, 404, "another user cannot tell it exists");
    assert_eq!(error_of(&denied)["code"], "not_found");
    assert_eq!(
        platform
            .get("/profiles/no-such-user", &admin.token)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn requests_without_a_valid_token_get_401() {
    let platform = spawn_platform().await;
    let none = platform.profile.get("/profile/me", None).await;
    assert_eq!(none.status, 401);
    assert_eq!(error_of(&none)["code"], "unauthorized");
    let forged = platform
        .get("/profile/me", "eyJhbGciOiJFZERTQSJ9.e30.c2ln")
        .await;
    assert_eq!(forged.status, 401);
}

#[tokio::test]
async fn an_edit_publishes_profile_updated_with_the_changed_fields() {
    let platform = spawn_platform().await;
    let user = platform.register("pub@example.com").await;
    let mut watcher = platform.broker.watch(&["profile.updated"]).await;
    let patch = platform
        .send(
            Method::PATCH,
            "/profile/me",
            &user.token,
            &json!({"bio": "new", "phone": "+12025550123"}),
        )
        .await;
    assert_eq!(patch.status, 200);
    let event = watcher
        .next(Duration::from_secs(5))
        .await
        .expect("profile.updated published");
    assert_eq!(event.source, "profile-service");
    assert_eq!(event.data["userId"], user.id.as_str());
    assert_eq!(event.data["changedFields"], json!(["phone", "bio"]));
    assert!(
        !event.data.to_string().contains("+12025550123"),
        "no values in the event"
    );
}

#[tokio::test]
async fn admins_page_through_every_profile_once() {
    let platform = spawn_platform().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let user = platform.register(&format!("page{i}@example.com")).await;
        platform
            .wait_for_profiles(&user.id, 1, Duration::from_secs(5))
            .await
            .expect("default profile");
        ids.push(user.id);
    }
    let admin = platform.admin().await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/profiles?limit=2&cursor={c}"),
            None => "/profiles?limit=2".to_string(),
        };
        let page: Value = platform.get(&path, &admin.token).await.body;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|p| p["userId"].as_str().unwrap().to_string()),
        );
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    for id in &ids {
        assert_eq!(
            seen.iter().filter(|s| *s == id).count(),
            1,
            "{id} listed once"
        );
    }

    let customer = platform.register("nosy@example.com").await;
    assert_eq!(platform.get("/profiles", &customer.token).await.status, 403);
    for bad in [
        "/profiles?limit=0",
        "/profiles?limit=101",
        "/profiles?cursor=%21%21",
    ] {
        let response = platform.get(bad, &admin.token).await;
        assert_eq!(response.status, 422, "{bad}");
    }
}

// Found by scripts/schemathesis.sh: serde fills a struct from a JSON array by position, so
// `[null, null]` cleared the avatar and the phone (200).
#[tokio::test]
async fn a_json_array_body_is_422_not_fields_by_position() {
    let platform = spawn_platform().await;
    let user = platform.register("array@example.com").await;
    let set = platform
        .send(
            Method::PATCH,
            "/profile/me",
            &user.token,
            &json!({"phone": "+14155550100"}),
        )
        .await;
    assert_eq!(set.status, 200);
    for method in [Method::PUT, Method::PATCH] {
        let reply = platform
            .send(
                method.clone(),
                "/profile/me",
                &user.token,
                &json!([null, null]),
            )
            .await;
        assert_eq!(reply.status, 422, "{method}");
        assert_eq!(error_of(&reply)["fields"][0]["field"], "body");
    }
    let me = platform.get("/profile/me", &user.token).await;
    assert_eq!(me.body["phone"], "+14155550100", "nothing was cleared");
}
