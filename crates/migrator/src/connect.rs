//! Connections of the tool: each names its database in errors (password masked) and uses the same
//! session settings, so row text renders identically on every side.

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::error::{MigrateError, Result};
use crate::sql::SESSION_SETUP;

fn unreachable(which: &str, url: &str, source: sqlx::Error) -> MigrateError {
    MigrateError::Unreachable {
        which: which.to_string(),
        url: platform::config::mask_url(url),
        source,
    }
}

/// One connection to `url`; `which` names it in errors ("legacy", "payments-service", ...).
pub async fn connection(which: &str, url: &str) -> Result<PgConnection> {
    let opts = platform::db::parse_url(url).map_err(MigrateError::Usage)?;
    let opts = quiet(opts);
    let mut conn = PgConnection::connect_with(&opts)
        .await
        .map_err(|e| unreachable(which, url, e))?;
    sqlx::raw_sql(SESSION_SETUP).execute(&mut conn).await?;
    Ok(conn)
}

/// A pool on `url` whose connections use the tool's session settings.
pub async fn pool(which: &str, url: &str, size: u32) -> Result<PgPool> {
    let opts = platform::db::parse_url(url).map_err(MigrateError::Usage)?;
    let opts = quiet(opts);
    PgPoolOptions::new()
        .max_connections(size.max(1))
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::raw_sql(SESSION_SETUP).execute(conn).await?;
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
