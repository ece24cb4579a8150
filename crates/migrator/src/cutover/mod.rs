//! `cutover`: from the live legacy database to the service databases, with writes frozen only for
//! the last sync and a verify of what it changed.
//!
//! 1. Refused unless the capture slot exists, the last verify was clean, and, after a catch-up
//!    sync, the slot is less than `max_lag_bytes` behind.
//! 2. The way back ([`crate::rollback::way_back`]): a slot on each service database, made before the
//!    freeze and before any service writes there, captures what the services change from now on
//!    for a rollback. Then the freeze ([`crate::engine::freeze`]): every write to the legacy tables refused, sessions ended.
//! 3. A marker of its own, written after the freeze (`pg_logical_emit_message`), ends the stream;
//!    sync applies exactly up to it. A change after the marker means a writer got past the freeze.
//! 4. Verify what the sync changed since the last clean verify (`mfe_migration.sync_changes`),
//!    row by row on both sides: before the freeze, while writes go on, every row changed up to
//!    each service database's position then; inside the freeze, only the rows changed after it
//!    and those that differed before. So the freeze does not grow with the rows written since
//!    the last verify.
//! 5. The services' own state (outbox, inbox, jobs) in legacy, if they ran there, is made the
//!    same in their databases ([`crate::engine::carry`]).
//! 6. Switch: the topology file the services and `mfe dev` read says `split`; the journal records
//!    the cutover with its freeze and position, and the migration's state becomes `cut over`.
//! 7. The legacy capture slot is dropped: the legacy database is frozen, so it has nothing left
//!    to capture, and kept it would hold WAL without bound. A cutover killed before that drops
//!    it when run again.
//!
//! A failure at any step after the freeze makes the legacy database writable again and switches
//! nothing; the error names the step.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use platform::Service;
use serde::Serialize;
use sqlx::PgConnection;

use crate::cdc::slot;
use crate::endpoints::Endpoints;
use crate::engine::connect;
use crate::engine::freeze;
use crate::engine::journal;
use crate::engine::journal::state::{self, State};
use crate::error::{MigrateError, Result};
use crate::progress::Progress;
use crate::rollback::way_back as back;
use crate::sync::{self, Lag, MARKER_PREFIX, SyncOptions};
use verify::{Ahead, TargetConnections};

mod verify;

#[derive(Debug, Clone)]
pub struct CutoverOptions {
    /// The slot may be at most this far behind once caught up, or cutover is refused.
    pub max_lag_bytes: i64,
    /// The file the services read their topology from.
    pub topology_file: PathBuf,
    /// How long the freeze waits for writers in flight.
    pub lock_timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CutoverReport {
    /// From the freeze to the switch: how long writes were refused.
    pub freeze_seconds: f64,
    /// The marker's position: the end of the legacy stream.
    pub marker_lsn: String,
    /// Legacy transactions applied inside the freeze.
    pub transactions_in_freeze: u64,
    /// Rows verified inside the freeze.
    pub verified_rows: u64,
    pub topology_file: String,
    /// Each step and how long it took.
    pub steps: Vec<(String, f64)>,
}

/// Whether a cutover was recorded (it is recorded just before the switch).
async fn cut_over(endpoints: &Endpoints) -> Result<bool> {
    let mut conn =
        connect::connection(Service::Auth.name(), endpoints.target(Service::Auth)).await?;
    journal::ensure(&mut conn).await?;
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM mfe_migration.runs WHERE phase = 'cutover' AND outcome = 'ok')",
    )
    .fetch_one(&mut conn)
    .await?)
}

