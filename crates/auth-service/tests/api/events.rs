//! What auth publishes on the event hub, seen from a queue bound to the test's exchange.

use std::time::Duration;

use test_support::eventually;

use crate::helpers::spawn_app;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_registration_is_published_as_an_envelope_and_marked_published() {
    let app = spawn_app().await;
    let mut watcher = app.broker.watch(&["user.registered"]).await;
    let user = app.register("events@example.com", "a-long-password").await;

    // The bootstrap admin's registration may be published after the watcher is bound: skip it.
    let event = loop {
        let event = watcher.next(WAIT).await.expect("user.registered published");
        if event.data["email"] != crate::helpers::ADMIN_EMAIL {
            break event;
        }
    };
    assert_eq!(event.event_type, "user.registered");
    assert_eq!(event.source, "auth-service");
    assert_eq!(event.data["userId"], user["user"]["id"]);
    assert_eq!(event.data["email"], "events@example.com");
    assert_eq!(event.data["role"], "CUSTOMER");

    // The relay marks the row in the transaction it commits after the broker's confirm, which
    // can land just after the watcher saw the message.
    let published = eventually(WAIT, || async {
        let published: Option<bool> =
            sqlx::query_scalar("SELECT published_at IS NOT NULL FROM auth.outbox WHERE id = $1")
                .bind(event.id)
                .fetch_optional(&app.pool)
                .await
                .unwrap();
        (published == Some(true)).then_some(())
    })
    .await;
    assert!(
        published.is_some(),
        "the envelope id is an outbox row's id, marked published after the confirm"
    );
}

#[tokio::test]
async fn logins_are_published_with_address_and_agent_but_never_the_password() {
    let app = spawn_app().await;
    app.register("audit@example.com", "a-long-password").await;
    let mut watcher = app
        .broker
        .watch(&["user.logged_in", "user.login_failed"])
        .await;
    let client = reqwest::Client::builder()
        .user_agent("events-test/1.0")
        .build()
        .unwrap();
    for password in ["a-long-password", "the-wrong-password"] {
        client
            .post(app.url("/auth/login"))
            .json(&serde_json::json!({"email": "audit@example.com", "password": password}))
            .send()
            .await
            .unwrap();
    }
    let events = watcher.drain(Duration::from_secs(2)).await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["user.logged_in", "user.login_failed"]);
    for event in &events {
        assert_eq!(event.data["userAgent"], "events-test/1.0");
        assert_eq!(event.data["ipAddress"], "127.0.0.1");
        let text = event.data.to_string();
        assert!(!text.contains("a-long-password") && !text.contains("the-wrong-password"));
    }
}

#[tokio::test]
async fn readiness_reports_the_broker_connection() {
    let app = spawn_app().await;
    let api = test_support::Api::new(app.base.clone());
    let ready = eventually(WAIT, || async {
        let ready = api.get("/ready", None).await.body;
        (ready["status"] == "ready").then_some(ready)
    })
    .await
    .expect("ready once the relay is connected");
    assert!(ready.to_string().contains("broker"), "{ready}");
}
