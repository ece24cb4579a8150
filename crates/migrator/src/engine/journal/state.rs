//! Where the migration stands, recorded in the journal of every service database
//! (`mfe_migration.migration`), and which phase may run in which state.
//!
//! A phase that writes into the service databases is refused once the platform runs on them (cut
//! over) or was moved back (rolled back): there the services' writes are the truth, and a copy, an
//! import or a sync from the frozen legacy database would undo them. The read-only phases run in
//! every state.
//!
//! The state is written to the four databases one after the other; a crash between two leaves
//! them apart, and the reader takes the furthest (an abort is the least far: any later phase
//! outranks it), so a half-recorded cutover still counts as one.

use platform::Service;
use serde::Serialize;
use sqlx::PgConnection;

use crate::endpoints::Endpoints;
use crate::engine::connect;
use crate::engine::journal;
use crate::error::{MigrateError, Result};

const SCHEMA_SQL: &str = "
CREATE SCHEMA IF NOT EXISTS mfe_migration;
CREATE TABLE IF NOT EXISTS mfe_migration.migration (
    id INT PRIMARY KEY CHECK (id = 1),
    state TEXT NOT NULL,
    phase TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// `abort` dropped the capture: what the legacy database writes from then on is not followed.
    Aborted,
    Prepared,
    Copying,
    Copied,
    Syncing,
    #[serde(rename = "cut over")]
    CutOver,
    #[serde(rename = "rolled back")]
    RolledBack,
}

