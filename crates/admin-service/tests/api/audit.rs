//! Every event becomes one audit row with the right fields.

use contracts::events::{
    PAYMENT_CREATED, PAYMENT_STATUS_CHANGED, PROFILE_UPDATED, PaymentCreated, PaymentStatusChanged,
    ProfileUpdated,
};
use serde_json::json;

use crate::helpers::{email, event, spawn};

#[tokio::test]
async fn events_of_auth_profile_and_payments_become_audit_rows_with_their_fields() {
    let admin = spawn().await;
    let token = admin.admin_token().await;
    let alice_email = email("alice");
    let alice = admin.auth.register(&alice_email).await;

    // auth's own events, from the real service.
    let registered = admin
        .wait_for_rows(
            &token,
            &format!("action=user.registered&userId={}", alice.id),
            1,
        )
        .await;
    let row = &registered[0];
    assert_eq!(row["resourceType"], "user");
    assert_eq!(row["resourceId"], alice.id);
    assert_eq!(row["details"]["email"], alice_email);
    assert_eq!(row["details"]["userName"], "Test User");

    let login = admin
        .auth
        .api
        .http
        .post(admin.auth.api.url("/auth/login"))
        .header("user-agent", "AuditTest/1.0")
        .json(&json!({"email": alice_email, "password": test_support::auth::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let logins = admin
        .wait_for_rows(
            &token,
            &format!("action=user.logged_in&userId={}", alice.id),
            1,
        )
        .await;
    assert_eq!(logins[0]["ipAddress"], "127.0.0.1");
    assert_eq!(logins[0]["userAgent"], "AuditTest/1.0");

    // profile's and payments' events, as their relays publish them.
    let profile = event(
        PROFILE_UPDATED,
        "profile-service",
        serde_json::to_value(ProfileUpdated {
            user_id: alice.id.clone(),
            profile_id: "profile-1".into(),
            changed_fields: vec!["bio".into()],
        })
        .unwrap(),
    );
    admin.broker.publish(&profile).await;
    let row = admin.wait_for_event(&token, &profile).await;
    assert_eq!(row["action"], "profile.updated");
    assert_eq!(row["userId"], alice.id);
    assert_eq!(row["resourceType"], "user_profile");
    assert_eq!(row["resourceId"], "profile-1");
    assert_eq!(row["details"]["changedFields"], json!(["bio"]));
    assert_eq!(
        row["details"]["userName"], "Test User",
        "the name is looked up in auth"
    );
    assert_eq!(
        row["user"]["email"], alice_email,
        "the detail adds the user as auth has them"
    );
    assert_eq!(row["userLookup"], "found");

    let created = event(
        PAYMENT_CREATED,
        "payments-service",
        serde_json::to_value(PaymentCreated {
            payment_id: "pay-1".into(),
            sender_id: alice.id.clone(),
            recipient_id: Some("bob".into()),
            amount: "12.34".into(),
            currency: "USD".into(),
            payment_type: "instant".into(),
            status: "pending".into(),
            parent_payment_id: None,
        })
        .unwrap(),
    );
    let completed = event(
        PAYMENT_STATUS_CHANGED,
        "payments-service",
        serde_json::to_value(PaymentStatusChanged {
            payment_id: "pay-1".into(),
            sender_id: alice.id.clone(),
            recipient_id: Some("bob".into()),
            amount: "12.34".into(),
            currency: "USD".into(),
            from: "processing".into(),
            to: "completed".into(),
            reason: None,
            actor_id: None,
        })
        .unwrap(),
    );
    // Rows are ordered by when it happened (milliseconds): a second apart, the order is certain.
    let mut completed = completed;
    completed.occurred_at = created.occurred_at + chrono::Duration::seconds(1);
    admin.broker.publish(&created).await;
    admin.broker.publish(&completed).await;
    // The same event again, as a relay that crashed before marking it sent publishes it.
    admin.broker.publish(&created).await;
    let marker = event("test.marker", "test", json!({}));
    admin.broker.publish(&marker).await;
    admin.wait_for_event(&token, &marker).await;

    let trail = admin
        .wait_for_rows(&token, "resourceType=payment&resourceId=pay-1", 2)
        .await;
    let actions: Vec<&str> = trail
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["payment.status_changed", "payment.created"],
        "one row per event, newest first; the redelivery made none"
    );
    for row in &trail {
        assert_eq!(row["userId"], alice.id);
        assert_eq!(row["details"]["amount"], "12.34");
    }
    assert_eq!(
        trail[1]["id"],
        created.id.to_string(),
        "the row's id is the event's"
    );
}

#[tokio::test]
async fn with_auth_down_events_are_still_audited_and_the_name_is_null() {
    let admin = spawn().await;
    let token = admin.admin_token().await;
    // Auth's keys are fetched while auth is up; the token stays valid after.
    assert_eq!(admin.get("/admin/config", &token).await.status, 200);
    let user = admin.user("carol").await;
    admin.auth.stop().await;

    let profile = event(
        PROFILE_UPDATED,
        "profile-service",
        json!({"userId": user.id, "profileId": "profile-2", "changedFields": ["avatarUrl"]}),
    );
    admin.broker.publish(&profile).await;
    let row = admin.wait_for_event(&token, &profile).await;
    assert_eq!(row["userId"], user.id);
    assert_eq!(row["details"]["userName"], serde_json::Value::Null);
    assert_eq!(row["user"], serde_json::Value::Null);
    assert_eq!(
        row["userLookup"], "unavailable",
        "the entry is served without its user"
    );
}

#[tokio::test]
async fn an_event_of_a_type_admin_does_not_know_is_audited_by_the_conventions() {
    let admin = spawn().await;
    let token = admin.admin_token().await;
    let invoice = event(
        "invoice.sent",
        "billing-service",
        json!({"invoiceId": "inv-7", "actorId": "someone", "ipAddress": "198.51.100.4"}),
    );
    admin.broker.publish(&invoice).await;
    let row = admin.wait_for_event(&token, &invoice).await;
    assert_eq!(row["resourceType"], "invoice");
    assert_eq!(row["resourceId"], "inv-7");
    assert_eq!(row["userId"], "someone");
    assert_eq!(row["ipAddress"], "198.51.100.4");
    assert_eq!(row["userLookup"], "not_found");
}

/// Every filter the API offers reads a deep page as an index range that starts at its cursor
/// (the cursor is in the index condition), never every matching row sorted again (which made
/// each page, and each batch of an export, cost all of them).
#[tokio::test]
async fn a_deep_page_of_every_filter_is_an_index_range_from_its_cursor() {
    use admin_service::store::audit_logs::{ActionFilter, Filter, explain_list};
    let admin = spawn().await;
    sqlx::raw_sql(
        "INSERT INTO audit_logs (id, user_id, action, resource_type, resource_id, details, created_at)
         SELECT 'plan-' || n, 'user-' || (n % 500), 'act.' || (n % 8), 'kind-' || (n % 5),
                'res-' || (n % 700), jsonb_build_object('n', n), now() - n * interval '1 second'
         FROM generate_series(1, 60000) n;
         ANALYZE audit_logs;",
    )
    .execute(&admin.pool)
    .await
    .unwrap();
    let deep: (chrono::NaiveDateTime, String) = sqlx::query_as(
        "SELECT created_at, id FROM audit_logs ORDER BY created_at DESC, id DESC OFFSET 50000 LIMIT 1",
    )
    .fetch_one(&admin.pool)
    .await
    .unwrap();
    let now = chrono::Utc::now().naive_utc();
    let filters = [
        ("none", Filter::default()),
        (
            "userId",
            Filter {
                user_id: Some("user-7".into()),
                ..Filter::default()
            },
        ),
        (
            "action",
            Filter {
                action: Some(ActionFilter::Exact("act.3".into())),
                ..Filter::default()
            },
        ),
        (
            "action prefix",
            Filter {
                action: Some(ActionFilter::Prefix("act.".into())),
                ..Filter::default()
            },
        ),
        (
            "resourceType",
            Filter {
                resource_type: Some("kind-2".into()),
                ..Filter::default()
            },
        ),
        (
            "resourceId",
            Filter {
                resource_id: Some("res-9".into()),
                ..Filter::default()
            },
        ),
        (
            "from/to",
            Filter {
                from: Some(now - chrono::Duration::hours(20)),
                to: Some(now - chrono::Duration::hours(1)),
                ..Filter::default()
            },
        ),
        (
            "q",
            Filter {
                q: Some("\"n\"".into()),
                ..Filter::default()
            },
        ),
    ];
    let mut conn = admin.pool.acquire().await.unwrap();
    for (name, filter) in filters {
        let plan = explain_list(&mut conn, &filter, Some(&deep), 21)
            .await
            .unwrap();
        // The cursor bounds the index read: the page starts there, whatever its depth.
        let from_cursor = plan
            .lines()
            .any(|l| l.contains("Index Cond:") && l.contains("created_at"));
        assert!(
            from_cursor,
            "{name}: a deep page must be an index range from its cursor:\n{plan}"
        );
    }
}
