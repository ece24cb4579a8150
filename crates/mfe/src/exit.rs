//! Exit codes of `mfe migrate` (documented in docs/MIGRATION.md and the runbook).

use migrator::MigrateError;

pub const OK: u8 = 0;
/// `verify` or `import` found differences, `plan`'s preflight failed, `rollback` has conflicts.
pub const DIFFERENCES: u8 = 1;
/// A usage error, an unreachable database, a refusal, or a failure while running.
pub const USAGE: u8 = 2;

/// The exit code of a phase that stopped with `error`: every error is 2.
pub fn of(error: &MigrateError) -> u8 {
    match error {
        MigrateError::Unreachable { .. }
        | MigrateError::ContractMismatch(_)
        | MigrateError::TargetNotEmpty { .. }
        | MigrateError::NotPrepared { .. }
        | MigrateError::Busy { .. }
        | MigrateError::SyncBusy
        | MigrateError::WrongState { .. }
        | MigrateError::Usage(_)
        | MigrateError::CreateDatabase(_)
        | MigrateError::Migrations { .. }
        | MigrateError::Stream(_)
        | MigrateError::PastTheFreeze
        | MigrateError::Diverged(_)
        | MigrateError::SyncStalled(_)
        | MigrateError::Task { .. }
        | MigrateError::Archive(_)
        | MigrateError::File { .. }
        | MigrateError::WayBack(_)
        | MigrateError::Carry(_)
        | MigrateError::Platform(_)
        | MigrateError::StepFailed { .. }
        | MigrateError::Undone { .. }
        | MigrateError::StillRunning(_)
        | MigrateError::Database(_)
        | MigrateError::Io(_)
        | MigrateError::Report(_) => USAGE,
    }
}
