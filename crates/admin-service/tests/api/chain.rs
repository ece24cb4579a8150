//! The hash chain verifies, and names a row changed, deleted or inserted directly in SQL; rows
//! already there at the first start (migrated legacy rows) are anchored once.

use serde_json::{Value, json};
use test_support::TestDb;

use crate::helpers::{TestAdmin, event, settings, spawn, spawn_on, start};

async fn verify(admin: &TestAdmin, token: &str) -> Value {
    let reply = admin.get("/admin/audit-logs/verify", token).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

async fn sql(admin: &TestAdmin, statement: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_string()))
        .execute(&admin.pool)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

#[tokio::test]
async fn the_chain_names_the_row_changed_deleted_or_inserted_in_sql() {
    let admin = spawn().await;
    let token = admin.admin_token().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let e = event(
            "test.row",
            "test",
            json!({"n": i, "text": "ünïcödé \"quoted\""}),
        );
        admin.broker.publish(&e).await;
        ids.push(e.id.to_string());
    }
    admin.wait_for_rows(&token, "action=test.row", 5).await;
    let clean = verify(&admin, &token).await;
    assert_eq!(clean["valid"], true, "{clean}");
    assert!(clean["chainedRows"].as_u64().unwrap() >= 5);
    assert_eq!(clean["problemCount"], 0);
    assert!(clean["head"]["hash"].as_str().unwrap().len() == 64);

    // Changed: one field of one row.
    let changed = &ids[2];
    sql(
        &admin,
        &format!(
            "UPDATE audit_logs SET details = details || '{{\"n\": 99}}' WHERE id = '{changed}'"
        ),
    )
    .await;
    let report = verify(&admin, &token).await;
    assert_eq!(report["valid"], false);
    assert_eq!(report["problems"][0]["kind"], "changed", "{report}");
    assert_eq!(report["problems"][0]["auditLogId"], changed.as_str());
    assert_eq!(
        report["problemCount"], 1,
        "one change is one problem: {report}"
    );
    // Put back as it was, the row verifies again.
    sql(
        &admin,
        &format!(
            "UPDATE audit_logs SET details = details || '{{\"n\": 2}}' WHERE id = '{changed}'"
        ),
    )
    .await;
    assert_eq!(verify(&admin, &token).await["valid"], true);

    // A change a loose comparison would miss: NULL against an empty string.
    sql(
        &admin,
        &format!(
            "UPDATE audit_logs SET ip_address = '' WHERE id = '{}'",
            ids[0]
        ),
    )
    .await;
    let report = verify(&admin, &token).await;
    assert_eq!(
        report["problems"][0]["auditLogId"],
        ids[0].as_str(),
        "{report}"
    );
    sql(
        &admin,
        &format!(
            "UPDATE audit_logs SET ip_address = NULL WHERE id = '{}'",
            ids[0]
        ),
    )
    .await;

    // Deleted.
    let deleted = &ids[1];
    sql(
        &admin,
        &format!("CREATE TABLE kept AS SELECT * FROM audit_logs WHERE id = '{deleted}'"),
    )
    .await;
    sql(
        &admin,
        &format!("DELETE FROM audit_logs WHERE id = '{deleted}'"),
    )
    .await;
    let report = verify(&admin, &token).await;
    assert_eq!(report["problems"][0]["kind"], "deleted", "{report}");
    assert_eq!(report["problems"][0]["auditLogId"], deleted.as_str());
    sql(&admin, "INSERT INTO audit_logs SELECT * FROM kept").await;
    assert_eq!(verify(&admin, &token).await["valid"], true);

    // Inserted out of band.
    sql(&admin, "INSERT INTO audit_logs (id, action, created_at) VALUES ('forged', 'payment.refund', '2020-01-01')").await;
    let report = verify(&admin, &token).await;
    assert_eq!(report["problems"][0]["kind"], "inserted", "{report}");
    assert_eq!(report["problems"][0]["auditLogId"], "forged");
    sql(&admin, "DELETE FROM audit_logs WHERE id = 'forged'").await;

    // The newest row and its chain entry both removed: the head no longer matches.
    let newest = ids.last().unwrap();
    sql(
        &admin,
        &format!("DELETE FROM audit_logs WHERE id = '{newest}'"),
    )
    .await;
    sql(
        &admin,
        &format!("DELETE FROM admin.audit_chain WHERE audit_id = '{newest}'"),
    )
    .await;
    let report = verify(&admin, &token).await;
    assert_eq!(report["valid"], false, "{report}");
    assert_eq!(report["problems"][0]["kind"], "chain_broken", "{report}");
}

/// Rows as the migration copies them from the legacy database, odd ones included.
const LEGACY_ROWS: &str = r#"
INSERT INTO audit_logs (id, user_id, action, resource_type, resource_id, details, ip_address, user_agent, created_at) VALUES
 ('legacy-1', NULL, 'system.maintenance', NULL, NULL, NULL, NULL, NULL, '2023-01-01 00:00:00.000'),
 ('legacy-2', 'u-2', 'user.login', 'user', 'u-2', 'null', '203.0.113.7', 'Mozilla/5.0', '2024-06-01 12:30:45.678'),
 ('legacy-3', 'u-6', 'profile.update', 'user_profile', 'p-6',
  '{"changes": {"name": {"from": "Zoe", "to": "Zoë 😀"}}, "big": 12345678901234567890.123456789, "escaped": "quote \" newline \n"}',
  '2001:db8::1', 'アプリ', '2022-05-01 08:15:30.456'),
 ('legacy-4', 'u-11', 'user.register', 'user', 'u-11', '{"source": "ancient"}', '0.0.0.0', NULL, '0001-01-01 00:00:00.001'),
 ('legacy-5', 'u-12', 'user.register', 'user', 'u-12', '{"source": "future"}', NULL, NULL, '9999-12-31 23:59:59.999');
