//! `mfe migrate <phase>`: the seed's migration phases over the engine in `migrator`.
//!
//! Exit codes: 0 done and consistent, 1 differences found (`verify`), 2 usage, connection,
//! contract or other errors.

use std::sync::Arc;

use clap::{Args, Subcommand};
use migrator::Endpoints;
use migrator::MigrateError;
use platform::Service;

use crate::report::show;
use crate::ui::Bars;

mod phases;

#[derive(Subcommand)]
pub enum Phase {
    /// Check the legacy database against the contract, show what goes where, and run the preflight
    /// of a live migration (wal_level, free slots and WAL senders, max_slot_wal_keep_size, long
    /// transactions, replica identity, disk for the WAL a slot keeps): each ok, warn or fail with
    /// what to change. Exit code 1 when a check fails. Changes nothing.
    Plan {
        /// Transactions open longer than this on the legacy server are reported.
        #[arg(long, default_value_t = 300)]
        long_transaction_seconds: u64,
        /// How long sync is expected to run before cutover (for the WAL the slot keeps).
        #[arg(long, default_value_t = 1.0)]
        sync_hours: f64,
    },
    /// Create the four service databases if missing and apply each service's own migrations.
    Prepare,
    /// Stream every table from the legacy database into its service database (binary COPY, one
    /// snapshot, parallel, indexes after the load). Resumes where a previous run stopped, first
    /// ending any statement a killed run left running; refused while another copy or import runs.
    Copy {
        /// Chunks copied at once.
        #[arg(long, default_value_t = 4)]
        jobs: usize,
        /// Split tables larger than this into heap block ranges of about this many rows.
        #[arg(long, default_value_t = 250_000)]
        chunk_rows: u64,
        /// Read at most this many rows per second from the legacy database, over every job (for a
        /// legacy database that serves production meanwhile). 0: as fast as it goes.
        #[arg(long, default_value_t = 0, value_name = "ROWS_PER_SECOND")]
        max_rate: u64,
    },
    /// Compare row counts and full-content checksums of every table on both sides, name the rows
    /// that differ, and count orphaned cross-service references. Exit code 1 on any difference.
    Verify {
        /// Ids listed per table and kind of difference.
        #[arg(long, default_value_t = 20)]
        max_listed: usize,
    },
    /// Write every legacy table (one snapshot) into DIR: a compressed file per table and a
    /// manifest of row counts and checksums. Also the pre-migration backup.
    Export {
        #[arg(long)]
        out: std::path::PathBuf,
        /// Tables exported at once.
        #[arg(long, default_value_t = 4)]
        jobs: usize,
    },
    /// Load an export into the prepared service databases, after checking every file against its
    /// manifest (a damaged archive is refused before anything is written).
    Import {
        #[arg(long)]
        from: std::path::PathBuf,
        /// Tables loaded at once.
        #[arg(long, default_value_t = 4)]
        jobs: usize,
    },
    /// Apply to the service databases what the legacy database committed since the copy's
    /// snapshot, from the capture slot `copy` made: in commit order, one legacy transaction at a
    /// time, resumable. Runs until caught up; with --follow, until stopped (Ctrl-C), showing the
    /// lag and the changes per second.
    Sync {
        #[arg(long)]
        follow: bool,
        /// `slot` (the capture slot copy made) or `diff` (no slot: compare by checksums and
        /// rewrite the rows that differ; read access to the legacy database is enough).
        #[arg(long, value_enum, default_value_t = SyncMethod::Slot)]
        method: SyncMethod,
        /// With --method diff and no --follow: passes at most.
        #[arg(long, default_value_t = 10)]
        max_passes: u64,
    },
    /// Move the platform to the service databases: catch up, freeze writes to the legacy database
    /// (every role, superusers included; sessions ended), sync to a marker written after the
    /// freeze, verify every row changed since the last clean verify, and switch the topology file.
    /// Prints how long writes were frozen. Any failure makes the legacy database writable again
    /// and switches nothing.
    Cutover {
        /// Refuse when sync is still this many MB behind after catching up.
        #[arg(long, default_value_t = 64)]
        max_lag_mb: u64,
        /// The topology file the services and `mfe dev` read.
        #[arg(long, env = "MFE_TOPOLOGY_FILE", default_value = platform::config::DEFAULT_TOPOLOGY_FILE)]
        topology_file: std::path::PathBuf,
        /// How long the freeze waits for writes in flight, in milliseconds.
        #[arg(long, default_value_t = 5000)]
        lock_timeout_ms: u64,
    },
    /// Move the platform back to the legacy database after a cutover, with every write the
    /// services made since: stop the services (through `mfe dev`), freeze the service databases,
    /// write each changed row back in the legacy foreign keys' order (conflicts kept and listed),
    /// verify, make legacy writable, switch the topology file to `shared`, restart the services.
    /// Prints the freeze and the rows written back per table. Resumes after a crash; a second run
    /// writes nothing.
    Rollback {
        /// The topology file the services and `mfe dev` read.
        #[arg(long, env = "MFE_TOPOLOGY_FILE", default_value = platform::config::DEFAULT_TOPOLOGY_FILE)]
        topology_file: std::path::PathBuf,
        /// How long freezing a service database waits for writes in flight, in milliseconds.
        #[arg(long, default_value_t = 5000)]
        lock_timeout_ms: u64,
    },
    /// Drop the capture slot and its publication from the legacy database (an abandoned slot
    /// makes the server keep WAL without bound). Says whether there was one. After a cutover it
    /// also drops the way back (the service databases' slots), which ends any rollback: refused
    /// then unless --forget-way-back.
    Abort {
        #[arg(long)]
        forget_way_back: bool,
    },
    /// Where each phase and table stands, from the journal in the service databases.
    Status,
    /// Serve the live view of the migration from the journal alone (read-only): the page, its
    /// JSON (/api/snapshot, /api/stream) and Prometheus gauges (/metrics), until Ctrl-C. For a
    /// second operator while another process runs the phases (which may serve it too: --ui).
    Dashboard {
        /// Where to listen. Beyond localhost only with --ui-token.
        #[arg(long, default_value = DEFAULT_UI)]
        listen: std::net::SocketAddr,
    },
}

