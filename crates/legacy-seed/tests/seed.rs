//! The legacy seeder against a real PostgreSQL. Every later phase of the migration is tested on
//! databases it fills, so these tests hold it to its promises: the planned row counts on the
//! contract's exact schema, the same bytes for the same seed, every hard case at any scale, and
//! never overwriting data by accident. Each test seeds its own fresh database at a tiny scale.

use std::cell::RefCell;
use std::collections::BTreeMap;

use legacy_seed::{self as seed, DEMO_USERS, SeedError, SeedOptions, SeedReport};
use schema::contract::{ENUMS, FOREIGN_KEYS, TABLES};
use sqlx::PgPool;
use test_support::TestDb;

/// 100 users, 1,000 payments, 500 audit log entries, plus the special rows.
const SCALE: f64 = 0.01;

fn options(db: &TestDb, seed: u64) -> SeedOptions {
    SeedOptions {
        url: db.url.clone(),
        scale: SCALE,
        seed,
        replace: false,
    }
}

/// A fresh database seeded at [`SCALE`].
async fn seeded(seed: u64) -> (TestDb, SeedReport, PgPool) {
    let db = TestDb::unborn();
    let report = seed::seed(&options(&db, seed), &|_, _| {})
        .await
        .expect("seeding succeeds");
    let pool = db.pool().await;
    (db, report, pool)
}

async fn scalar(pool: &PgPool, sql: String) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn table_counts(pool: &PgPool) -> Vec<(&'static str, u64)> {
    let mut out = Vec::new();
    for t in TABLES {
        let n = scalar(pool, format!("SELECT count(*) FROM \"{}\"", t.name)).await;
        out.push((t.name, n as u64));
    }
    out
}

/// Columns of the contract whose type satisfies `pred`: (table, column, nullable).
fn columns(pred: impl Fn(&str) -> bool) -> Vec<(&'static str, &'static str, bool)> {
    TABLES
        .iter()
        .flat_map(|t| t.columns.iter().map(move |c| (t.name, c)))
        .filter(|(_, c)| pred(c.data_type))
        .map(|(t, c)| (t, c.name, c.nullable))
        .collect()
}

