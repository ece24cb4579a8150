//! The read pool against the real server: reuse of released connections, closing of the others,
//! idle connections tested, the acquire timeout. Each test only touches its own connections, on
//! the server's `postgres` database.

use std::time::Duration;

use platform::readers::ReadPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Executor};

fn server() -> PgConnectOptions {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/postgres".into())
        .parse()
        .unwrap()
}

fn pool(max: u32) -> ReadPool {
    ReadPool::new(server(), max, Duration::from_secs(2))
}

async fn backend_pid(conn: &mut sqlx::PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
        .unwrap()
}

async fn alive(pid: i32) -> bool {
    let mut admin = server().connect().await.unwrap();
    for _ in 0..50 {
        let found: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)")
                .bind(pid)
                .fetch_one(&mut admin)
                .await
                .unwrap();
        if !found {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

#[tokio::test]
async fn a_released_connection_is_reused_without_a_new_session() {
    let readers = pool(4);
    let mut conn = readers.acquire().await.unwrap();
    let first = backend_pid(&mut conn).await;
    conn.release();
    assert_eq!(readers.num_idle(), 1);
    let mut conn = readers.acquire().await.unwrap();
    assert_eq!(backend_pid(&mut conn).await, first);
    conn.release();
}

#[tokio::test]
async fn a_connection_not_released_is_closed_not_reused() {
    let readers = pool(4);
    let mut conn = readers.acquire().await.unwrap();
    let first = backend_pid(&mut conn).await;
    drop(conn);
    assert_eq!(readers.num_idle(), 0);
    assert!(
        !alive(first).await,
        "the dropped connection's session is still open"
    );
    let mut conn = readers.acquire().await.unwrap();
    assert_ne!(backend_pid(&mut conn).await, first);
}

#[tokio::test]
async fn a_request_cancelled_mid_query_leaves_no_half_read_connection() {
    let readers = pool(1);
    let mut conn = readers.acquire().await.unwrap();
    let first = backend_pid(&mut conn).await;
    let cancelled = tokio::time::timeout(Duration::from_millis(100), async {
        conn.execute("SELECT pg_sleep(5)").await.unwrap();
        conn.release();
    })
    .await;
    assert!(cancelled.is_err());
    // The only slot is free again, on a new session that answers its own query.
    let mut conn = readers.acquire().await.unwrap();
    assert_ne!(backend_pid(&mut conn).await, first);
    let n: i32 = sqlx::query_scalar("SELECT 42")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(n, 42);
    conn.release();
}

#[tokio::test]
async fn an_idle_connection_the_server_ended_is_replaced_on_acquire() {
    let readers = pool(2);
    let mut conn = readers.acquire().await.unwrap();
    let first = backend_pid(&mut conn).await;
    conn.release();
    let mut admin = server().connect().await.unwrap();
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(first)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(ended);
    // Past the trusted idle time, the connection is tested before it is handed out.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let mut conn = readers.acquire().await.unwrap();
    assert_ne!(backend_pid(&mut conn).await, first);
    conn.release();
}

#[tokio::test]
async fn acquire_waits_for_a_free_slot_then_times_out() {
    let readers = ReadPool::new(server(), 1, Duration::from_millis(300));
    let held = readers.acquire().await.unwrap();
    let started = std::time::Instant::now();
    let err = readers.acquire().await.err().expect("no free slot");
    assert!(matches!(err, sqlx::Error::PoolTimedOut), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(250));
    // A slot released meanwhile is taken by a waiting acquire.
    let waiter = {
        let readers = readers.clone();
        tokio::spawn(async move { readers.acquire().await.map(|c| c.release()) })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    held.release();
    waiter.await.unwrap().unwrap();
}

#[tokio::test]
async fn beside_takes_the_pools_database_and_limit() {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(300))
        .connect_lazy_with(server().database("postgres"));
    let readers = ReadPool::beside(&pool);
    let held = readers.acquire().await.unwrap();
    assert!(matches!(
        readers.acquire().await.err(),
        Some(sqlx::Error::PoolTimedOut)
    ));
    drop(held);
    let mut conn = readers.acquire().await.unwrap();
    let db: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(db, "postgres");
    conn.release();
}