/// Where `mfe migrate dashboard` listens unless told otherwise.
const DEFAULT_UI: &str = "127.0.0.1:8090";

/// The live web view (`--ui`), for the long phases.
#[derive(Args)]
pub struct UiArgs {
    /// Serve the live view of this phase at ADDR (e.g. 127.0.0.1:8090) while it runs: copy,
    /// export, import, verify, sync, cutover, rollback.
    #[arg(long, global = true, value_name = "ADDR")]
    ui: Option<std::net::SocketAddr>,
    /// The token the view asks for (?token= or Authorization: Bearer); required to listen beyond
    /// localhost. At least 16 characters.
    #[arg(long, env = "MFE_UI_TOKEN", global = true, hide_env_values = true)]
    ui_token: Option<String>,
    /// A name besides its address the view answers for (a proxy's, a DNS name), as the `Host`
    /// the browser sends; repeatable. Requests for any other name, or from another origin, are
    /// refused.
    #[arg(long = "ui-host", global = true, value_name = "NAME")]
    ui_hosts: Vec<String>,
    /// The broker whose queues the view shows.
    #[arg(long = "ui-broker", env = "RABBITMQ_URL", default_value = platform::config::DEFAULT_RABBITMQ_URL, global = true, hide_env_values = true)]
    broker: String,
}

