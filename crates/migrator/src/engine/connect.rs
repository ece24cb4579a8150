//! Connections of the tool: each names its database in errors (password masked) and uses the same
//! session settings, so row text renders identically on every side.

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::engine::sql::SESSION_SETUP;
use crate::error::{MigrateError, Result};

fn unreachable(which: &str, url: &str, source: sqlx::Error) -> MigrateError {
    MigrateError::Unreachable {
        which: which.to_string(),
        url: platform::config::mask_url(url),
        source,
    }
}

/// Every connection of the tool says what it is in `pg_stat_activity`.
const APP: &str = "mfe migrate";

/// One connection to `url`; `which` names it in errors ("legacy", "payments-service", ...).
pub async fn connection(which: &str, url: &str) -> Result<PgConnection> {
    connection_as(which, url, APP).await
}

/// [`connection`] under another `application_name`.
pub async fn connection_as(which: &str, url: &str, app: &str) -> Result<PgConnection> {
    let opts = platform::db::parse_url(url).map_err(MigrateError::Usage)?;
    let opts = quiet(opts).application_name(app);
    let mut conn = PgConnection::connect_with(&opts)
        .await
        .map_err(|e| unreachable(which, url, e))?;
    sqlx::raw_sql(SESSION_SETUP).execute(&mut conn).await?;
    Ok(conn)
}

/// The pool a load writes through (see [`crate::engine::lease`]): its backends are known by name, and
/// each one ends its statement soon after losing its client: every
/// `MFE_MIGRATE_CLIENT_CHECK_MS` milliseconds (default 1000, 0 = never) the server checks that the
/// client is still there (PostgreSQL 14 and later; an older server just does without).
pub async fn loader_pool(which: &str, url: &str, size: u32) -> Result<PgPool> {
    let check_ms = match std::env::var("MFE_MIGRATE_CLIENT_CHECK_MS") {
        Ok(v) => v.trim().parse::<u32>().map_err(|_| {
            MigrateError::Usage(format!(
                "MFE_MIGRATE_CLIENT_CHECK_MS: expected milliseconds, got {v:?}"
            ))
        })?,
        Err(_) => 1000,
    };
    let opts = platform::db::parse_url(url).map_err(MigrateError::Usage)?;
    let opts = quiet(opts).application_name(crate::engine::lease::LOADER_APP);
    PgPoolOptions::new()
        .max_connections(size.max(1))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                sqlx::raw_sql(SESSION_SETUP).execute(&mut *conn).await?;
                if check_ms > 0 {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "SET client_connection_check_interval = {check_ms}"
                    )))
                    .execute(&mut *conn)
                    .await;
                }
                Ok(())
            })
        })
        .connect_with(opts)
        .await
        .map_err(|e| unreachable(which, url, e))
}

/// Bulk statements of a migration run for seconds by design: no slow-statement warnings.
fn quiet(opts: sqlx::postgres::PgConnectOptions) -> sqlx::postgres::PgConnectOptions {
    opts.log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(
            tracing::log::LevelFilter::Debug,
            std::time::Duration::from_secs(60),
        )
}
