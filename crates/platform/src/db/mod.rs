//! PostgreSQL connections: URL checks, creating a service's database when it is missing, pools
//! (on one server, or on the first of several that suits: [`servers`]).

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

use crate::config::mask_url;

pub mod servers;

/// Parses a PostgreSQL URL of one server; the error says what is wrong without echoing the URL
/// (it may hold a password). A list of servers is refused: what calls this (the migration tool,
/// the dashboard) works on one server's data, and must not land on another one unnoticed.
pub fn parse_url(url: &str) -> Result<PgConnectOptions, String> {
    let mut parsed = servers::parse(url)?;
    if parsed.hosts.len() > 1 {
        return Err(
            "a list of servers is for the services: give the address of the one server (the \
             primary) here"
                .into(),
        );
    }
    Ok(parsed.hosts.remove(0))
}

/// Why a database could not be reached or prepared. The URL in it is always masked.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0}")]
    BadUrl(String),
    #[error("cannot reach database {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot create database {url}: {source}")]
    Create {
        url: String,
        #[source]
        source: sqlx::Error,
    },
}

/// Creates the database named in `url` when it does not exist yet, connecting to the server's
/// `postgres` maintenance database to do so. Safe when several processes race to create it.
pub async fn ensure_database(url: &str) -> Result<(), DbError> {
    let mut servers = servers::parse(url).map_err(DbError::BadUrl)?;
    let masked = mask_url(url);
    let name = servers.hosts[0]
        .get_database()
        .unwrap_or("postgres")
        .to_string();
    // Each server is tried on its maintenance database: the one named may not exist yet.
    for host in &mut servers.hosts {
        *host = host.clone().database("postgres");
    }
    let mut conn = servers.hosts[on_server(&servers, &masked).await?]
        .clone()
        .log_statements(tracing::log::LevelFilter::Debug)
        .connect()
        .await
        .map_err(|source| DbError::Unreachable {
            url: masked.clone(),
            source,
        })?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await
            .map_err(|source| DbError::Unreachable {
                url: masked.clone(),
                source,
            })?;
    if exists {
        return Ok(());
    }
    let create = format!("CREATE DATABASE {}", quote_ident(&name));
    match sqlx::raw_sql(sqlx::AssertSqlSafe(create))
        .execute(&mut conn)
        .await
    {
        Ok(_) => {
            tracing::info!(database = %name, "created database");
            Ok(())
        }
        // 42P04 duplicate_database, 23505 when two creators race on pg_database's unique index.
        Err(sqlx::Error::Database(e))
            if matches!(e.code().as_deref(), Some("42P04") | Some("23505")) =>
        {
            Ok(())
        }
        Err(source) => Err(DbError::Create {
            url: masked,
            source,
        }),
    }
}

/// How long a connection that came back in a known state (the pool's test on release, or the read
/// pool's completed statement) is handed out again untested; one that sat idle longer is pinged
/// first (the server may have restarted meanwhile).
pub(crate) const TRUST_RECENTLY_RELEASED: Duration = Duration::from_secs(1);

/// Which of `servers` to work on: the first that suits when there is a choice to make.
async fn on_server(servers: &servers::Servers, masked: &str) -> Result<usize, DbError> {
    if !servers.several() {
        return Ok(0);
    }
    servers.find().await.map_err(|source| DbError::Unreachable {
        url: masked.to_string(),
        source,
    })
}

/// `opts` with the pool's statement logging.
fn logged(opts: PgConnectOptions) -> PgConnectOptions {
    opts.log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1))
}

/// A pool on `url`; fails fast (with the masked URL) when the server does not answer. With
/// several servers in `url` (or a `target_session_attrs`), on the first that suits, following a
/// failover to another ([`servers::follow`]).
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, DbError> {
    let servers = servers::parse(url).map_err(DbError::BadUrl)?;
    let current = on_server(&servers, &mask_url(url)).await?;
    let attrs = servers.attrs;
    let moved = servers::Moved::new();
    let seen = moved.clone();
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // sqlx pings every connection when it comes back to the pool; pinging it again when it is
        // handed out would make a one-query request three round trips to the server instead of
        // two. Only a connection idle for a while is tested first (HikariCP's "alive bypass").
        .test_before_acquire(false)
        // A server that stopped suiting between the check and the connection (demoted meanwhile).
        .after_connect(move |conn, _| Box::pin(async move { attrs.check(conn).await }))
        .before_acquire(move |conn, meta| {
            // Made on the server the pool has moved away from (decided here: no clone of the
            // shared state per acquire).
            let stale = seen.made_before(meta.age);
            Box::pin(async move {
                if stale {
                    return Ok(false);
                }
                if meta.idle_for > TRUST_RECENTLY_RELEASED {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(logged(servers.hosts[current].clone()))
        .await
        .map_err(|source| DbError::Unreachable {
            url: mask_url(url),
            source,
        })?;
    if servers.several() {
        tokio::spawn(servers::follow(pool.clone(), servers, current, moved));
    }
    Ok(pool)
}

/// Quotes a PostgreSQL identifier.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}
