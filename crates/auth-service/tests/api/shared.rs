//! Auth in the shared topology: on the legacy database, whose foreign keys stay, and whose
//! expired refresh tokens it leaves alone unless told otherwise.

use std::time::Duration;

use platform::Topology;
use reqwest::Method;
use sqlx::PgPool;
use test_support::{Api, TestDb, eventually};

use crate::helpers::{error_code, legacy_db, spawn_app_on};

async fn delete_user(base: &str, token: &str, id: &str) -> test_support::Reply {
    Api::new(base)
        .call(Method::DELETE, &format!("/users/{id}"), Some(token), None)
        .await
}

#[tokio::test]
async fn in_the_shared_topology_a_user_who_sent_payments_is_kept_with_a_409() {
    let app = spawn_app_on(legacy_db().await, Topology::Shared, |_| {}).await;
    let alice = app.register("alice@example.com", "alice-password").await;
    let bob = app.register("bob@example.com", "bob-password").await;
    let (alice, bob) = (
        alice["user"]["id"].as_str().unwrap().to_string(),
        bob["user"]["id"].as_str().unwrap().to_string(),
    );
    sqlx::query(
        "INSERT INTO payments (id, sender_id, recipient_id, amount, status, type, updated_at)
         VALUES ('legacy-payment', $1, $2, 12.50, 'completed', 'instant', now())",
    )
    .bind(&alice)
    .bind(&bob)
    .execute(&app.pool)
    .await
    .unwrap();
    let admin = app.admin_token().await;

    let refused = delete_user(&app.base, &admin, &alice).await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(error_code(&refused), "user_referenced");
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("sent payments") && message.contains("payments_sender_id_fkey"),
        "{message}"
    );
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM users WHERE id = $1",
            &alice
        )
        .await,
        1
    );
    assert!(
        app.outbox("user.deleted").await.is_empty(),
        "a refused deletion records no event"
    );

    // A recipient is not kept: the legacy key sets the payment's recipient to NULL.
    let deleted = delete_user(&app.base, &admin, &bob).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let recipient: Option<String> =
        sqlx::query_scalar("SELECT recipient_id FROM payments WHERE id = 'legacy-payment'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(recipient, None);
    assert_eq!(app.outbox("user.deleted").await.len(), 1);
}

/// A legacy user with an expired and a live refresh token, and an expired rotated hash, in `db`
/// migrated as auth would (so that `auth.rotated_refresh_tokens` exists before auth starts).
async fn tokens_before_start(db: &TestDb) {
    let pool = db.pool().await;
    auth_service::MIGRATOR.run(&pool).await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO users (id, email, password_hash, name, role, updated_at)
           VALUES ('u-legacy', 'old@example.com', 'x', 'Old', 'CUSTOMER', now());
         INSERT INTO refresh_tokens (id, user_id, token, expires_at) VALUES
           ('t-expired', 'u-legacy', 'raw-expired-token', now() - interval '2 days'),
           ('t-live', 'u-legacy', 'raw-live-token', now() + interval '2 days');
         INSERT INTO auth.rotated_refresh_tokens (token_hash, user_id, expires_at)
           VALUES ('sha256:old', 'u-legacy', now() - interval '1 day');",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

async fn count(pool: &PgPool, sql: &'static str, bind: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(bind)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Waits until the start's housekeeping has run: it always purges the rotated hashes.
async fn housekeeping_ran(pool: &PgPool) {
    eventually(Duration::from_secs(10), || async {
        let left = count(
            pool,
            "SELECT count(*) FROM auth.rotated_refresh_tokens WHERE token_hash = $1",
            "sha256:old",
        )
        .await;
        (left == 0).then_some(())
    })
    .await
    .expect("the expired rotated hash is purged at start");
}

async fn tokens(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT id FROM refresh_tokens ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn in_the_shared_topology_expired_legacy_refresh_tokens_are_left_at_start() {
    let db = legacy_db().await;
    tokens_before_start(&db).await;
    let app = spawn_app_on(db, Topology::Shared, |_| {}).await;
    housekeeping_ran(&app.pool).await;
    assert_eq!(tokens(&app.pool).await, ["t-expired", "t-live"]);
    // Left in the table, but refused all the same.
    let refused = app
        .post(
            "/auth/refresh",
            &serde_json::json!({"refreshToken": "raw-expired-token"}),
        )
        .await;
    assert_eq!(refused.status, 401, "{}", refused.body);
}

#[tokio::test]
async fn asked_to_in_the_shared_topology_auth_purges_expired_refresh_tokens() {
    let db = legacy_db().await;
    tokens_before_start(&db).await;
    let app = spawn_app_on(db, Topology::Shared, |s| {
        s.purge_expired_tokens = Some(true)
    })
    .await;
    housekeeping_ran(&app.pool).await;
    let left = eventually(Duration::from_secs(10), || async {
        let left = tokens(&app.pool).await;
        (left.len() == 1).then_some(left)
    })
    .await;
    assert_eq!(left.unwrap(), ["t-live"]);
}

#[tokio::test]
async fn in_the_split_topology_expired_refresh_tokens_are_purged_at_start() {
    let db = TestDb::new().await;
    tokens_before_start(&db).await;
    let app = spawn_app_on(db, Topology::Split, |_| {}).await;
    let left = eventually(Duration::from_secs(10), || async {
        let left = tokens(&app.pool).await;
        (left.len() == 1).then_some(left)
    })
    .await;
    assert_eq!(left.unwrap(), ["t-live"]);
    housekeeping_ran(&app.pool).await;
}
