//! Each phase of `mfe migrate` from its flags: the options checked (a bad one is a usage error),
//! the library's phase run with its reporting, the report shown.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use migrator::copy::CopyOptions;
use migrator::engine::switch::{self, Platform};
use migrator::verify::VerifyOptions;
use migrator::{Endpoints, MigrateError};
use platform::Service;

use super::{Reporting, UiArgs};
use crate::report::show;

type Outcome = Result<u8, MigrateError>;

pub(super) async fn plan(
    endpoints: &Endpoints,
    json: bool,
    long_transaction_seconds: u64,
    sync_hours: f64,
) -> Outcome {
    if !(sync_hours.is_finite() && sync_hours >= 0.0) {
        return Err(MigrateError::Usage(
            "--sync-hours must be a number of hours, 0 or more".into(),
        ));
    }
    let opts = migrator::plan::preflight::Options {
        long_transaction: Duration::from_secs(long_transaction_seconds),
        sync_hours,
    };
    Ok(show(&migrator::plan::plan(endpoints, &opts).await?, json))
}

pub(super) async fn copy(
    endpoints: &Endpoints,
    reporting: &Reporting,
    jobs: usize,
    chunk_rows: u64,
    max_rate: u64,
) -> Outcome {
    if jobs == 0 || chunk_rows == 0 {
        return Err(MigrateError::Usage(
            "--jobs and --chunk-rows must be at least 1".into(),
        ));
    }
    let opts = CopyOptions {
        jobs,
        chunk_rows,
        max_rows_per_second: max_rate,
    };
    let report = reporting
        .run(|bars| migrator::copy::copy(endpoints, &opts, bars))
        .await?;
    Ok(show(&report, reporting.json))
}

pub(super) async fn verify(
    endpoints: &Endpoints,
    reporting: &Reporting,
    max_listed: usize,
) -> Outcome {
    let opts = VerifyOptions { max_listed };
    let report = reporting
        .run(|bars| migrator::verify::verify(endpoints, &opts, bars))
        .await?;
    Ok(show(&report, reporting.json))
}

pub(super) async fn export(
    endpoints: &Endpoints,
    reporting: &Reporting,
    out: &Path,
    jobs: usize,
) -> Outcome {
    let report = reporting
        .run(|bars| migrator::archive::export(endpoints, out, jobs.max(1), bars))
        .await?;
    Ok(show(&report, reporting.json))
}

pub(super) async fn import(
    endpoints: &Endpoints,
    reporting: &Reporting,
    from: &Path,
    jobs: usize,
) -> Outcome {
    let report = reporting
        .run(|bars| migrator::archive::import(endpoints, from, jobs.max(1), bars))
        .await?;
    Ok(show(&report, reporting.json))
}

/// Until Ctrl-C.
async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
}

pub(super) async fn sync_by_diff(
    endpoints: &Endpoints,
    reporting: &Reporting,
    follow: bool,
    max_passes: u64,
) -> Outcome {
    let opts = migrator::sync::diff::DiffSyncOptions {
        max_passes: max_passes.max(1),
        follow: follow.then_some(Duration::from_secs(1)),
    };
    let report = reporting
        .run(|bars| async move {
            migrator::sync::diff::diff_sync(endpoints, &opts, bars.as_ref(), ctrl_c()).await
        })
        .await?;
    Ok(show(&report, reporting.json))
}

pub(super) async fn sync_by_slot(
    endpoints: &Endpoints,
    reporting: &Reporting,
    follow: bool,
) -> Outcome {
    let opts = migrator::sync::SyncOptions {
        follow,
        until_marker: None,
        wait_for_other: Duration::from_secs(15),
    };
    let quiet = reporting.json;
    let live = reporting.live();
    // A line a second at most: a round may take a few milliseconds.
    let last = std::sync::Mutex::new(None::<Instant>);
    let on_lag = move |lag: migrator::sync::Lag| {
        if let Some(live) = &live {
            live.lag(dashboard::live::Lag {
                bytes: lag.bytes,
                seconds: lag.seconds,
                changes_per_second: lag.changes_per_second,
            });
        }
        let mut last = last.lock().expect("lag clock");
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        *last = Some(Instant::now());
        if !quiet && follow {
            eprintln!(
                "sync: lag {} bytes, {:.1} s; {:.0} changes/s",
                crate::ui::thousands(lag.bytes),
                lag.seconds,
                lag.changes_per_second
            );
        }
    };
    let progress: Arc<dyn migrator::Progress> = match reporting.live() {
        Some(live) => live,
        None => Arc::new(migrator::Silent),
    };
    let report = migrator::sync::sync(endpoints, &opts, progress.as_ref(), &on_lag, ctrl_c()).await;
    reporting
        .finish(report.as_ref().err().map(|e| e.to_string()))
        .await;
    Ok(show(&report?, reporting.json))
}

