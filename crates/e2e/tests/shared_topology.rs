//! The shared topology with the real processes: a legacy database seeded by the real `mfe`, and
//! auth, profile, payments (with the PSP sandbox) and admin all running on it
//! (`DATABASE_TOPOLOGY=shared`), its legacy foreign keys in place. The main routes work there,
//! the services' own tables stay in their own schemas, the legacy tables in `public` are left as
//! they were (but for the two documented indexes), and auth leaves expired legacy refresh tokens
//! alone at start.

use std::collections::BTreeSet;
use std::time::Duration;

use e2e::{SharedPlatform, SharedServices};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use test_support::{Api, Catalog, Reply, eventually};

/// Indexes the services add to legacy tables (ARCHITECTURE.md, "Topologies").
/// Every index the services add to the legacy tables.
fn added_indexes() -> impl Iterator<Item = (&'static str, &'static str)> {
    schema::migrations::legacy_indexes::ALL
        .into_iter()
        .flat_map(|added| added.iter().copied())
}

const LEGACY_TABLES: [&str; 7] = [
    "audit_logs",
    "payment_transactions",
    "payments",
    "refresh_tokens",
    "system_config",
    "user_profiles",
    "users",
];

/// Each service's own tables, in its own schema.
const SERVICE_TABLES: [(&str, &[&str]); 4] = [
    (
        "admin",
        &[
            "_sqlx_migrations",
            "audit_anchor",
            "audit_chain",
            "audit_chain_head",
            "audit_cleared_refs",
            "outbox",
            "processed_events",
        ],
    ),
    (
        "auth",
        &["_sqlx_migrations", "outbox", "rotated_refresh_tokens"],
    ),
    (
        "payments",
        &[
            "_sqlx_migrations",
            "idempotency_keys",
            "jobs",
            "outbox",
            "processed_events",
            "schedules",
        ],
    ),
    (
        "profile",
        &[
            "_sqlx_migrations",
            "deleted_users",
            "outbox",
            "processed_events",
        ],
    ),
];

/// Everything in the database outside the system schemas that a catalog of tables would not
/// show: schemas, every relation of `public` (sequences, views, indexes...) with its kind, and
/// the functions and types of `public`.
async fn objects(pool: &PgPool) -> BTreeSet<String> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT 'schema ' || nspname FROM pg_namespace \
           WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' \
         UNION ALL SELECT 'relation ' || relname || ' (' || relkind::text || ')' FROM pg_class \
           WHERE relnamespace = 'public'::regnamespace \
         UNION ALL SELECT 'function ' || oid::regprocedure::text FROM pg_proc \
           WHERE pronamespace = 'public'::regnamespace \
         UNION ALL SELECT 'type ' || typname FROM pg_type \
           WHERE typnamespace = 'public'::regnamespace",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter().collect()
}

