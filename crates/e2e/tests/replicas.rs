//! Two replicas of payments and two of admin, each pair on one database, one event queue and the
//! same settings, as the real binaries beside auth and the PSP sandbox. Under a load sent to both
//! replicas (instant and scheduled payments, Idempotency-Keys, the same key on both at once,
//! configuration changes and refused requests on both admins), no payment is charged twice, no
//! event is published or audited twice, and admin's audit chain verifies.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use e2e::{ADMIN_SECRET, PAYMENTS_SECRET, Platform, ServiceProcess, WEBHOOK_SECRET, free_port};
use serde_json::{Value, json};
use test_support::{Api, Reply, TestDb, eventually};

const ADMIN_EMAIL: &str = "root-replicas@example.com";
const ADMIN_PASSWORD: &str = "a-long-root-password";
const PAYMENTS: usize = 60;

/// The sum of every sample of the counter `name` whose labels contain `filter` in a service's
/// `/metrics`.
async fn counter(service: &ServiceProcess, name: &str, filter: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", service.base))
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                && line.contains(filter)
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn post(api: &Api, path: &str, token: &str, key: Option<&str>, body: &Value) -> Reply {
    let mut request = api.http.post(api.url(path)).bearer_auth(token).json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    Reply::read(request.send().await.expect("the request is answered")).await
}

/// Posts until the answer is not 409 `idempotency_key_in_use` (the other replica still holds
/// the key).
async fn post_until_free(api: &Api, token: &str, key: &str, body: &Value) -> Reply {
    eventually(Duration::from_secs(15), || async {
        let reply = post(api, "/payments", token, Some(key), body).await;
        let in_use = reply.status == 409 && reply.body["error"]["code"] == "idempotency_key_in_use";
        (!in_use).then_some(reply)
    })
    .await
    .unwrap_or_else(|| panic!("key {key} stayed in use"))
}

async fn ids(pool: &sqlx::PgPool, sql: &str) -> Vec<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test]
async fn two_replicas_of_payments_and_admin_do_no_work_twice() {
    let platform = Platform::new();
    let (payments_db, admin_db) = (TestDb::unborn(), TestDb::unborn());
    let auth_port = free_port();
    let auth_url = format!("http://127.0.0.1:{auth_port}");

    // Admin's replicas first: their queue must be bound before anyone publishes.
    let mut admin_env = platform.broker.env("admin-service");
    admin_env.extend([
        ("ADMIN_DATABASE_URL".to_string(), admin_db.url.clone()),
        ("AUTH_SERVICE_URL".into(), auth_url.clone()),
        ("ADMIN_AUTH_CLIENT_SECRET".into(), ADMIN_SECRET.into()),
    ]);
    let admin_a = ServiceProcess::start("admin-service", &admin_env);
    admin_a.wait_ready(Duration::from_secs(15)).await;
    let admin_b = ServiceProcess::start("admin-service", &admin_env);
    admin_b.wait_ready(Duration::from_secs(15)).await;

    let mut auth_env = platform.auth_env();
    auth_env.extend([
        ("AUTH_SERVICE_PORT".to_string(), auth_port.to_string()),
        (
            "AUTH_SERVICE_CLIENTS".into(),
            format!("payments-service={PAYMENTS_SECRET},admin-service={ADMIN_SECRET}"),
        ),
        ("AUTH_BOOTSTRAP_ADMIN_EMAIL".into(), ADMIN_EMAIL.into()),
        (
            "AUTH_BOOTSTRAP_ADMIN_PASSWORD".into(),
            ADMIN_PASSWORD.into(),
        ),
    ]);
    let auth = ServiceProcess::start("auth-service", &auth_env);

    // The sandbox's webhooks go to the first payments replica; both read its charges.
    let (psp_port, payments_a_port) = (free_port(), free_port());
    let sandbox = e2e::start_sandbox(
        psp_port,
        Some(payments_a_port),
        &[
            ("PSP_SANDBOX_LATENCY_MS", "20"),
            ("PSP_SANDBOX_SETTLE_DELAY_MS", "300"),
        ],
    );
    // The charge job of an instant payment is due at once (grace 1 ms), so the workers of both
    // replicas race the request's own charge for it.
    let mut payments_env = platform.broker.env("payments-service");
    payments_env.extend([
        ("PAYMENTS_DATABASE_URL".to_string(), payments_db.url.clone()),
        ("AUTH_SERVICE_URL".into(), auth_url.clone()),
        ("PAYMENTS_AUTH_CLIENT_SECRET".into(), PAYMENTS_SECRET.into()),
        ("PSP_URL".into(), format!("http://127.0.0.1:{psp_port}")),
        ("PSP_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into()),
        ("PSP_TIMEOUT_MS".into(), "2000".into()),
        ("PAYMENTS_CHARGE_GRACE_MS".into(), "1".into()),
        ("PAYMENTS_RECONCILE_AFTER_MS".into(), "300".into()),
        ("PAYMENTS_RECONCILE_MAX_MS".into(), "1000".into()),
        ("PAYMENTS_WORKER_POLL_MS".into(), "100".into()),
    ]);
    let mut env_a = payments_env.clone();
    env_a.push(("PAYMENTS_SERVICE_PORT".into(), payments_a_port.to_string()));
    let payments_a = ServiceProcess::start("payments-service", &env_a);
    auth.wait_ready(Duration::from_secs(15)).await;
    payments_a.wait_ready(Duration::from_secs(15)).await;
    let payments_b = ServiceProcess::start("payments-service", &payments_env);
    payments_b.wait_ready(Duration::from_secs(15)).await;
    assert_ne!(payments_a.base, payments_b.base);
    assert_ne!(admin_a.base, admin_b.base);

    let auth_api = Api::new(auth.base.clone());
    let payments_apis = [
        Api::new(payments_a.base.clone()),
        Api::new(payments_b.base.clone()),
    ];
    let admin_apis = [
        Api::new(admin_a.base.clone()),
        Api::new(admin_b.base.clone()),
    ];

    // Four customers; each pays the next one.
    let mut users = Vec::new();
    for n in 0..4 {
        let email = format!("replica-{n}-{}@example.com", uuid::Uuid::new_v4().simple());
        let reply = auth_api
            .post(
                "/auth/register",
                None,
                &json!({"email": email, "password": "a-long-password", "name": format!("Replica {n}")}),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        users.push((
            email,
            reply.body["accessToken"].as_str().unwrap().to_string(),
        ));
    }
    let root = auth_api
        .post(
            "/auth/login",
            None,
            &json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(root.status, 200, "{}", root.body);
    let root = root.body["accessToken"].as_str().unwrap().to_string();

    // Scheduled payments fall due together a little later, for the workers of both replicas.
    let payments_pool = payments_db.pool().await;
    let due: String = sqlx::query_scalar(
        "SELECT to_char((now() + interval '2 seconds') AT TIME ZONE 'UTC', \
         'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
    )
    .fetch_one(&payments_pool)
    .await
    .unwrap();

    // The load: payments alternate between the replicas, all sent at once; some with a key.
    let load = (0..PAYMENTS).map(|i| {
        let api = payments_apis[i % 2].clone();
        let (_, token) = users[i % 4].clone();
        let (recipient, _) = users[(i + 1) % 4].clone();
        let amount = match i % 10 {
            3 => "2001.00".to_string(),
            7 => "3000.00".to_string(),
            _ => format!("{}.{:02}", 10 + i, i),
        };
        let mut body = json!({"recipientEmail": recipient, "amount": amount, "type": "instant"});
        if i % 3 == 2 {
            body["type"] = json!("scheduled");
            body["scheduledAt"] = json!(due);
        }
        let key = (i % 2 == 0).then(|| format!("replicas-{i}-{}", uuid::Uuid::new_v4()));
        tokio::spawn(async move {
            let reply = post(&api, "/payments", &token, key.as_deref(), &body).await;
            assert!(
                reply.status == 201 || reply.status == 202,
                "payment {i}: {} {}",
                reply.status,
                reply.body
            );
            reply.body["id"].as_str().unwrap().to_string()
        })
    });
    let load: Vec<_> = load.collect();

    // The same key and body on both replicas at once, several times over: one payment each.
    let same_key = (0..5).map(|n| {
        let apis = payments_apis.clone();
        let (_, token) = users[n % 4].clone();
        let (recipient, _) = users[(n + 2) % 4].clone();
        let key = format!("both-{n}-{}", uuid::Uuid::new_v4());
        let body =
            json!({"recipientEmail": recipient, "amount": format!("7{n}.00"), "type": "instant"});
        tokio::spawn(async move {
            let (a, b) = tokio::join!(
                post_until_free(&apis[0], &token, &key, &body),
                post_until_free(&apis[1], &token, &key, &body)
            );
            for reply in [&a, &b] {
                assert!(
                    reply.status == 201 || reply.status == 202,
                    "key {key}: {} {}",
                    reply.status,
                    reply.body
                );
            }
            assert_eq!(a.body["id"], b.body["id"], "one key, one payment");
            let replayed = [&a, &b]
                .iter()
                .filter(|r| {
                    r.headers
                        .get("idempotent-replayed")
                        .is_some_and(|v| v == "true")
                })
                .count();
            assert_eq!(replayed, 1, "exactly one answer is the replay: {a:?} {b:?}");
            a.body["id"].as_str().unwrap().to_string()
        })
    });
    let same_key: Vec<_> = same_key.collect();

    // Admin's own events from both replicas: a configuration entry each, one entry created on
    // both at once (one wins), and a customer refused by each.
    for (n, admin) in admin_apis.iter().enumerate() {
        let reply = admin
            .call(
                reqwest::Method::PUT,
                &format!("/admin/config/replica.{n}"),
                Some(&root),
                Some(&json!({"value": {"replica": n}})),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        let refused = admin.get("/admin/config", Some(&users[n].1)).await;
        assert_eq!(refused.status, 403, "{}", refused.body);
    }
    let create_only = |admin: &Api, n: usize| {
        admin
            .http
            .put(admin.url("/admin/config/replicas.shared"))
            .bearer_auth(&root)
            .header("If-None-Match", "*")
            .json(&json!({"value": n}))
            .send()
    };
    let (a, b) = tokio::join!(
        create_only(&admin_apis[0], 0),
        create_only(&admin_apis[1], 1)
    );
    let mut statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [201, 412], "one create-only PUT wins");

    let mut answered = BTreeSet::new();
    for task in load {
        assert!(answered.insert(task.await.unwrap()), "two answers, one id");
    }
    let mut keyed_twice = Vec::new();
    for task in same_key {
        let id = task.await.unwrap();
        assert!(answered.insert(id.clone()), "{id} answered twice");
        keyed_twice.push(id);
    }
    assert_eq!(answered.len(), PAYMENTS + 5);

    // Every payment settled.
    let settled = eventually(Duration::from_secs(30), || async {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM payments WHERE status IN ('pending', 'processing')",
        )
        .fetch_one(&payments_pool)
        .await
        .unwrap();
        (open == 0).then_some(())
    })
    .await;
    let open = ids(
        &payments_pool,
        "SELECT id || ' ' || status::text FROM payments WHERE status IN ('pending', 'processing')",
    )
    .await;
    assert!(
        settled.is_some(),
        "not settled: {open:?}\n{}\n{}",
        payments_a.logs(),
        payments_b.logs()
    );
    let stored: BTreeSet<String> = ids(&payments_pool, "SELECT id FROM payments")
        .await
        .into_iter()
        .collect();
    assert_eq!(stored, answered, "the payments are exactly those answered");

    // One charge per payment at the provider, sent once.
    let charges = Api::new(sandbox.base.clone())
        .get("/charges?limit=1000", None)
        .await;
    assert_eq!(charges.status, 200, "{}", charges.body);
    let charges = charges.body["items"].as_array().unwrap().clone();
    assert_eq!(charges.len(), answered.len(), "one charge per payment");
    let by_reference: BTreeMap<&str, &Value> = charges
        .iter()
        .map(|c| (c["reference"].as_str().unwrap(), c))
        .collect();
    assert_eq!(
        by_reference.len(),
        charges.len(),
        "one charge per reference"
    );
    let rows: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT id, status::text, psp_transaction_id FROM payments")
            .fetch_all(&payments_pool)
            .await
            .unwrap();
    for (id, status, psp_id) in &rows {
        let charge = by_reference
            .get(id.as_str())
            .unwrap_or_else(|| panic!("payment {id} ({status}) has no charge"));
        assert_eq!(
            charge["attempts"], 1,
            "payment {id} was sent twice: {charge}"
        );
        assert_eq!(psp_id.as_deref(), charge["id"].as_str(), "payment {id}");
        let expected = match status.as_str() {
            "completed" => "succeeded",
            "failed" => "declined",
            other => panic!("payment {id} is {other}"),
        };
        assert_eq!(charge["status"], expected, "payment {id}");
    }
    let statuses: BTreeSet<&str> = rows.iter().map(|(_, s, _)| s.as_str()).collect();
    assert_eq!(statuses, BTreeSet::from(["completed", "failed"]));

    // Each payment's history: created, sent, settled, and no status twice.
    let doubled = ids(
        &payments_pool,
        "SELECT payment_id || ' ' || status::text FROM payment_transactions \
         GROUP BY payment_id, status HAVING count(*) > 1",
    )
    .await;
    assert!(doubled.is_empty(), "status rows twice: {doubled:?}");
    let histories: i64 = sqlx::query_scalar("SELECT count(*) FROM payment_transactions")
        .fetch_one(&payments_pool)
        .await
        .unwrap();
    assert_eq!(histories, 3 * answered.len() as i64);

    // Every event the publishers recorded is published, once, and audited, once.
    let auth_pool = platform.auth_pool().await;
    let admin_pool = admin_db.pool().await;
    let outboxes = [
        ("auth-service", &auth_pool, "auth"),
        ("payments-service", &payments_pool, "payments"),
        ("admin-service", &admin_pool, "admin"),
    ];
    let mut events = BTreeSet::new();
    let mut recorded = Vec::new();
    for (_, pool, schema) in &outboxes {
        let of_one = ids(pool, &format!("SELECT id::text FROM {schema}.outbox")).await;
        recorded.push(of_one.len());
        events.extend(of_one);
    }
    assert!(events.len() > 3 * answered.len(), "{} events", events.len());
    let all_audited = eventually(Duration::from_secs(20), || async {
        let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_logs")
            .fetch_one(&admin_pool)
            .await
            .unwrap();
        (audited as usize >= events.len()).then_some(())
    })
    .await;
    let audit_ids = ids(&admin_pool, "SELECT id FROM audit_logs").await;
    assert!(
        all_audited.is_some(),
        "{} of {} events audited",
        audit_ids.len(),
        events.len()
    );
    let audited: BTreeSet<String> = audit_ids.iter().cloned().collect();
    assert_eq!(audited.len(), audit_ids.len(), "an event audited twice");
    assert_eq!(audited, events, "the audit rows are exactly the events");
    let inbox: i64 = sqlx::query_scalar("SELECT count(*) FROM admin.processed_events")
        .fetch_one(&admin_pool)
        .await
        .unwrap();
    assert_eq!(inbox as usize, events.len());
    let chained: Vec<(String, i64)> =
        sqlx::query_as("SELECT kind, count(*) FROM admin.audit_chain GROUP BY kind ORDER BY kind")
            .fetch_all(&admin_pool)
            .await
            .unwrap();
    // One anchor, of the empty log the first replica found; one entry per audited row.
    assert_eq!(
        chained,
        [
            ("anchor".to_string(), 1),
            ("row".to_string(), events.len() as i64)
        ]
    );
    for ((source, pool, schema), n) in outboxes.iter().zip(&recorded) {
        let unpublished: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL"
        )))
        .fetch_one(*pool)
        .await
        .unwrap();
        assert_eq!(unpublished, 0, "{source}");
        // The relays of both replicas together published each row once.
        let replicas: &[&ServiceProcess] = match *source {
            "auth-service" => &[&auth],
            "payments-service" => &[&payments_a, &payments_b],
            _ => &[&admin_a, &admin_b],
        };
        let mut published = 0.0;
        for replica in replicas {
            published += counter(replica, "events_published_total", "").await;
        }
        assert_eq!(published as usize, *n, "{source}: rows published");
    }
    // Both admins took their share of the queue, and neither saw a duplicate.
    for admin in [&admin_a, &admin_b] {
        let applied = counter(admin, "events_consumed_total", "outcome=\"applied\"").await;
        assert!(applied > 0.0, "an admin replica audited nothing");
        let duplicates = counter(admin, "events_consumed_total", "outcome=\"duplicate\"").await;
        assert_eq!(duplicates, 0.0, "an event delivered twice");
    }
    let queue = platform.broker.queue_for("admin-service");
    assert_eq!(platform.broker.depth(&format!("{queue}.dlq")).await, 0);

    // The chain verifies, on either replica.
    for admin in &admin_apis {
        let verified = admin.get("/admin/audit-logs/verify", Some(&root)).await;
        assert_eq!(verified.status, 200, "{}", verified.body);
        assert_eq!(verified.body["valid"], true, "{}", verified.body);
        assert_eq!(
            verified.body["chainedRows"],
            events.len(),
            "{}",
            verified.body
        );
    }
}
