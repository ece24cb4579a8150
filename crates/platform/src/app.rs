//! Starting a service: open (and in the split topology create and migrate) its database, bind,
//! serve until SIGTERM. Each service's `main.rs` is a thin call into this.

use std::future::Future;

use axum::Router;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;

use crate::config::{ExposeSecret, ServiceConfig, Topology, mask_url};

/// Opens the service's database. In the split topology the database is created when missing, as
/// the service owns it; in the shared topology it is the legacy database, which must exist.
/// Either way the service's own migrations are applied (idempotent on the legacy tables).
pub async fn open_database(config: &ServiceConfig, migrator: &Migrator) -> anyhow::Result<PgPool> {
    if config.topology == Topology::Split {
        crate::db::ensure_database(config.database_url.expose_secret()).await?;
    }
    let pool = crate::db::connect(
        config.database_url.expose_secret(),
        config.db_max_connections,
    )
    .await?;
    migrator.run(&pool).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot apply the migrations of {} to {}: {e}",
            config.service,
            mask_url(config.database_url.expose_secret())
        )
    })?;
    Ok(pool)
}

/// A service bound to its port, ready to serve.
pub struct Application {
    listener: TcpListener,
    router: Router,
    port: u16,
}

impl Application {
    pub async fn bind(config: &ServiceConfig, router: Router) -> anyhow::Result<Self> {
        let listener = crate::server::bind(&config.host, config.port)
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot listen on {}:{}: {e}", config.host, config.port)
            })?;
        let port = listener.local_addr()?.port();
        Ok(Self {
            listener,
            router,
            port,
        })
    }

    /// The bound port (useful when the configured port was 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        crate::server::serve(self.listener, self.router, shutdown).await
    }
}

/// The body of a service's `main`: logs, then `start`, then serving until SIGTERM/Ctrl-C. A startup
/// error is one line on stderr and exit code 1 (2 for a configuration error), never a panic trace.
pub fn main<F, Fut>(service: crate::Service, start: F) -> std::process::ExitCode
where
    F: FnOnce(ServiceConfig) -> Fut,
    Fut: Future<Output = anyhow::Result<Application>>,
{
    let env = crate::Env::from_process();
    let config = match ServiceConfig::from_env(service, &env) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{service}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let traces = match crate::otel::Traces::from_env(service.name()) {
        Ok(traces) => traces,
        Err(e) => {
            eprintln!("{service}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    crate::telemetry::init(config.log_format, traces.as_ref());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{service}: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let topology = config.topology;
        let topology_from = config.topology_source.clone();
        let database = mask_url(config.database_url.expose_secret());
        if let Some(var) = &config.unused_database_url {
            tracing::warn!(
                %service, ?topology, %topology_from, %database,
                "{var} is set but unused: the topology is {topology:?} (from {topology_from}), so \
                 the service uses the shared database; set DATABASE_TOPOLOGY=split to use {var}"
            );
        }
        let app = start(config).await?;
        tracing::info!(%service, port = app.port(), ?topology, %topology_from, %database, "listening");
        app.run_until(crate::server::shutdown_signal()).await?;
        tracing::info!(%service, "stopped");
        anyhow::Ok(())
    });
    if let Some(traces) = traces {
        traces.shutdown();
    }
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if e.downcast_ref::<crate::ConfigError>().is_some() {
                eprintln!("{service}: {e:#}");
                return std::process::ExitCode::from(2);
            }
            tracing::error!(error = %format!("{e:#}"), "{service} failed");
            eprintln!("{service}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