async fn tables_of(pool: &PgPool, schema: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT relname::text FROM pg_class WHERE relnamespace = $1::regnamespace \
         AND relkind IN ('r', 'p') ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn expired_tokens(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT id FROM refresh_tokens WHERE expires_at < now() AT TIME ZONE 'UTC' ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
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

/// The audit rows matching `filter`, once there are `n`.
async fn audit_rows(admin: &Api, token: &str, filter: &str, n: usize) -> Vec<Value> {
    let path = format!("/admin/audit-logs?limit=100&{filter}");
    eventually(Duration::from_secs(20), || async {
        let reply = admin.get(&path, Some(token)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let items = reply.body["items"].as_array().cloned().unwrap_or_default();
        (items.len() >= n).then_some(items)
    })
    .await
    .unwrap_or_else(|| panic!("{n} audit rows for {filter}"))
}

async fn count(pool: &PgPool, sql: &'static str, bind: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(bind)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn delete_user(auth: &Api, token: &str, id: &str) -> Reply {
    auth.call(Method::DELETE, &format!("/users/{id}"), Some(token), None)
        .await
}

#[tokio::test]
async fn the_four_services_run_on_the_legacy_database_and_keep_to_their_schemas() {
    let platform = SharedPlatform::seed(21);
    let legacy = platform.legacy_pool().await;

    // The legacy database as the services find it.
    let public_before = Catalog::read(&legacy, "public").await.unwrap();
    assert_eq!(
        public_before.tables.keys().collect::<Vec<_>>(),
        LEGACY_TABLES.iter().collect::<Vec<_>>()
    );
    let objects_before = objects(&legacy).await;
    let legacy_audit_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_logs")
        .fetch_one(&legacy)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO refresh_tokens (id, user_id, token, expires_at) \
         SELECT 'e2e-expired', id, 'e2e-expired-raw-token', now() - interval '3 days' \
         FROM users WHERE email = 'alice@legacy.test'",
    )
    .execute(&legacy)
    .await
    .unwrap();
    let expired_before = expired_tokens(&legacy).await;
    assert!(expired_before.contains(&"e2e-expired".to_string()));

    let auth = platform.start_auth(&[
        ("AUTH_BOOTSTRAP_ADMIN_EMAIL", "ops@example.com"),
        ("AUTH_BOOTSTRAP_ADMIN_PASSWORD", "ops-password-2024"),
    ]);
    auth.wait_ready(Duration::from_secs(15)).await;
    let SharedServices {
        auth,
        admin,
        profile,
        payments,
        sandbox: _sandbox,
    } = platform.start_with(auth).await;
    let logs = auth.logs();
    assert!(
        logs.contains("expired refresh tokens: left in refresh_tokens"),
        "auth says what it does with expired tokens:\n{logs}"
    );
    assert!(
        logs.contains("created the bootstrap admin") && logs.contains("legacy users table"),
        "{logs}"
    );
    let (auth_api, admin_api) = (Api::new(auth.base.clone()), Api::new(admin.base.clone()));
    let (profile_api, payments_api) = (
        Api::new(profile.base.clone()),
        Api::new(payments.base.clone()),
    );

    // auth: a legacy user signs in with their POC-2 password; a new user registers.
    let (alice_token, alice) = login(&auth_api, "alice@legacy.test", "alice-legacy-2024").await;
    let email = format!("dora-{}@example.com", uuid::Uuid::new_v4().simple());
    let registered = auth_api
        .post(
            "/auth/register",
            None,
            &json!({"email": email, "password": "a-long-password", "name": "Dora Explorer"}),
        )
        .await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let dora = registered.body["user"]["id"].as_str().unwrap().to_string();
    let dora_token = registered.body["accessToken"].as_str().unwrap().to_string();

    // profile: dora's default profile appears in the legacy user_profiles by event (before any
    // request could create it lazily); she reads and changes it.
    eventually(Duration::from_secs(15), || async {
        let n = count(
            &legacy,
            "SELECT count(*) FROM user_profiles WHERE user_id = $1",
            &dora,
        )
        .await;
        (n == 1).then_some(())
    })
    .await
    .expect("dora's profile is created by user.registered");
    let mine = profile_api.get("/profile/me", Some(&dora_token)).await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert_eq!(mine.body["userId"], dora.as_str());
    let changed = profile_api
        .call(
            Method::PATCH,
            "/profile/me",
            Some(&dora_token),
            Some(&json!({"bio": "Maps"})),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    let bio: Option<String> =
        sqlx::query_scalar("SELECT bio FROM user_profiles WHERE user_id = $1")
            .bind(&dora)
            .fetch_one(&legacy)
            .await
            .unwrap();
    assert_eq!(bio.as_deref(), Some("Maps"));
    let legacy_profile = profile_api.get("/profile/me", Some(&alice_token)).await;
    assert_eq!(legacy_profile.status, 200, "{}", legacy_profile.body);

    // payments: alice pays dora through the sandbox; the payment and its history are legacy rows.
    let paid = payments_api
        .post(
            "/payments",
            Some(&alice_token),
            &json!({"recipientEmail": email, "amount": "12.34", "type": "instant"}),
        )
        .await;
    assert!(paid.status == 201 || paid.status == 202, "{}", paid.body);
    let payment = paid.body["id"].as_str().unwrap().to_string();
    let completed = eventually(Duration::from_secs(20), || async {
        let reply = payments_api
            .get(&format!("/payments/{payment}"), Some(&alice_token))
            .await;
        (reply.body["status"] == "completed").then_some(reply.body)
    })
    .await
    .expect("the payment completes");
    assert_eq!(completed["recipientName"], "Dora Explorer", "{completed}");
    let (sender, recipient, status, psp): (String, Option<String>, String, Option<String>) =
        sqlx::query_as(
            "SELECT sender_id, recipient_id, status::text, psp_transaction_id FROM payments \
             WHERE id = $1",
        )
        .bind(&payment)
        .fetch_one(&legacy)
        .await
        .unwrap();
    assert_eq!(
        (sender.as_str(), recipient.as_deref(), status.as_str()),
        (alice.as_str(), Some(dora.as_str()), "completed")
    );
    assert!(psp.is_some(), "charged through the sandbox");
    let history: Vec<String> = sqlx::query_scalar(
        "SELECT status::text FROM payment_transactions WHERE payment_id = $1 \
         ORDER BY created_at, status",
    )
    .bind(&payment)
    .fetch_all(&legacy)
    .await
    .unwrap();
    assert_eq!(history, ["pending", "processing", "completed"]);

    // admin: the log lists the legacy rows and the new ones; the chain (legacy rows anchored at
    // the first start, then one entry per event) verifies.
    let (root, root_id) = login(&auth_api, "admin@legacy.test", "admin-legacy-2024").await;
    let listed = admin_api
        .get("/admin/audit-logs?limit=20", Some(&root))
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 20);
    let trail = audit_rows(
        &admin_api,
        &root,
        &format!("resourceType=payment&resourceId={payment}"),
        3,
    )
    .await;
    assert!(trail.iter().all(|row| row["userId"] == alice.as_str()));
    audit_rows(
        &admin_api,
        &root,
        &format!("action=profile.updated&userId={dora}"),
        1,
    )
    .await;
    let verified = admin_api.get("/admin/audit-logs/verify", Some(&root)).await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    assert_eq!(verified.body["valid"], true, "{}", verified.body);
    assert_eq!(verified.body["anchoredRows"], legacy_audit_rows);

    // admin: a configuration entry, written to and read from the legacy system_config.
    let written = admin_api
        .http
        .put(admin_api.url("/admin/config/e2e.shared"))
        .bearer_auth(&root)
        .header("If-None-Match", "*")
        .json(&json!({"value": {"limit": "250.00"}, "description": "shared topology"}))
        .send()
        .await
        .unwrap();
    let written = Reply::read(written).await;
    assert_eq!(written.status, 201, "{}", written.body);
    let read = admin_api.get("/admin/config/e2e.shared", Some(&root)).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["value"], json!({"limit": "250.00"}));
    assert_eq!(
        count(
            &legacy,
            "SELECT count(*) FROM system_config WHERE key = 'e2e.shared' AND updated_by = $1",
            &root_id,
        )
        .await,
        1
    );

    // auth: alice sent payments, which the legacy key keeps (RESTRICT): 409, and she stays.
    let (ops, _) = login(&auth_api, "ops@example.com", "ops-password-2024").await;
    let refused = delete_user(&auth_api, &ops, &alice).await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(refused.error_code(), "user_referenced");
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("payments_sender_id_fkey"), "{message}");
    assert_eq!(
        count(&legacy, "SELECT count(*) FROM users WHERE id = $1", &alice).await,
        1
    );

    // Dora only received one: she is deleted, her profile goes with her (CASCADE), the payment
    // loses its recipient (SET NULL), and her deletion is audited under no user (she is gone
    // from users by then), not dead-lettered.
    let deleted = delete_user(&auth_api, &ops, &dora).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(
        count(
            &legacy,
            "SELECT count(*) FROM user_profiles WHERE user_id = $1",
            &dora
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &legacy,
            "SELECT count(*) FROM payments WHERE id = $1 AND recipient_id IS NULL",
            &payment
        )
        .await,
        1
    );
    let gone = audit_rows(
        &admin_api,
        &root,
        &format!("action=user.deleted&resourceId={dora}"),
        1,
    )
    .await;
    assert_eq!(gone[0]["userId"], Value::Null, "{}", gone[0]);
    assert_eq!(gone[0]["details"]["userId"], dora.as_str());

    // The catalog: `public` holds exactly what it held (seven tables) but for the two
    // documented indexes; each service's tables are in its own schema, and nowhere else.
    let mut public_after = Catalog::read(&legacy, "public").await.unwrap();
    for (table, index) in added_indexes() {
        assert!(
            public_after.tables[table].indexes.contains_key(index),
            "{index}"
        );
        public_after = public_after.without_index(table, index);
    }
    assert_eq!(public_after.diff(&public_before), Vec::<String>::new());
    let mut objects_after = objects(&legacy).await;
    for (_, index) in added_indexes() {
        assert!(
            objects_after.remove(&format!("relation {index} (i)")),
            "{index}"
        );
    }
    for (schema, _) in SERVICE_TABLES {
        assert!(
            objects_after.remove(&format!("schema {schema}")),
            "{schema}"
        );
    }
    assert_eq!(
        objects_after
            .symmetric_difference(&objects_before)
            .collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "nothing else is new or gone"
    );
    for (schema, tables) in SERVICE_TABLES {
        assert_eq!(tables_of(&legacy, schema).await, tables, "schema {schema}");
    }

    // Expired legacy refresh tokens are all still there after auth's start and housekeeping.
    let kept: Vec<String> =
        sqlx::query_scalar("SELECT id FROM refresh_tokens WHERE id = ANY($1) ORDER BY id")
            .bind(&expired_before)
            .fetch_all(&legacy)
            .await
            .unwrap();
    assert_eq!(kept, expired_before);
}

