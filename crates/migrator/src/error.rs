//! What can stop a migration phase. What each means for a process (its exit code) is the CLI's
//! business (`mfe`'s `exit` module).

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
    /// A phase the migration's state does not allow (see [`crate::engine::journal::state`]); nothing was written.
    #[error("refused: {why}")]
    WrongState { state: String, why: String },
    #[error("{0}")]
    Usage(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = MigrateError> = std::result::Result<T, E>;
