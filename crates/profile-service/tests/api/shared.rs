//! Profile in the shared topology, where the legacy key `user_profiles.user_id -> users` stays:
//! a user missing from `users` gets a clear 404 and a skipped registration, never a 500 or a
//! dead letter.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use test_support::auth::TestUser;
use test_support::eventually;

use crate::helpers::{TestPlatform, error_of, spawn_shared_platform};

/// Puts `user` in the legacy `users` table, as auth on the shared database would have.
async fn add_legacy_user(platform: &TestPlatform, user: &TestUser) {
    sqlx::query(
        "INSERT INTO users (id, email, password_hash, name, role, updated_at)
         VALUES ($1, $2, 'x', 'Shared', 'CUSTOMER', now())",
    )
    .bind(&user.id)
    .bind(&user.email)
    .execute(&platform.pool)
    .await
    .unwrap();
}

/// Whether profile has applied auth's `user.registered` of `user` (the event's id is its outbox
/// row's).
async fn registration_applied(platform: &TestPlatform, user: &TestUser) -> bool {
    let auth = platform.auth.db.pool().await;
    let event_id: uuid::Uuid = sqlx::query_scalar(
        "SELECT id FROM auth.outbox WHERE event_type = 'user.registered' AND payload->>'userId' = $1",
    )
    .bind(&user.id)
    .fetch_one(&auth)
    .await
    .unwrap();
    auth.close().await;
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM profile.processed_events WHERE event_id = $1)")
        .bind(event_id)
        .fetch_one(&platform.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn in_the_shared_topology_a_user_missing_from_users_gets_no_profile_and_a_404() {
    let platform = spawn_shared_platform().await;
    // Auth knows her (its own database), the legacy `users` does not: as if deleted meanwhile.
    let gone = platform.register("gone@example.com").await;

    // Her registration is applied as a no-op: not retried, not dead-lettered.
    eventually(Duration::from_secs(10), || async {
        registration_applied(&platform, &gone).await.then_some(())
    })
    .await
    .expect("her registration is applied");
    assert_eq!(platform.profile_count(&gone.id).await, 0);
    let dlq = format!("{}.dlq", platform.broker.queue_for("profile-service"));
    assert_eq!(platform.broker.depth(&dlq).await, 0);

    let me = platform.get("/profile/me", &gone.token).await;
    assert_eq!(me.status, 404, "{}", me.body);
    assert_eq!(error_of(&me)["message"], "User not found");
    let put = platform
        .send(
            Method::PUT,
            "/profile/me",
            &gone.token,
            &json!({"bio": "hi"}),
        )
        .await;
    assert_eq!(put.status, 404, "{}", put.body);
    assert_eq!(error_of(&put)["code"], "not_found");
    assert_eq!(platform.profile_count(&gone.id).await, 0);

    // Once in `users`, her profile is made on first use.
    add_legacy_user(&platform, &gone).await;
    let me = platform.get("/profile/me", &gone.token).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["userId"], gone.id.as_str());
}

#[tokio::test]
async fn in_the_shared_topology_a_registration_makes_the_profile_in_the_legacy_table() {
    let platform = spawn_shared_platform().await;
    let user = platform.register("present@example.com").await;
    add_legacy_user(&platform, &user).await;
    // Published again, as a redelivery after the row arrived would be: a new event id.
    let again = events::Envelope {
        id: uuid::Uuid::new_v4(),
        event_type: "user.registered".into(),
        source: "auth-service".into(),
        occurred_at: chrono::Utc::now(),
        data: json!({"userId": user.id, "email": user.email, "name": "Shared", "role": "CUSTOMER"}),
    };
    platform.broker.publish(&again).await;
    platform
        .wait_for_profiles(&user.id, 1, Duration::from_secs(10))
        .await
        .expect("the default profile is created in user_profiles");
    let edited = platform
        .send(
            Method::PATCH,
            "/profile/me",
            &user.token,
            &json!({"phone": "+4915112345678"}),
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    assert_eq!(edited.body["phone"], "+4915112345678");
}