/// The last verify of every target was clean.
async fn last_verify_clean(endpoints: &Endpoints) -> Result<()> {
    for service in Service::ALL {
        let mut conn = connect::connection(service.name(), endpoints.target(service)).await?;
        journal::ensure(&mut conn).await?;
        let outcome: Option<String> = sqlx::query_scalar(
            "SELECT outcome FROM mfe_migration.runs WHERE phase = 'verify' ORDER BY at DESC, id DESC LIMIT 1",
        )
        .fetch_optional(&mut conn)
        .await?;
        if outcome.as_deref() != Some("ok") {
            return Err(MigrateError::Usage(format!(
                "the last verify of the {} database was {}: cutover needs a clean one \
                 (mfe migrate verify)",
                service.name(),
                outcome.as_deref().map_or("never run", |_| "not clean")
            )));
        }
    }
    Ok(())
}

/// Each step's name and how long it took, for the report.
type Steps = Vec<(String, f64)>;

fn step_done(steps: &mut Steps, name: &str, since: Instant) {
    steps.push((name.to_string(), since.elapsed().as_secs_f64()));
}

pub async fn cutover(
    endpoints: &Endpoints,
    opts: &CutoverOptions,
    progress: &dyn Progress,
) -> Result<CutoverReport> {
    let mut legacy = connect::connection("legacy", endpoints.legacy()).await?;
    refuse_unless_ready(endpoints, opts, &mut legacy, progress).await?;
    let mut steps = Steps::new();
    let ready = match before_the_freeze(endpoints, opts, &mut legacy, progress, &mut steps).await {
        Ok(ready) => ready,
        Err(e) => {
            let _ = drop_way_back(endpoints).await;
            return Err(e);
        }
    };

    progress.table_step("cutover", "freezing writes");
    let frozen_at = Instant::now();
    if let Err(e) = freeze::freeze(&mut legacy, opts.lock_timeout).await {
        let _ = freeze::thaw(&mut legacy).await;
        let _ = drop_way_back(endpoints).await;
        return Err(MigrateError::StepFailed {
            phase: "cutover",
            step: "freeze".into(),
            cause: Box::new(e.into()),
            aftermath: "the legacy database is writable and nothing was switched".into(),
        });
    }
    step_done(&mut steps, "freeze", frozen_at);
    let frozen = in_the_freeze(
        endpoints,
        opts,
        &mut legacy,
        progress,
        &mut steps,
        ready,
        frozen_at,
    )
    .await;
    let freeze_seconds = frozen_at.elapsed().as_secs_f64();
    let switched = match frozen {
        Ok(switched) => switched,
        Err((step, e)) => {
            let _ = drop_way_back(endpoints).await;
            let thawed = match freeze::thaw(&mut legacy).await {
                Ok(()) => "the legacy database is writable again".to_string(),
                Err(t) => format!("making the legacy database writable again failed too ({t})"),
            };
            return Err(MigrateError::StepFailed {
                phase: "cutover",
                step: step.into(),
                cause: Box::new(e),
                aftermath: format!("{thawed} and the topology was not switched"),
            });
        }
    };
    // The marker is applied and the legacy database frozen: the slot has nothing left to
    // capture, and kept it would make the legacy server keep WAL without bound.
    if let Err(e) = slot::drop(&mut legacy).await {
        progress.note(&format!(
            "the legacy capture slot could not be dropped ({e}): run `mfe migrate cutover` again \
             to drop it"
        ));
    }
    Ok(CutoverReport {
        freeze_seconds,
        marker_lsn: switched.marker_lsn,
        transactions_in_freeze: switched.transactions,
        verified_rows: switched.verified_rows,
        topology_file: opts.topology_file.display().to_string(),
        steps,
    })
}