impl UiArgs {
    async fn start(
        &self,
        listen: std::net::SocketAddr,
        endpoints: &Endpoints,
        live: Option<Arc<dashboard::live::Live>>,
    ) -> Result<dashboard::Dashboard, MigrateError> {
        let mut options = dashboard::Options::new(listen);
        options.token = self.ui_token.clone().filter(|t| !t.is_empty());
        options.hosts = self.ui_hosts.clone();
        options.amqp_url = Some(self.broker.clone());
        let view = dashboard::Dashboard::start(endpoints, options, live)
            .await
            .map_err(|e| MigrateError::Usage(e.to_string()))?;
        eprintln!("live view: {}", view.display_url());
        Ok(view)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncMethod {
    Slot,
    Diff,
}

/// Where to read and write; flags override the services' environment variables.
#[derive(Args)]
pub struct Databases {
    /// The legacy shared database (read only).
    #[arg(long = "legacy", env = "SHARED_DATABASE_URL", default_value = platform::config::DEFAULT_SHARED_DATABASE_URL, global = true, hide_env_values = true)]
    legacy: String,
    #[arg(long = "auth", env = "AUTH_DATABASE_URL", default_value = Service::Auth.default_database_url(), global = true, hide_env_values = true)]
    auth: String,
    #[arg(long = "payments", env = "PAYMENTS_DATABASE_URL", default_value = Service::Payments.default_database_url(), global = true, hide_env_values = true)]
    payments: String,
    #[arg(long = "admin", env = "ADMIN_DATABASE_URL", default_value = Service::Admin.default_database_url(), global = true, hide_env_values = true)]
    admin: String,
    #[arg(long = "profile", env = "PROFILE_DATABASE_URL", default_value = Service::Profile.default_database_url(), global = true, hide_env_values = true)]
    profile: String,
}

impl Databases {
    fn endpoints(&self) -> Result<Endpoints, MigrateError> {
        let named = [
            ("SHARED_DATABASE_URL / --legacy", &self.legacy),
            ("AUTH_DATABASE_URL / --auth", &self.auth),
            ("PAYMENTS_DATABASE_URL / --payments", &self.payments),
            ("ADMIN_DATABASE_URL / --admin", &self.admin),
            ("PROFILE_DATABASE_URL / --profile", &self.profile),
        ];
        for (name, url) in named {
            platform::db::parse_url(url)
                .map_err(|e| MigrateError::Usage(format!("{name}: {e}")))?;
        }
        Ok(Endpoints::new(
            self.legacy.clone(),
            [
                (Service::Auth, self.auth.clone()),
                (Service::Payments, self.payments.clone()),
                (Service::Admin, self.admin.clone()),
                (Service::Profile, self.profile.clone()),
            ],
        ))
    }
}

/// Runs a phase; returns the process exit code.
pub async fn run(phase: Phase, databases: &Databases, ui: &UiArgs, json: bool) -> u8 {
    match run_phase(phase, databases, ui, json).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mfe migrate: {e}");
            crate::exit::of(&e)
        }
    }
}

/// How a phase reports: bars on the terminal (none with `--json`) and, with `--ui`, the live view.
struct Reporting {
    json: bool,
    view: Option<dashboard::Dashboard>,
}

impl Reporting {
    async fn new(
        phase: &Phase,
        ui: &UiArgs,
        endpoints: &Endpoints,
        json: bool,
    ) -> Result<Self, MigrateError> {
        let Some(listen) = ui.ui.filter(|_| !matches!(phase, Phase::Dashboard { .. })) else {
            return Ok(Self { json, view: None });
        };
        let Some(name) = phase.long_name() else {
            return Err(MigrateError::Usage(
                "--ui is for the long phases: copy, export, import, verify, sync, cutover, \
                 rollback (mfe migrate dashboard serves the view on its own)"
                    .into(),
            ));
        };
        let live = Arc::new(dashboard::live::Live::new());
        live.begin(name);
        let view = ui.start(listen, endpoints, Some(live)).await?;
        Ok(Self {
            json,
            view: Some(view),
        })
    }

    fn live(&self) -> Option<Arc<dashboard::live::Live>> {
        self.view.as_ref().and_then(|v| v.live().cloned())
    }

    /// Runs `phase` with its reporting, clearing the bars and publishing the outcome to the view
    /// whatever it is.
    async fn run<T, F, Fut>(&self, phase: F) -> Result<T, MigrateError>
    where
        F: FnOnce(Arc<dyn migrator::Progress>) -> Fut,
        Fut: std::future::Future<Output = Result<T, MigrateError>>,
    {
        let bars = Arc::new(Bars::new(self.json));
        let progress: Arc<dyn migrator::Progress> = match self.live() {
            Some(live) => Arc::new(dashboard::live::Fanout(vec![bars.clone(), live])),
            None => bars.clone(),
        };
        let outcome = phase(progress).await;
        bars.finish();
        self.finish(outcome.as_ref().err().map(|e| e.to_string()))
            .await;
        outcome
    }