impl State {
    pub const ALL: [State; 7] = [
        State::Prepared,
        State::Copying,
        State::Copied,
        State::Syncing,
        State::CutOver,
        State::RolledBack,
        State::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Aborted => "aborted",
            State::Prepared => "prepared",
            State::Copying => "copying",
            State::Copied => "copied",
            State::Syncing => "syncing",
            State::CutOver => "cut over",
            State::RolledBack => "rolled back",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether a phase that ends in `self` moves a migration standing at `from` there. Phases
    /// re-run later (a copy that resumes nothing after sync started) leave the state alone.
    fn follows(self, from: Option<State>) -> bool {
        use State::*;
        match self {
            // After an abort the copied rows stay: `prepare` does not make them "not copied".
            Prepared => from.is_none(),
            Copying | Copied => matches!(from, None | Some(Aborted | Prepared | Copying)),
            Syncing => matches!(from, Some(Copied | Aborted)),
            CutOver => from != Some(RolledBack),
            RolledBack => from == Some(CutOver),
            Aborted => matches!(from, Some(Prepared | Copying | Copied | Syncing)),
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The phases, as the state machine tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Plan,
    Prepare,
    Copy,
    Export,
    Import,
    Verify,
    SyncSlot,
    SyncDiff,
    Cutover,
    Rollback,
    Abort,
    Status,
    Dashboard,
}

impl Step {
    pub const ALL: [Step; 13] = [
        Step::Plan,
        Step::Prepare,
        Step::Copy,
        Step::Export,
        Step::Import,
        Step::Verify,
        Step::SyncSlot,
        Step::SyncDiff,
        Step::Cutover,
        Step::Rollback,
        Step::Abort,
        Step::Status,
        Step::Dashboard,
    ];

    pub fn command(self) -> &'static str {
        match self {
            Step::Plan => "plan",
            Step::Prepare => "prepare",
            Step::Copy => "copy",
            Step::Export => "export",
            Step::Import => "import",
            Step::Verify => "verify",
            Step::SyncSlot => "sync",
            Step::SyncDiff => "sync --method diff",
            Step::Cutover => "cutover",
            Step::Rollback => "rollback",
            Step::Abort => "abort",
            Step::Status => "status",
            Step::Dashboard => "dashboard",
        }
    }

    /// Phases that write nothing the services own, whatever the state.
    fn reads_only(self) -> bool {
        matches!(
            self,
            Step::Plan | Step::Export | Step::Verify | Step::Status | Step::Dashboard
        )
    }
}

/// Why `step` may not run in `state`, with what to run instead; `None` when it may.
pub fn refusal(step: Step, state: Option<State>) -> Option<String> {
    use State::*;
    if step.reads_only() {
        return None;
    }
    let cmd = step.command();
    let owned = |s: State| match s {
        CutOver => format!(
            "the migration is cut over: the platform runs on the service databases and `{cmd}` \
             would overwrite what the services wrote since. `mfe migrate rollback` moves the \
             platform back to the legacy database; `verify` and `status` only read"
        ),
        _ => "the migration was rolled back: the platform runs on the legacy database again and \
              the service databases are frozen. To migrate again, drop the four service databases \
              and start from `mfe migrate prepare`"
            .to_string(),
    };
    match (step, state) {
        (_, Some(s @ (CutOver | RolledBack)))
            if matches!(
                step,
                Step::Prepare | Step::Copy | Step::Import | Step::SyncSlot | Step::SyncDiff
            ) =>
        {
            Some(owned(s))
        }
        (Step::Cutover, Some(RolledBack)) => Some(owned(RolledBack)),
        (Step::Copy | Step::Import, None) => Some(format!(
            "the migration is not started: the service databases are not prepared for `{cmd}`. \
             Run `mfe migrate prepare` first"
        )),
        (Step::SyncSlot | Step::SyncDiff | Step::Cutover, None | Some(Prepared)) => Some(format!(
            "the migration is {}: nothing was copied yet, so there is nothing for `{cmd}` to \
             follow. Run `mfe migrate copy` first",
            state.map_or("not started", State::as_str)
        )),
        (Step::SyncSlot | Step::SyncDiff | Step::Cutover, Some(Copying)) => Some(format!(
            "the migration is copying: the copy has not finished, so `{cmd}` would start from an \
             incomplete snapshot. Run `mfe migrate copy` again: it resumes"
        )),
        (Step::SyncSlot | Step::Cutover, Some(Aborted)) => Some(format!(
            "the migration was aborted: its capture slot is gone, so the legacy database's writes \
             since are not followed and `{cmd}` cannot find them. `mfe migrate sync --method diff` \
             catches up by comparing; a live cutover needs a new start: drop the four service \
             databases and run `prepare` and `copy` again"
        )),
        (Step::Rollback, s) if !matches!(s, Some(CutOver | RolledBack)) => Some(format!(
            "the migration is {}: the platform was never cut over, so there is nothing to roll \
             back (it still runs on the legacy database). `mfe migrate abort` drops the capture",
            s.map_or("not started", State::as_str)
        )),
        _ => None,
    }
}

/// The migration's state, as the service databases record it; `None` before `prepare`, or
/// when no service database exists yet.
pub async fn current(endpoints: &Endpoints) -> Result<Option<State>> {
    let mut furthest = None;
    for service in Service::ALL {
        let Some(mut conn) = existing(service, endpoints.target(service)).await? else {
            continue;
        };
        let here = match recorded(&mut conn).await? {
            Some(s) => Some(s),
            None => inferred(&mut conn, endpoints).await?,
        };
        furthest = furthest.max(here);
    }
    Ok(furthest)
}

/// Refuses `step` when the migration's state does not allow it (exit code 2, nothing written).
pub async fn admit(endpoints: &Endpoints, step: Step) -> Result<Option<State>> {
    if step.reads_only() {
        return Ok(None);
    }
    let state = current(endpoints).await?;
    match refusal(step, state) {
        Some(why) => {
            // A legacy database off the contract is the first thing to fix: said before the state.
            let mut legacy = connect::connection("legacy", endpoints.legacy()).await?;
            let differences = crate::engine::check::legacy_differences(&mut legacy).await?;
            if !differences.is_empty() {
                return Err(MigrateError::ContractMismatch(differences));
            }
            Err(MigrateError::WrongState {
                state: state.map_or("not started", State::as_str).to_string(),
                why,
            })
        }
        None => Ok(state),
    }
}

/// Records that the migration reached `to` in every service database, where the state there
/// allows the move (see [`State::follows`]).
pub async fn advance(endpoints: &Endpoints, to: State, phase: &str) -> Result<()> {
    for service in Service::ALL {
        let mut conn = connect::connection(service.name(), endpoints.target(service)).await?;
        advance_here(&mut conn, to, phase).await?;
    }
    Ok(())
}

/// [`advance`] in one service database, on the caller's connection (inside its transaction,
/// when it has one).
pub async fn advance_here(conn: &mut PgConnection, to: State, phase: &str) -> Result<()> {
    sqlx::raw_sql(SCHEMA_SQL).execute(&mut *conn).await?;
    let from = recorded(&mut *conn).await?;
    if to.follows(from) {
        sqlx::query(
            "INSERT INTO mfe_migration.migration (id, state, phase, updated_at) \
             VALUES (1, $1, $2, now()) \
             ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, phase = EXCLUDED.phase, \
                 updated_at = EXCLUDED.updated_at",
        )
        .bind(to.as_str())
        .bind(phase)
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// The state recorded in the service database `conn` is connected to; reads only.
pub async fn recorded(conn: &mut PgConnection) -> Result<Option<State>> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('mfe_migration.migration') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await?;
    if !exists {
        return Ok(None);
    }
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM mfe_migration.migration WHERE id = 1")
            .fetch_optional(conn)
            .await?;
    Ok(state.as_deref().and_then(State::parse))
}

/// The state of a journal written before the state was recorded, from what it holds.
async fn inferred(conn: &mut PgConnection, endpoints: &Endpoints) -> Result<Option<State>> {
    if !journal::exists(&mut *conn).await? {
        return Ok(None);
    }
    let (cut_over, tables, done, synced, prepared): (bool, i64, i64, bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM mfe_migration.runs WHERE phase = 'cutover' AND outcome = 'ok'), \
                (SELECT count(*) FROM mfe_migration.tables), \
                (SELECT count(*) FROM mfe_migration.tables WHERE state = 'done'), \
                to_regclass('mfe_migration.sync_position') IS NOT NULL, \
                EXISTS (SELECT 1 FROM mfe_migration.runs WHERE phase = 'prepare')",
    )
    .fetch_one(&mut *conn)
    .await?;
    if cut_over {
        let mut legacy = connect::connection("legacy", endpoints.legacy()).await?;
        let rolled_back: bool = sqlx::query_scalar(
            "SELECT to_regclass('mfe_rollback.state') IS NOT NULL \
             AND EXISTS (SELECT 1 FROM mfe_rollback.state WHERE step = 'done')",
        )
        .fetch_one(&mut legacy)
        .await?;
        return Ok(Some(if rolled_back {
            State::RolledBack
        } else {
            State::CutOver
        }));
    }
    Ok(if tables > 0 && tables == done {
        Some(if synced {
            State::Syncing
        } else {
            State::Copied
        })
    } else if tables > 0 {
        Some(State::Copying)
    } else if prepared {
        Some(State::Prepared)
    } else {
        None
    })
}

/// A connection to a service database, or `None` when that database does not exist (yet).
pub(crate) async fn existing(service: Service, url: &str) -> Result<Option<PgConnection>> {
    match connect::connection(service.name(), url).await {
        Ok(conn) => Ok(Some(conn)),
        Err(MigrateError::Unreachable { source, .. })
            if source
                .as_database_error()
                .and_then(|e| e.code())
                .is_some_and(|c| c == "3D000") =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_only_phases_run_in_every_state() {
        for step in [
            Step::Plan,
            Step::Export,
            Step::Verify,
            Step::Status,
            Step::Dashboard,
        ] {
            for state in State::ALL.map(Some).into_iter().chain([None]) {
                assert_eq!(refusal(step, state), None, "{step:?} in {state:?}");
            }
        }
    }

    #[test]
    fn nothing_writes_into_the_service_databases_after_cutover_but_rollback() {
        for state in [State::CutOver, State::RolledBack] {
            for step in [
                Step::Prepare,
                Step::Copy,
                Step::Import,
                Step::SyncSlot,
                Step::SyncDiff,
            ] {
                let why = refusal(step, Some(state)).expect("refused");
                assert!(why.contains(state.as_str()), "{why}");
            }
        }
        assert_eq!(refusal(Step::Rollback, Some(State::CutOver)), None);
    }

    #[test]
    fn a_state_moves_forward_only_and_an_abort_yields_to_a_new_start() {
        assert!(State::Copied.follows(Some(State::Copying)));
        assert!(!State::Copied.follows(Some(State::Syncing)));
        assert!(!State::Syncing.follows(Some(State::CutOver)));
        assert!(State::Copying.follows(Some(State::Aborted)));
        assert!(!State::Aborted.follows(Some(State::CutOver)));
        assert!(State::RolledBack.follows(Some(State::CutOver)));
        assert!(!State::CutOver.follows(Some(State::RolledBack)));
        assert!(Some(State::Aborted) < Some(State::Prepared));
        assert!(None < Some(State::Aborted));
    }
}
