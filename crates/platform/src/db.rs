//! PostgreSQL connections: URL checks, creating a service's database when it is missing, pools.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

use crate::config::mask_url;

/// Parses a PostgreSQL URL; the error says what is wrong without echoing the URL (it may hold a
/// password).
pub fn parse_url(url: &str) -> Result<PgConnectOptions, String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("expected a postgres:// or postgresql:// URL".into());
    }
    PgConnectOptions::from_str(url).map_err(|e| format!("not a valid PostgreSQL URL ({e})"))
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
    let opts = parse_url(url).map_err(DbError::BadUrl)?;
    let name = opts.get_database().unwrap_or("postgres").to_string();
    let masked = mask_url(url);
    let mut conn = opts
        .clone()
        .database("postgres")
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

/// A pool on `url`; fails fast (with the masked URL) when the server does not answer.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, DbError> {
    let opts = parse_url(url)
        .map_err(DbError::BadUrl)?
        .log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // sqlx pings every connection when it comes back to the pool; pinging it again when it is
        // handed out would make a one-query request three round trips to the server instead of
        // two. Only a connection idle for a while is tested first (HikariCP's "alive bypass").
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > TRUST_RECENTLY_RELEASED {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(opts)
        .await
        .map_err(|source| DbError::Unreachable {
            url: mask_url(url),
            source,
        })
}

/// Quotes a PostgreSQL identifier.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}