    async fn finish(&self, error: Option<String>) {
        if let Some(view) = &self.view {
            view.finish(error).await;
        }
    }
}

impl Phase {
    fn step(&self) -> migrator::engine::journal::state::Step {
        use migrator::engine::journal::state::Step;
        match self {
            Phase::Plan { .. } => Step::Plan,
            Phase::Prepare => Step::Prepare,
            Phase::Copy { .. } => Step::Copy,
            Phase::Verify { .. } => Step::Verify,
            Phase::Export { .. } => Step::Export,
            Phase::Import { .. } => Step::Import,
            Phase::Sync {
                method: SyncMethod::Diff,
                ..
            } => Step::SyncDiff,
            Phase::Sync { .. } => Step::SyncSlot,
            Phase::Cutover { .. } => Step::Cutover,
            Phase::Rollback { .. } => Step::Rollback,
            Phase::Abort { .. } => Step::Abort,
            Phase::Status => Step::Status,
            Phase::Dashboard { .. } => Step::Dashboard,
        }
    }

    /// The phases worth watching, by their name in the view.
    fn long_name(&self) -> Option<&'static str> {
        Some(match self {
            Phase::Copy { .. } => "copy",
            Phase::Export { .. } => "export",
            Phase::Import { .. } => "import",
            Phase::Verify { .. } => "verify",
            Phase::Sync { .. } => "sync",
            Phase::Cutover { .. } => "cutover",
            Phase::Rollback { .. } => "rollback",
            _ => return None,
        })
    }
}

/// Admits the phase in the migration's state, then runs it: one call per phase (`phases`).
async fn run_phase(
    phase: Phase,
    databases: &Databases,
    ui: &UiArgs,
    json: bool,
) -> Result<u8, MigrateError> {
    let endpoints = databases.endpoints()?;
    migrator::engine::journal::state::admit(&endpoints, phase.step()).await?;
    let reporting = Reporting::new(&phase, ui, &endpoints, json).await?;
    let e = &endpoints;
    let r = &reporting;
    match phase {
        Phase::Plan {
            long_transaction_seconds,
            sync_hours,
        } => phases::plan(e, json, long_transaction_seconds, sync_hours).await,
        Phase::Prepare => Ok(show(&migrator::prepare::prepare(e).await?, json)),
        Phase::Copy {
            jobs,
            chunk_rows,
            max_rate,
        } => phases::copy(e, r, jobs, chunk_rows, max_rate).await,
        Phase::Verify { max_listed } => phases::verify(e, r, max_listed).await,
        Phase::Export { out, jobs } => phases::export(e, r, &out, jobs).await,
        Phase::Import { from, jobs } => phases::import(e, r, &from, jobs).await,
        Phase::Sync {
            follow,
            method: SyncMethod::Diff,
            max_passes,
        } => phases::sync_by_diff(e, r, follow, max_passes).await,
        Phase::Sync {
            follow,
            method: SyncMethod::Slot,
            ..
        } => phases::sync_by_slot(e, r, follow).await,
        Phase::Cutover {
            max_lag_mb,
            topology_file,
            lock_timeout_ms,
        } => phases::cutover(e, r, max_lag_mb, topology_file, lock_timeout_ms).await,
        Phase::Rollback {
            topology_file,
            lock_timeout_ms,
        } => phases::rollback(e, r, topology_file, lock_timeout_ms).await,
        Phase::Abort { forget_way_back } => Ok(show(
            &migrator::abort::abort(e, forget_way_back).await?,
            json,
        )),
        Phase::Status => Ok(show(&migrator::status::status(e).await?, json)),
        Phase::Dashboard { listen } => phases::dashboard(e, ui, listen).await,
    }
}