pub(super) async fn cutover(
    endpoints: &Endpoints,
    reporting: &Reporting,
    max_lag_mb: u64,
    topology_file: PathBuf,
    lock_timeout_ms: u64,
) -> Outcome {
    let opts = migrator::cutover::CutoverOptions {
        max_lag_bytes: (max_lag_mb as i64).saturating_mul(1024 * 1024),
        topology_file,
        lock_timeout: Duration::from_millis(lock_timeout_ms.max(1)),
    };
    let platform = DevPlatform::default();
    let admin = endpoints.target(Service::Admin);
    let report = reporting
        .run(|bars| async move {
            let cutover = migrator::cutover::cutover(endpoints, &opts, bars.as_ref());
            switch::run(&platform, admin, cutover).await
        })
        .await?;
    Ok(show(&report, reporting.json))
}

pub(super) async fn rollback(
    endpoints: &Endpoints,
    reporting: &Reporting,
    topology_file: PathBuf,
    lock_timeout_ms: u64,
) -> Outcome {
    let opts = migrator::rollback::RollbackOptions {
        topology_file,
        lock_timeout: Duration::from_millis(lock_timeout_ms.max(1)),
    };
    let platform = DevPlatform::default();
    let legacy = endpoints.legacy();
    let report = reporting
        .run(|bars| async move {
            let rollback = migrator::rollback::rollback(endpoints, &opts, bars.as_ref());
            switch::run(&platform, legacy, rollback).await
        })
        .await?;
    Ok(show(&report, reporting.json))
}

pub(super) async fn dashboard(
    endpoints: &Endpoints,
    ui: &UiArgs,
    listen: std::net::SocketAddr,
) -> Outcome {
    let view = ui.start(ui.ui.unwrap_or(listen), endpoints, None).await?;
    eprintln!("a read-only view of the journal; Ctrl-C stops it");
    ctrl_c().await;
    drop(view);
    Ok(0)
}

/// How long `mfe dev` may take to stop, and to have every service ready again.
const DEV_STOP: Duration = Duration::from_secs(30);
const DEV_START: Duration = Duration::from_secs(120);

/// The platform as `mfe dev` runs it: held through its control file before a switch, so none
/// of its services writes while the databases are frozen, and started again after. Without
/// `mfe dev`, the operator stops them (see the runbook).
#[derive(Default)]
struct DevPlatform {
    held: tokio::sync::Mutex<Option<crate::devctl::DevHandle>>,
}

impl Platform for DevPlatform {
    fn hold(&self) -> BoxFuture<'_, migrator::Result<()>> {
        Box::pin(async move {
            let Some(dev) = crate::devctl::running() else {
                eprintln!(
                    "mfe dev is not running ({}): stop the services before the switch (SIGTERM) \
                     and start them after it in the new topology",
                    crate::devctl::pidfile().display()
                );
                return Ok(());
            };
            eprintln!("stopping the services mfe dev (pid {}) runs", dev.pid());
            dev.hold(DEV_STOP)
                .await
                .map_err(|e| MigrateError::Platform(format!("{e:#}; nothing was switched")))?;
            *self.held.lock().await = Some(dev);
            Ok(())
        })
    }

    fn restart(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(dev) = self.held.lock().await.take() else {
                return;
            };
            eprintln!(
                "starting the services again through mfe dev (pid {})",
                dev.pid()
            );
            match dev.restart(DEV_START).await {
                Ok(()) => eprintln!("every service is ready"),
                Err(e) => eprintln!("WARNING: {e:#}"),
            }
        })
    }

    /// As `mfe admin anchor-audit` would; a side without a chain got the other side's (carry),
    /// or admin anchors every row at its first start.
    fn anchor_audit<'a>(&'a self, url: &'a str) -> BoxFuture<'a, migrator::Result<()>> {
        Box::pin(async move {
            let failed = |e: &dyn std::fmt::Display| {
                MigrateError::Platform(format!("anchoring the switched audit rows: {e}"))
            };
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .map_err(|e| failed(&e))?;
            let anchored = admin_service::audit::chain::anchor_switched(&pool)
                .await
                .map_err(|e| failed(&e))?;
            if let Some(rows) = anchored {
                eprintln!(
                    "anchored {rows} audit row(s) the switch brought in, at the audit chain's end"
                );
            }
            pool.close().await;
            Ok(())
        })
    }
}