"#;

#[tokio::test]
async fn legacy_rows_are_anchored_once_at_the_first_start() {
    let db = TestDb::new().await;
    let config = test_support::spawn::config(admin_service::SERVICE, &db.url);
    let pool = platform::app::open_database(&config, &admin_service::MIGRATOR)
        .await
        .unwrap();
    sqlx::raw_sql(LEGACY_ROWS).execute(&pool).await.unwrap();
    let admin = spawn_on(db).await;
    let token = admin.admin_token().await;
    let report = verify(&admin, &token).await;
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["anchoredRows"], 5);
    let served = admin.get("/admin/audit-logs/legacy-3", &token).await;
    assert_eq!(served.status, 200);
    assert_eq!(
        served.body["details"]["changes"]["name"]["to"], "Zoë 😀",
        "served as it is"
    );
    let raw = &served.text;
    assert!(
        raw.contains("12345678901234567890.123456789"),
        "every digit of a legacy number is kept: {raw}"
    );

    // A second start (a restart, another replica) anchors nothing more.
    let mut config = admin.config.clone();
    config.port = 0;
    let replica = start(&config, &settings(&config), &admin.broker).await;
    let again = replica.get("/admin/audit-logs/verify", Some(&token)).await;
    assert_eq!(again.body["anchoredRows"], 5);
    let anchors: i64 =
        sqlx::query_scalar("SELECT count(*) FROM admin.audit_chain WHERE kind = 'anchor'")
            .fetch_one(&admin.pool)
            .await
            .unwrap();
    assert_eq!(anchors, 1);

    sql(&admin, "UPDATE audit_logs SET created_at = created_at + interval '1 millisecond' WHERE id = 'legacy-4'").await;
    sql(&admin, "DELETE FROM audit_logs WHERE id = 'legacy-2'").await;
    let report = verify(&admin, &token).await;
    assert_eq!(report["valid"], false);
    let named: Vec<(&str, &str)> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().unwrap(),
                p["auditLogId"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        named,
        [("changed", "legacy-4"), ("deleted", "legacy-2")],
        "{report}"
    );
}

#[tokio::test]
async fn a_deleted_chain_is_not_anchored_again_and_verify_says_so() {
    let admin = spawn().await;
    let token = admin.admin_token().await;
    let e = event("test.row", "test", json!({"n": 1}));
    admin.broker.publish(&e).await;
    admin.wait_for_event(&token, &e).await;
    // Someone edits a row and deletes the chain, hoping the next start anchors the edit.
    sql(
        &admin,
        &format!(
            "UPDATE audit_logs SET action = 'nothing.happened' WHERE id = '{}'",
            e.id
        ),
    )
    .await;
    sql(&admin, "DELETE FROM admin.audit_anchor; DELETE FROM admin.audit_chain; DELETE FROM admin.audit_chain_head").await;
    let mut config = admin.config.clone();
    config.port = 0;
    let app = admin_service::build_with(
        config.clone(),
        settings(&config),
        admin.broker.settings(&config),
    )
    .await
    .expect("admin still starts, to serve the log and its verification");
    let replica = test_support::Api::new(format!("http://127.0.0.1:{}", app.port()));
    tokio::spawn(app.run_until(std::future::pending()));
    let ready = replica.get("/ready", None).await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(
        ready.body.to_string().contains("audit chain"),
        "{}",
        ready.body
    );
    let report = replica.get("/admin/audit-logs/verify", Some(&token)).await;
    assert_eq!(report.body["valid"], false, "{}", report.body);
    assert_eq!(report.body["problems"][0]["kind"], "inserted");
}

#[tokio::test]
async fn two_replicas_auditing_side_by_side_keep_one_chain() {
    let admin = spawn().await;
    let token = admin.admin_token().await;
    let mut config = admin.config.clone();
    config.port = 0;
    let _replica = start(&config, &settings(&config), &admin.broker).await;
    for i in 0..60 {
        admin
            .broker
            .publish(&event("test.row", "test", json!({"n": i})))
            .await;
    }
    admin.wait_for_rows(&token, "action=test.row", 60).await;
    let report = verify(&admin, &token).await;
    assert_eq!(report["valid"], true, "{report}");
    assert!(report["chainedRows"].as_u64().unwrap() >= 60);
    let text = admin.api.get("/metrics", None).await.text;
    assert!(
        text.contains("admin_audit_rows_total"),
        "events audited are counted"
    );
    assert!(
        text.contains("admin_audit_lag_seconds"),
        "and their lag measured"
    );
}

/// Whoever can publish chooses an event's type: the metrics label it as one of the platform's
/// types or `other`, so made-up types cannot create series without bound.
#[tokio::test]
async fn made_up_event_types_are_counted_as_other_not_as_new_series() {
    let admin = spawn().await;
    let token = admin.admin_token().await;
    let made_up = format!("made.up.{}", uuid::Uuid::new_v4().simple());
    for _ in 0..3 {
        admin
            .broker
            .publish(&event(&made_up, "attacker", json!({})))
            .await;
    }
    admin
        .wait_for_rows(&token, &format!("action={made_up}"), 3)
        .await;
    let text = admin.api.get("/metrics", None).await.text;
    assert!(
        !text.contains(&made_up),
        "no series named after it:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("admin_audit_rows_total") && l.contains("action=\"other\"")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("events_consumed_total") && l.contains("type=\"other\"")),
        "{text}"
    );
}
