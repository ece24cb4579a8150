//! A fresh database per test, so tests run in parallel without seeing each other's rows.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection};

/// The server tests create their databases on: `TEST_DATABASE_URL`, else the local default.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/postgres".into())
}

/// A database created for one test and dropped (with its connections) when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
    server: PgConnectOptions,
}

impl TestDb {
    /// Creates an empty database with a unique name.
    pub async fn new() -> Self {
        let db = Self::unborn();
        let mut conn = db
            .server
            .connect()
            .await
            .expect("the test PostgreSQL server is reachable");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{}\"",
            db.name
        )))
        .execute(&mut conn)
        .await
        .expect("can create a test database");
        conn.close().await.ok();
        db
    }

    /// A unique database name and URL, not created: for code that must create it itself. Still
    /// dropped at the end of the test.
    pub fn unborn() -> Self {
        Self::unborn_at(&server_url())
    }

    /// [`TestDb::unborn`] on another server (`server`: a URL of any database there), for a test
    /// that needs a database on a cluster of its own (one it stops).
    pub fn unborn_at(server: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "mfe_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let url = url_with_database(server, &name);
        let server: PgConnectOptions = server.parse().expect("a PostgreSQL URL");
        Self { name, url, server }
    }

    /// A small pool on the test database.
    pub async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(5)
            .connect(&self.url)
            .await
            .expect("the test database is reachable")
    }

    /// Runs a SQL script (several statements) on the test database.
    pub async fn execute_script(&self, sql: &str) {
        let mut conn = PgConnection::connect(&self.url)
            .await
            .expect("connect to test database");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await
            .expect("script runs");
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let server = self.server.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(mut conn) = server.connect().await {
                    // A logical replication slot (the migration's change capture) keeps its
                    // database from being dropped, and the server's WAL from being recycled.
                    let _ = sqlx::query(
                        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                         WHERE database = $1 AND NOT active",
                    )
                    .bind(&name)
                    .execute(&mut conn)
                    .await;
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

/// `url` pointing at database `name` instead.
pub fn url_with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}
