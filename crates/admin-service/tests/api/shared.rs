//! Admin in the shared topology, where `audit_logs.user_id` keeps its legacy key to `users`
//! (ON DELETE SET NULL): an event whose user is not in `users` is audited all the same, under no
//! user, and the chain verifies.

use serde_json::json;

use crate::helpers::{event, spawn_shared};

#[tokio::test]
async fn in_the_shared_topology_events_of_users_missing_from_users_are_audited_under_no_user() {
    let admin = spawn_shared().await;
    let token = admin.admin_token().await;
    sqlx::query(
        "INSERT INTO users (id, email, password_hash, name, role, updated_at)
         VALUES ('u-present', 'present@example.com', 'x', 'Present', 'CUSTOMER', now())",
    )
    .execute(&admin.pool)
    .await
    .unwrap();

    // auth commits a deletion before its event is audited: the user is gone by then.
    let deleted = event("user.deleted", "auth-service", json!({"userId": "u-gone"}));
    let denied = event(
        "admin.access_denied",
        "admin-service",
        json!({"userId": "service:payments-service", "role": "SERVICE", "route": "/admin/config"}),
    );
    let updated = event(
        "profile.updated",
        "profile-service",
        json!({"userId": "u-present", "profileId": "p-1", "changedFields": ["bio"]}),
    );
    for e in [&deleted, &denied, &updated] {
        admin.broker.publish(e).await;
    }

    let row = admin.wait_for_event(&token, &deleted).await;
    assert_eq!(row["userId"], serde_json::Value::Null, "{row}");
    assert_eq!(row["resourceId"], "u-gone");
    assert_eq!(
        row["details"]["userId"], "u-gone",
        "the id stays in the details"
    );
    let row = admin.wait_for_event(&token, &denied).await;
    assert_eq!(row["userId"], serde_json::Value::Null, "{row}");
    let row = admin.wait_for_event(&token, &updated).await;
    assert_eq!(row["userId"], "u-present", "{row}");

    let dlq = format!("{}.dlq", admin.broker.queue_for("admin-service"));
    assert_eq!(admin.broker.depth(&dlq).await, 0);
    let verified = admin.get("/admin/audit-logs/verify", &token).await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    assert_eq!(verified.body["valid"], true, "{}", verified.body);
    let chained = verified.body["chainedRows"].as_u64().unwrap();
    assert!(chained >= 3, "{}", verified.body);
}