/// Step 1's refusals, and what a cutover killed earlier left: one recorded but not finished is
/// finished (and refused: it is done), one killed inside its freeze is thawed, a way back it
/// made is dropped (made again inside this one's freeze).
async fn refuse_unless_ready(
    endpoints: &Endpoints,
    opts: &CutoverOptions,
    legacy: &mut PgConnection,
    progress: &dyn Progress,
) -> Result<()> {
    if cut_over(endpoints).await? {
        // Recorded, then killed before the switch or before the slot went: finish it.
        if !std::fs::read_to_string(&opts.topology_file)
            .is_ok_and(|t| t.contains("DATABASE_TOPOLOGY=split"))
        {
            write_topology(&opts.topology_file)?;
            progress.note("the recorded cutover had not switched the topology file: written now");
        }
        if slot::drop(legacy).await? {
            progress.note("the recorded cutover had left the legacy capture slot: dropped now");
        }
        return Err(MigrateError::WrongState {
            state: State::CutOver.to_string(),
            why: "the migration is cut over: the legacy database is frozen and the platform runs \
                  on the service databases (see status). `mfe migrate rollback` moves it back"
                .into(),
        });
    }
    if slot::info(legacy).await?.is_none() {
        return Err(MigrateError::Usage(
            "there is no capture slot on the legacy database: cutover follows copy (with logical \
             decoding) and sync"
                .into(),
        ));
    }
    if freeze::is_frozen(legacy).await? {
        // A cutover killed inside its freeze: nothing was switched, so start again from a
        // writable legacy database.
        progress.note("a previous cutover stopped inside its freeze: thawing and starting again");
        freeze::thaw(legacy).await?;
    }
    last_verify_clean(endpoints).await?;
    drop_way_back(endpoints).await
}

/// While writes go on: sync catches up (refused if still too far behind), most changed rows are
/// compared, the way back is captured, and the service databases' connections the freeze's verify
/// uses are opened. Its caller drops the way back if this fails.
async fn before_the_freeze(
    endpoints: &Endpoints,
    opts: &CutoverOptions,
    legacy: &mut PgConnection,
    progress: &dyn Progress,
    steps: &mut Steps,
) -> Result<Ready> {
    let t = Instant::now();
    progress.table_step("cutover", "catching up");
    // A `sync --follow` may be running: catch_up waits for it; the freeze then ends its session.
    sync::catch_up(endpoints).await?;
    step_done(steps, "catch up (writes running)", t);
    let lag = slot::info(legacy).await?.map_or(0, |i| i.lag_bytes);
    if lag > opts.max_lag_bytes {
        return Err(MigrateError::Usage(format!(
            "sync is {lag} bytes behind after catching up (the bound is {}): the legacy database \
             writes faster than sync applies; retry when it is quieter",
            opts.max_lag_bytes
        )));
    }

    // Most changed rows are compared now, while writes go on: only what changes from here on
    // (and what differed now) is left for the freeze.
    let t = Instant::now();
    progress.table_step("cutover", "verifying what changed (writes running)");
    let ahead = verify::look_ahead(endpoints).await?;
    step_done(steps, "verify the changed rows (writes running)", t);

    // The way back, before the freeze: making a slot waits for every transaction open on the
    // service database's server, which must not stretch the freeze. Keys the last sync writes
    // after it are harmless: a rollback rewrites changed rows from their current state.
    let t = Instant::now();
    progress.table_step("cutover", "capturing the way back");
    for service in Service::ALL {
        let mut conn = connect::connection(service.name(), endpoints.target(service)).await?;
        back::create(&mut conn, service).await?;
    }
    step_done(steps, "capture the way back", t);
    Ok(Ready {
        ahead,
        targets: TargetConnections::open(endpoints).await?,
    })
}

/// What the freeze's verify starts from: the look ahead's findings and its connections.
struct Ready {
    ahead: Ahead,
    targets: TargetConnections,
}

/// What the steps inside the freeze did, up to the switch.
struct Switched {
    marker_lsn: String,
    transactions: u64,
    verified_rows: u64,
}