/// A service started from a checkout whose topology file says `shared`, given its own database
/// URL: it says the topology came from that file, and that the URL it was given goes unused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_says_where_its_topology_came_from_and_which_url_it_ignores() {
    let platform = SharedPlatform::seed(23);
    let file = std::env::temp_dir().join(format!("topology-{}.env", uuid::Uuid::new_v4()));
    std::fs::write(&file, "DATABASE_TOPOLOGY=shared\n").unwrap();
    let mut env = platform.broker.env("auth-service");
    env.push(("SHARED_DATABASE_URL".into(), platform.legacy.url.clone()));
    env.push(("MFE_TOPOLOGY_FILE".into(), file.display().to_string()));
    env.push((
        "AUTH_DATABASE_URL".into(),
        "postgresql://postgres:postgres@127.0.0.1:5432/never_used_by_auth".into(),
    ));
    env.push((
        "AUTH_DATA_DIR".into(),
        platform.auth_data.display().to_string(),
    ));
    let auth = e2e::ServiceProcess::start("auth-service", &env);
    let logs = auth.logs();
    assert!(
        logs.contains(&format!("the topology file {}", file.display())),
        "{logs}"
    );
    assert!(
        logs.contains("AUTH_DATABASE_URL is set but unused"),
        "{logs}"
    );
    drop(auth);
    std::fs::remove_file(&file).ok();
}
