//! What can stop a migration phase, each kind its own variant. What each means for a process
//! (its exit code) is the CLI's business (`mfe`'s `exit` module).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// One line naming the database (password masked).
    #[error("cannot connect to the {which} database {url}: {source}")]
    Unreachable {
        which: String,
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("the legacy database does not match the contract (crates/schema/legacy-schema.sql):\n  {}", .0.join("\n  "))]
    ContractMismatch(Vec<String>),
    #[error(
        "{table} in the {service} database already holds {rows} rows that this tool did not copy; empty it first (nothing was written)"
    )]
    TargetNotEmpty {
        service: String,
        table: String,
        rows: i64,
    },
    #[error("{service}: table {table} is missing; run `mfe migrate prepare` first")]
    NotPrepared { service: String, table: String },
    #[error(
        "another copy or import is running against the {which} database ({holder}); wait for it, or stop it"
    )]
    Busy { which: String, holder: String },
    #[error(
        "another `mfe migrate sync` is applying this legacy database's changes; stop it first \
         (verify and cutover wait for it instead)"
    )]
    SyncBusy,
    /// A phase the migration's state does not allow (see [`crate::engine::journal::state`]);
    /// nothing was written.
    #[error("refused: {why}")]
    WrongState { state: String, why: String },
    #[error("{0}")]
    Usage(String),
    /// A service database could not be created.
    #[error("{0}")]
    CreateDatabase(String),
    /// A service's migrations could not be applied to `target`.
    #[error("{target}: applying migrations: {source}")]
    Migrations {
        target: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// The change stream (legacy's capture, or a service database's way back) said something
    /// this tool cannot take as it is, or ended.
    #[error("{0}")]
    Stream(String),
    /// A change committed after cutover's marker: a writer got past the freeze.
    #[error("a change was committed after the cutover marker: a writer got past the freeze")]
    PastTheFreeze,
    /// The two sides hold different rows where they must be equal.
    #[error("{0}")]
    Diverged(String),
    /// A running `sync --follow` stopped confirming what it applies.
    #[error("{0}")]
    SyncStalled(String),
    /// A worker or task of the phase ended without its result.
    #[error("{task}: {cause}")]
    Task { task: &'static str, cause: String },
    /// An archive's file does not hold what its manifest says.
    #[error("{0}")]
    Archive(String),
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A way-back slot could not be made or is missing.
    #[error("{0}")]
    WayBack(String),
    /// A service's own table cannot be carried with a switch.
    #[error("{0}")]
    Carry(String),
    /// The platform around a switch (its services held or restarted, the audit anchored).
    #[error("{0}")]
    Platform(String),
    /// A step of cutover or rollback failed; `aftermath` says what was undone.
    #[error("{phase} failed at step {step}: {cause}; {aftermath}")]
    StepFailed {
        phase: &'static str,
        step: String,
        cause: Box<MigrateError>,
        aftermath: String,
    },
    /// A failure, and what was undone after it.
    #[error("{cause}; {aftermath}")]
    Undone {
        cause: Box<MigrateError>,
        aftermath: String,
    },
    /// Statements of an interrupted run still running.
    #[error("{0}")]
    StillRunning(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("a report could not be written as JSON: {0}")]
    Report(#[from] serde_json::Error),
}

impl MigrateError {
    /// A task that panicked or was cancelled.
    pub fn task(task: &'static str, cause: impl std::fmt::Display) -> Self {
        MigrateError::Task {
            task,
            cause: cause.to_string(),
        }
    }
}

pub type Result<T, E = MigrateError> = std::result::Result<T, E>;