/// A failed step inside the freeze: its name and why.
type FailedStep = (&'static str, MigrateError);

/// Steps 3 to 6, with legacy frozen: the marker, the sync up to it, the verify of what it
/// changed, the carry, the record and the switch. A failure names its step; the caller thaws.
async fn in_the_freeze(
    endpoints: &Endpoints,
    opts: &CutoverOptions,
    legacy: &mut PgConnection,
    progress: &dyn Progress,
    steps: &mut Steps,
    ready: Ready,
    frozen_at: Instant,
) -> std::result::Result<Switched, FailedStep> {
    let t = Instant::now();
    let marker = uuid_like();
    let lsn: String = sqlx::query_scalar("SELECT pg_logical_emit_message(true, $1, $2)::text")
        .bind(MARKER_PREFIX)
        .bind(&marker)
        .fetch_one(&mut *legacy)
        .await
        .map_err(|e| ("marker", MigrateError::from(e)))?;
    step_done(steps, "marker", t);

    progress.table_step("cutover", "syncing to the marker");
    let verified =
        verify::sync_and_verify(endpoints, progress, marker, &ready.ahead, ready.targets).await?;
    steps.push(("sync to the marker".into(), verified.sync_secs));
    steps.push(("verify the changed rows".into(), verified.verify_secs));

    // The services' own state, when they ran on the legacy database (shared topology).
    let t = Instant::now();
    progress.table_step("cutover", "carrying the services' own state");
    for service in Service::ALL {
        let mut conn = connect::connection(service.name(), endpoints.target(service))
            .await
            .map_err(|e| ("carry", e))?;
        crate::engine::carry::carry(legacy, &mut conn, service)
            .await
            .map_err(|e| ("carry", e))?;
    }
    step_done(steps, "carry the services' state", t);

    // Recorded before the switch: a journal that cannot be written thaws like any step.
    let t = Instant::now();
    let detail = serde_json::json!({
        "markerLsn": lsn,
        "freezeSeconds": frozen_at.elapsed().as_secs_f64(),
        "transactionsInFreeze": verified.transactions,
        "verifiedRows": verified.rows,
    });
    record(endpoints, &detail)
        .await
        .map_err(|e| ("record", e))?;
    write_topology(&opts.topology_file).map_err(|e| ("switch", MigrateError::from(e)))?;
    step_done(steps, "record and switch", t);
    Ok(Switched {
        marker_lsn: lsn,
        transactions: verified.transactions,
        verified_rows: verified.rows,
    })
}

/// Sync exactly up to `marker`; returns the legacy transactions it applied.
async fn sync_to_marker(
    endpoints: &Endpoints,
    progress: &dyn Progress,
    marker: String,
) -> Result<u64> {
    let quiet = |_: Lag| {};
    let synced = sync::sync(
        endpoints,
        &SyncOptions {
            follow: false,
            until_marker: Some(marker),
            // The freeze ended any other sync's session; its lock goes with it.
            wait_for_other: Duration::from_secs(5),
        },
        progress,
        &quiet,
        std::future::pending(),
    )
    .await?;
    if !synced.marker_seen {
        return Err(MigrateError::Stream(
            "the marker never arrived in the stream".into(),
        ));
    }
    Ok(synced.transactions)
}

/// The cutover in every service database's journal, and the migration's state `cut over`.
async fn record(endpoints: &Endpoints, detail: &serde_json::Value) -> Result<()> {
    for service in Service::ALL {
        let mut conn = connect::connection(service.name(), endpoints.target(service)).await?;
        journal::record_run(&mut conn, "cutover", "ok", detail).await?;
        state::advance_here(&mut conn, State::CutOver, "cutover").await?;
    }
    Ok(())
}

/// Drops the way-back slots of the service databases.
pub async fn drop_way_back(endpoints: &Endpoints) -> Result<()> {
    for service in Service::ALL {
        let mut conn = connect::connection(service.name(), endpoints.target(service)).await?;
        back::drop(&mut conn).await?;
    }
    Ok(())
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("cutover-{nanos:x}-{}", std::process::id())
}

/// The topology file: written whole, then renamed over the old one, so a reader never sees half.
fn write_topology(path: &Path) -> std::io::Result<()> {
    write_topology_file(
        path,
        "# Written by `mfe migrate cutover`: the platform runs on its service databases.\n\
         # The services and `mfe dev` read it; a rollback writes `shared` back.\n\
         DATABASE_TOPOLOGY=split\n",
    )
}

pub(crate) fn write_topology_file(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