#[tokio::test]
async fn seeds_the_planned_rows_on_the_contract_schema() {
    let db = TestDb::unborn();
    let last_progress = RefCell::new(BTreeMap::<String, u64>::new());
    let report = seed::seed(&options(&db, 42), &|table, rows| {
        let mut last = last_progress.borrow_mut();
        let before = last.insert(table.to_string(), rows).unwrap_or(0);
        assert!(
            rows >= before,
            "{table}: progress went back from {before} to {rows}"
        );
    })
    .await
    .expect("seeding succeeds");
    let pool = db.pool().await;

    let planned = seed::planned_rows(SCALE).expect("valid scale");
    assert_eq!(report.rows, planned, "the report counts the planned rows");
    assert_eq!(
        table_counts(&pool).await,
        planned,
        "the database holds the planned rows"
    );
    assert!(
        planned.iter().all(|(_, n)| *n > 0),
        "every table has rows: {planned:?}"
    );
    let progress: Vec<(&str, u64)> = TABLES
        .iter()
        .map(|t| {
            (
                t.name,
                last_progress.borrow().get(t.name).copied().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        progress, planned,
        "the last progress report of each table is its row count"
    );
    assert_eq!(report.total(), planned.iter().map(|(_, n)| n).sum::<u64>());

    let actual = test_support::Catalog::read(&pool, "public")
        .await
        .expect("read catalog");
    let diff = actual.diff(&test_support::schema::legacy_catalog().await);
    assert!(
        diff.is_empty(),
        "the schema is the legacy DDL exactly: {diff:#?}"
    );

    for fk in FOREIGN_KEYS {
        let orphans = scalar(
            &pool,
            format!(
                "SELECT count(*) FROM \"{}\" c WHERE c.\"{}\" IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM \"{}\" r WHERE r.\"{}\" = c.\"{}\")",
                fk.table, fk.column, fk.references, fk.referenced_column, fk.column
            ),
        )
        .await;
        assert_eq!(orphans, 0, "{}: every reference resolves", fk.name);
    }
    let validated = scalar(
        &pool,
        "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated".into(),
    )
    .await;
    assert_eq!(
        validated as usize,
        FOREIGN_KEYS.len(),
        "every foreign key is enforced"
    );
}

#[tokio::test]
async fn rows_are_consistent_like_the_services_wrote_them() {
    let (_db, _, pool) = seeded(42).await;
    let violations = [
        // A payment's history: pending, then its status (ties at the same millisecond keep
        // pending first).
        "SELECT count(*) FROM payments p
         WHERE (SELECT string_agg(t.status::text, ',' ORDER BY t.created_at, t.status <> 'pending')
                FROM payment_transactions t WHERE t.payment_id = p.id)
               IS DISTINCT FROM CASE WHEN p.status = 'pending' THEN 'pending' ELSE 'pending,' || p.status END",
        "SELECT count(*) FROM payments WHERE (status = 'completed') <> (completed_at IS NOT NULL)",
        "SELECT count(*) FROM payments WHERE (status = 'failed') <> (failure_reason IS NOT NULL)",
        "SELECT count(*) FROM payments WHERE status = 'pending' AND psp_transaction_id IS NOT NULL",
        "SELECT count(*) FROM payments WHERE updated_at < created_at OR completed_at < created_at",
        "SELECT count(*) FROM users WHERE updated_at < created_at",
        "SELECT count(*) FROM user_profiles WHERE updated_at < created_at",
        "SELECT count(*) FROM refresh_tokens WHERE expires_at < created_at",
        "SELECT count(*) FROM payments WHERE sender_id = recipient_id",
        "SELECT count(*) FROM users WHERE password_hash !~ '^\\$2[ab]\\$10\\$[./A-Za-z0-9]{53}$'",
    ];
    for sql in violations {
        assert_eq!(scalar(&pool, sql.to_string()).await, 0, "{sql}");
    }
    let uuid = "'^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'";
    for table in TABLES.iter().filter(|t| t.key == "id") {
        let bad = scalar(
            &pool,
            format!("SELECT count(*) FROM \"{}\" WHERE id !~ {uuid}", table.name),
        )
        .await;
        assert_eq!(bad, 0, "{}: ids are lowercase hyphenated UUIDs", table.name);
    }
    for prefix in ["$2a$", "$2b$"] {
        let n = scalar(
            &pool,
            format!("SELECT count(*) FROM users WHERE password_hash LIKE '{prefix}%'"),
        )
        .await;
        assert!(n > 0, "some hashes are {prefix}");
    }
    let completed = scalar(
        &pool,
        "SELECT count(*) FROM payments WHERE status = 'completed'".into(),
    )
    .await;
    let all = scalar(&pool, "SELECT count(*) FROM payments".into()).await;
    assert!(
        completed * 2 > all,
        "most payments are completed ({completed} of {all})"
    );
}

#[tokio::test]
async fn same_seed_same_bytes_other_seed_other_bytes() {
    let (a, b, c) = tokio::join!(seeded(42), seeded(42), seeded(7));
    let (fa, fb, fc) = tokio::join!(fingerprint(&a.2), fingerprint(&b.2), fingerprint(&c.2));
    assert_eq!(fa, fb, "the same scale and seed give identical tables");
    for ((table, x), (_, z)) in fa.iter().zip(&fc) {
        assert_ne!(x, z, "{table}: another seed gives other contents");
    }
}

/// Per table, the md5 of all its rows' text in key order.
async fn fingerprint(pool: &PgPool) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for t in TABLES {
        let sql = format!(
            "SELECT md5(string_agg(t::text, '|' ORDER BY t.\"{}\")) FROM \"{}\" t",
            t.key, t.name
        );
        let md5: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(pool)
            .await
            .expect("fingerprint");
        out.push((t.name, md5));
    }
    out
}

#[tokio::test]
async fn every_hard_case_is_present() {
    let (_db, _, pool) = seeded(42).await;

    for (table, column, _) in columns(|_| true).into_iter().filter(|c| c.2) {
        let n = scalar(
            &pool,
            format!("SELECT count(*) FROM \"{table}\" WHERE \"{column}\" IS NULL"),
        )
        .await;
        assert!(n > 0, "{table}.{column}: some row has NULL");
    }

    for (type_name, labels) in ENUMS {
        let quoted = format!("\"{type_name}\"");
        let selects: Vec<String> = columns(|t| t == quoted)
            .iter()
            .map(|(t, c, _)| format!("SELECT \"{c}\"::text AS v FROM \"{t}\""))
            .collect();
        let sql = format!(
            "SELECT DISTINCT v FROM ({}) u ORDER BY v",
            selects.join(" UNION ALL ")
        );
        let used: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(&pool)
            .await
            .unwrap();
        let mut want: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        want.sort();
        assert_eq!(used, want, "every label of {type_name} is used");
    }

    for amount in ["0.01", "99999999.99"] {
        let n = scalar(
            &pool,
            format!("SELECT count(*) FROM payments WHERE amount = {amount}"),
        )
        .await;
        assert!(n > 0, "a payment of {amount}");
    }

    for (table, column, _) in columns(|t| t == "jsonb") {
        let json_null = scalar(
            &pool,
            format!("SELECT count(*) FROM \"{table}\" WHERE \"{column}\" = 'null'::jsonb"),
        )
        .await;
        assert!(json_null > 0, "{table}.{column}: JSON null");
        // An object holding a nested object or array, with non-ASCII text.
        let nested = scalar(
            &pool,
            format!(
                "SELECT count(*) FROM \"{table}\" t WHERE jsonb_typeof(t.\"{column}\") = 'object'
                 AND octet_length(t.\"{column}\"::text) > char_length(t.\"{column}\"::text)
                 AND EXISTS (SELECT 1 FROM jsonb_each(t.\"{column}\") e WHERE jsonb_typeof(e.value) IN ('object', 'array'))"
            ),
        )
        .await;
        assert!(nested > 0, "{table}.{column}: nested unicode JSON");
    }

    for (table, column, _) in columns(|t| t.starts_with("timestamp")) {
        let sql = format!(
            "SELECT count(*) FILTER (WHERE \"{column}\" < '1000-01-01') * count(*) FILTER (WHERE \"{column}\" > '9000-01-01')
             FROM \"{table}\""
        );
        assert!(
            scalar(&pool, sql).await > 0,
            "{table}.{column}: timestamps before year 1000 and after 9000"
        );
    }
    for ts in ["0001-01-01 00:00:00.001", "9999-12-31 23:59:59.999"] {
        let n = scalar(
            &pool,
            format!("SELECT count(*) FROM users WHERE created_at = '{ts}'"),
        )
        .await;
        assert_eq!(n, 1, "a user created at {ts}, to the millisecond");
    }

    let case = scalar(
        &pool,
        "SELECT count(*) FROM users WHERE lower(email) = 'case@legacy.test'".into(),
    )
    .await;
    assert_eq!(case, 2, "two emails that differ only by case");

    let texts: &[(&str, &str)] = &[
        ("users", "email = 'zoë@exämple.jp'"),
        ("users", "email = U&'zoe\\0308@exa\\0308mple.jp'"),
        ("users", "name LIKE '%😀%'"),
        ("users", "name LIKE '%山田%'"),
        ("users", "name LIKE '%مريم%'"),
        ("payments", "description LIKE '%👩‍👩‍👧%'"),
        ("payments", "description LIKE '%' || U&'\\0301' || '%'"),
        (
            "payments",
            "description LIKE '%; DROP TABLE users; --%' AND strpos(description, '\\') > 0",
        ),
        (
            "payments",
            "strpos(description, '100%') > 0 AND strpos(description, '_') > 0",
        ),
        ("payments", "octet_length(description) >= 100000"),
        ("user_profiles", "octet_length(bio) >= 10000"),
        ("user_profiles", "address LIKE '%תל אביב%'"),
        ("refresh_tokens", "token LIKE 'tok''%'"),
        ("system_config", "key LIKE '%🔑'"),
        ("audit_logs", "details->>'escaped' LIKE '%\"%'"),
    ];
    for (table, predicate) in texts {
        let n = scalar(
            &pool,
            format!("SELECT count(*) FROM \"{table}\" WHERE {predicate}"),
        )
        .await;
        assert!(n > 0, "{table}: a row where {predicate}");
    }

    for (email, password, role) in DEMO_USERS {
        let (hash, actual_role): (String, String) =
            sqlx::query_as("SELECT password_hash, role::text FROM users WHERE email = $1")
                .bind(email)
                .fetch_one(&pool)
                .await
                .unwrap_or_else(|e| panic!("demo user {email}: {e}"));
        assert_eq!(&actual_role, role, "{email}");
        assert!(
            bcrypt::verify(password, &hash).expect("a bcrypt hash"),
            "{email} logs in with {password}"
        );
    }
    let between = scalar(
        &pool,
        "SELECT count(*) FROM payments p JOIN users s ON s.id = p.sender_id JOIN users r ON r.id = p.recipient_id
         WHERE ARRAY[s.email, r.email] <@ ARRAY['alice@legacy.test', 'bob@legacy.test']"
            .into(),
    )
    .await;
    assert!(between >= 2, "alice and bob pay each other");
}

#[tokio::test]
async fn refuses_to_overwrite_data_unless_replace() {
    let db = TestDb::unborn();
    let mut opts = options(&db, 42);
    opts.url = with_password(&db.url);
    opts.scale = 0.001;
    seed::seed(&opts, &|_, _| {})
        .await
        .expect("first seeding succeeds");
    let pool = db.pool().await;
    let first = table_counts(&pool).await;

    let err = seed::seed(&opts, &|_, _| {})
        .await
        .expect_err("a second seeding is refused");
    assert!(matches!(err, SeedError::NotEmpty { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("replace") && message.contains(&db.name),
        "{message}"
    );
    assert!(
        !message.contains("s3cret"),
        "the password is masked: {message}"
    );
    assert_eq!(table_counts(&pool).await, first, "nothing changed");

    opts.replace = true;
    opts.seed = 7;
    seed::seed(&opts, &|_, _| {})
        .await
        .expect("replace reseeds");
    assert_eq!(
        table_counts(&pool).await,
        seed::planned_rows(0.001).unwrap(),
        "replaced, not appended"
    );
}

#[tokio::test]
async fn seeds_over_empty_legacy_tables_without_replace() {
    let db = TestDb::new().await;
    db.execute_script(test_support::LEGACY_SCHEMA_SQL).await;
    let mut opts = options(&db, 42);
    opts.scale = 0.001;
    let report = seed::seed(&opts, &|_, _| {})
        .await
        .expect("empty tables hold nothing to lose");
    assert_eq!(report.rows, seed::planned_rows(0.001).unwrap());
}

#[tokio::test]
async fn rejects_a_scale_that_is_not_positive() {
    let db = TestDb::unborn();
    for scale in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let mut opts = options(&db, 42);
        opts.scale = scale;
        let err = seed::seed(&opts, &|_, _| {}).await.expect_err("refused");
        assert!(
            matches!(err, SeedError::InvalidScale(_)),
            "{scale}: {err:?}"
        );
        assert!(err.to_string().contains("scale"), "{err}");
    }
    let server = PgPool::connect(&test_support::db::server_url())
        .await
        .unwrap();
    let created: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&db.name)
            .fetch_one(&server)
            .await
            .unwrap();
    assert!(
        !created,
        "nothing is created before the options are checked"
    );
}

/// `url` with a password (ignored by the test server's trust authentication), to check that
/// messages mask it. A URL that already has one is returned unchanged.
fn with_password(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    match url[start..].find('@') {
        Some(at) if !url[start..start + at].contains(':') => {
            format!("{}:s3cret{}", &url[..start + at], &url[start + at..])
        }
        _ => url.to_string(),
    }
}
