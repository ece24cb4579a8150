//! `sync`: streams the slot's changes and applies them, until caught up or, with `follow`, until
//! stopped.
//!
//! Three stages run at once, as PostgreSQL's own apply worker overlaps receiving and applying:
//! the walsender decodes ([`crate::cdc::stream`]), this task routes each change to the service
//! database it belongs to, and one worker per service database applies ([`Target`]), each in its
//! own commit order, independently of the others. The channels between them are bounded, so
//! memory stays flat whatever the size of a legacy transaction.
//!
//! Every [`CHECKPOINT_EVERY`], between two legacy transactions, each worker commits what it has
//! applied with its position and acknowledges; the slot is confirmed up to a position only once
//! all four have. A kill at any point leaves each target at a legacy commit, and the stream
//! starts again at or before the lowest of them; each target skips what it holds.
//!
//! "Caught up" is exact: the sync writes a fence into the legacy WAL when it starts (a
//! transactional `pg_logical_emit_message`); once the fence arrives, every transaction that
//! committed before the start has too.

pub mod apply;
pub mod diff;
pub mod net;

use std::future::Future;
use std::time::{Duration, Instant};

use platform::Service;
use serde::Serialize;
use tokio::sync::mpsc;

use self::apply::{Ack, Op, Queued, Target};
use crate::cdc::pgoutput::{Lsn, Message};
use crate::cdc::relations::{self, Relations};
use crate::cdc::slot::{self, PUBLICATION};
use crate::cdc::stream::{Event, Stream, write_fence};
use crate::endpoints::Endpoints;
use crate::engine::connect;
use crate::engine::journal::position;
use crate::engine::journal::state::{self, State};
use crate::error::{MigrateError, Result};
use crate::progress::Progress;
use crate::sync::net::{Pending, RowChange};

/// The advisory lock (in the legacy database) a running sync holds.
const SYNC_LOCK: i64 = 0x6d66_655f_7379_6e63; // "mfe_sync"

/// The message prefix of cutover's end-of-stream marker.
pub const MARKER_PREFIX: &str = "mfe-cutover";

/// The message prefix of the fence a sync writes when it starts.
const FENCE_PREFIX: &str = "mfe-sync-fence";

/// How often the targets commit and the slot is confirmed: the lag a checkpoint adds.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Operations queued per target.
const QUEUE: usize = 4096;
/// Bytes of values queued per target, in KiB: rows of many MB (TOASTed values) fill a queue
/// long before its count does.
const QUEUE_KIB: usize = 16 * 1024;

#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Keep applying until stopped, rather than until caught up.
    pub follow: bool,
    /// Stop once this marker (`pg_logical_emit_message` content) has been applied; a change
    /// after it is an error (a writer got past the freeze).
    pub until_marker: Option<String>,
    /// How long to wait for another sync to end (a killed one's session may linger a moment)
    /// before giving up with [`MigrateError::SyncBusy`].
    pub wait_for_other: Duration,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    pub transactions: u64,
    pub rows: u64,
    /// The position confirmed to the slot at the end.
    pub position: Option<String>,
    /// Bytes of WAL between the slot and the server's position at the end.
    pub lag_bytes: i64,
    pub seconds: f64,
    pub marker_seen: bool,
}

/// Lag and rate, for the progress display.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lag {
    pub bytes: i64,
    pub seconds: f64,
    pub changes_per_second: f64,
}

fn pg_time(micros_since_2000: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    const UNIX_2000: i64 = 946_684_800_000_000;
    chrono::DateTime::from_timestamp_micros(micros_since_2000.checked_add(UNIX_2000)?)
}

/// The four workers, their queues, and what each acknowledged.
struct Workers {
    queues: Vec<mpsc::Sender<Queued>>,
    budgets: Vec<std::sync::Arc<tokio::sync::Semaphore>>,
    acks: mpsc::UnboundedReceiver<Ack>,
    acked: Vec<Lsn>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Workers {
    fn start(targets: Vec<Target>) -> Self {
        let (ack_tx, acks) = mpsc::unbounded_channel();
        let mut queues = Vec::new();
        let mut handles = Vec::new();
        for (i, target) in targets.into_iter().enumerate() {
            let (tx, rx) = mpsc::channel(QUEUE);
            queues.push(tx);
            handles.push(tokio::spawn(target.run(i, rx, ack_tx.clone())));
        }
        let acked = vec![Lsn(0); queues.len()];
        let budgets = (0..queues.len())
            .map(|_| std::sync::Arc::new(tokio::sync::Semaphore::new(QUEUE_KIB)))
            .collect();
        Self {
            queues,
            budgets,
            acks,
            acked,
            handles,
        }
    }

    async fn send(&mut self, target: usize, op: Op) -> Result<()> {
        let budget = match &op {
            Op::Change(p) => {
                // A row larger than the whole budget takes all of it.
                let kib = (p.change.bytes() / 1024 + 1).min(QUEUE_KIB) as u32;
                Some(
                    self.budgets[target]
                        .clone()
                        .acquire_many_owned(kib)
                        .await
                        .expect("the budget is never closed"),
                )
            }
            _ => None,
        };
        if self.queues[target].send((op, budget)).await.is_err() {
            // The worker ended: it said why.
            return Err(self.failure().await);
        }
        Ok(())
    }

    /// The error a worker ended with (one that panicked says nothing: the others keep the
    /// channel open, so the wait is bounded).
    async fn failure(&mut self) -> MigrateError {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Ok(Some(ack)) = tokio::time::timeout_at(deadline, self.acks.recv()).await {
            if let Ack::Failed { error, .. } = ack {
                return error;
            }
        }
        MigrateError::task("a target's worker", "ended without a reason")
    }

    async fn checkpoint(&mut self, upto: Lsn) -> Result<()> {
        for i in 0..self.queues.len() {
            self.send(i, Op::Checkpoint(upto)).await?;
        }
        Ok(())
    }

    /// Takes an acknowledgement; the position every target has committed.
    fn take(&mut self, ack: Ack) -> Result<Lsn> {
        match ack {
            Ack::Committed { target, upto } => {
                self.acked[target] = self.acked[target].max(upto);
                Ok(self.committed())
            }
            Ack::Failed { error, .. } => Err(error),
        }
    }

    fn committed(&self) -> Lsn {
        self.acked.iter().copied().min().unwrap_or_default()
    }

    /// Waits until every target committed up to `upto`.
    async fn wait_for(&mut self, upto: Lsn) -> Result<()> {
        while self.committed() < upto {
            let ack = self.acks.recv().await.ok_or_else(|| {
                MigrateError::task("the targets' workers", "ended before committing")
            })?;
            self.take(ack)?;
        }
        Ok(())
    }

    /// Ends the workers: what they did not commit is rolled back (and not confirmed).
    async fn close(self) {
        drop(self.queues);
        for h in self.handles {
            let _ = h.await;
        }
    }
}

/// What the routing task knows of the stream.
#[derive(Default)]
struct Cursor {
    /// The legacy transaction being received: its commit position, time, and the targets it
    /// touched so far.
    current: Option<(Lsn, Option<chrono::DateTime<chrono::Utc>>)>,
    touched: [bool; 4],
    /// The end of the last transaction received, or a later position the server reported
    /// between transactions.
    upto: Lsn,
    checkpointed: Lsn,
    last_checkpoint: Option<Instant>,
    last_commit_time: Option<chrono::DateTime<chrono::Utc>>,
    /// No transaction arrived since the server last said it had sent everything.
    idle: bool,
    after_marker: bool,
    fence_seen: bool,
    changes: u64,
}

impl Cursor {
    /// Between transactions, with something received since the last checkpoint.
    fn checkpoint_pending(&self) -> bool {
        self.current.is_none() && self.upto > self.checkpointed
    }

    fn checkpoint_due(&self) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        self.last_checkpoint.map_or(now, |t| {
            tokio::time::Instant::from_std(t) + CHECKPOINT_EVERY
        })
    }

    async fn checkpoint(&mut self, workers: &mut Workers) -> Result<()> {
        workers.checkpoint(self.upto).await?;
        self.checkpointed = self.upto;
        self.last_checkpoint = Some(Instant::now());
        Ok(())
    }
}

fn target_of(service: Service) -> usize {
    Service::ALL
        .iter()
        .position(|s| *s == service)
        .expect("a service")
}

pub async fn sync(
    endpoints: &Endpoints,
    opts: &SyncOptions,
    progress: &dyn Progress,
    on_lag: &(dyn Fn(Lag) + Sync),
    stop: impl Future<Output = ()>,
) -> Result<SyncReport> {
    let started = Instant::now();
    let mut legacy = connect::connection("legacy", endpoints.legacy()).await?;
    let Some(info) = slot::info(&mut legacy).await? else {
        return Err(MigrateError::Usage(
            "there is no capture slot on the legacy database: `copy` makes one when the server \
             allows logical decoding (else use `sync --method diff`)"
                .into(),
        ));
    };
    lock(&mut legacy, opts.wait_for_other).await?;
    state::advance(endpoints, State::Syncing, "sync").await?;
    let slot_name = slot::slot_of(&mut legacy).await?;
    let catalog = relations::legacy_catalog(&mut legacy).await?;
    let (targets, horizon) = open_targets(endpoints, &slot_name).await?;
    // The fence: once it arrives, everything committed before this point has.
    let fence = if opts.follow {
        String::new()
    } else {
        write_fence(&mut legacy, FENCE_PREFIX).await?
    };
    let stream = open_stream(
        endpoints.legacy(),
        &slot_name,
        info.confirmed,
        opts.wait_for_other,
    )
    .await?;
    let mut run = Run {
        stream,
        workers: Workers::start(targets),
        relations: Relations::new(catalog),
        report: SyncReport::default(),
        cursor: Cursor {
            upto: info.confirmed,
            checkpointed: info.confirmed,
            ..Cursor::default()
        },
        confirmed: info.confirmed,
        meter: LagMeter::new(),
        fence,
        horizon,
    };
    let outcome = run.apply(&mut legacy, opts, on_lag, stop).await;
    let Settled {
        mut report,
        cursor,
        confirmed,
        meter,
    } = run.settle(outcome).await?;
    report.position = Some(confirmed.to_string());
    report.rows = cursor.changes;
    report.lag_bytes = slot::info(&mut legacy).await?.map_or(0, |i| i.lag_bytes);
    // The last figures, also for a sync shorter than one report interval.
    on_lag(meter.last(&cursor, report.lag_bytes));
    progress.table_step("sync", "caught up");
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// A worker per service database, each on its own connection with the sync's journal there;
/// and the highest horizon any of them recorded for `slot` (the copy's snapshot position).
async fn open_targets(endpoints: &Endpoints, slot: &str) -> Result<(Vec<Target>, Lsn)> {
    let mut horizon = Lsn(0);
    let mut targets = Vec::new();
    for service in Service::ALL {
        let mut conn = connect::connection(service.name(), endpoints.target(service)).await?;
        sqlx::raw_sql(position::POSITION_SQL)
            .execute(&mut conn)
            .await?;
        if let Some(h) = position::horizon(&mut conn, slot).await? {
            horizon = horizon.max(h);
        }
        targets.push(Target::new(service, conn, slot).await?);
    }
    Ok((targets, horizon))
}

/// The lag and the rate, measured once a second for `on_lag`.
struct LagMeter {
    since: Instant,
    changes_then: u64,
}

impl LagMeter {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            changes_then: 0,
        }
    }

    fn due(&self) -> bool {
        self.since.elapsed() >= Duration::from_secs(1)
    }

    /// The figures since the last reading: `bytes` behind, the age of the last commit applied
    /// (none when the stream is idle), the changes per second.
    fn read(&mut self, cursor: &Cursor, bytes: i64) -> Lag {
        let seconds = if cursor.idle {
            0.0
        } else {
            cursor.last_commit_time.map_or(0.0, |t| {
                (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0
            })
        };
        let lag = Lag {
            bytes,
            seconds,
            changes_per_second: (cursor.changes - self.changes_then) as f64
                / self.since.elapsed().as_secs_f64(),
        };
        self.changes_then = cursor.changes;
        self.since = Instant::now();
        lag
    }

    /// The figures at the end: caught up.
    fn last(&self, cursor: &Cursor, bytes: i64) -> Lag {
        Lag {
            bytes,
            seconds: 0.0,
            changes_per_second: (cursor.changes - self.changes_then) as f64
                / self.since.elapsed().as_secs_f64().max(0.001),
        }
    }
}

/// What a run leaves once its stream and workers are closed.
struct Settled {
    report: SyncReport,
    cursor: Cursor,
    confirmed: Lsn,
    meter: LagMeter,
}

/// One run of the sync: the stream, the workers, and where they stand.
struct Run {
    stream: Stream,
    workers: Workers,
    relations: Relations,
    report: SyncReport,
    cursor: Cursor,
    /// The position confirmed to the slot.
    confirmed: Lsn,
    meter: LagMeter,
    fence: String,
    horizon: Lsn,
}

impl Run {
    /// Routes the stream to the workers and confirms what they committed, until the fence (or,
    /// following, until `stop`). Ok(true) when caught up, Ok(false) when stopped.
    async fn apply(
        &mut self,
        legacy: &mut sqlx::PgConnection,
        opts: &SyncOptions,
        on_lag: &(dyn Fn(Lag) + Sync),
        stop: impl Future<Output = ()>,
    ) -> Result<bool> {
        tokio::pin!(stop);
        loop {
            if self.meter.due() {
                let bytes = slot::info(legacy).await?.map_or(0, |i| i.lag_bytes);
                on_lag(self.meter.read(&self.cursor, bytes));
                self.report.lag_bytes = bytes;
            }
            let cursor = &mut self.cursor;
            tokio::select! {
                biased;
                ack = self.workers.acks.recv() => {
                    let ack = ack.ok_or_else(|| MigrateError::task("the targets' workers", "ended"))?;
                    let committed = self.workers.take(ack)?;
                    if committed > self.confirmed {
                        self.confirmed = committed;
                        self.stream.confirm(committed);
                    }
                }
                _ = &mut stop => return Ok(false),
                event = self.stream.next() => {
                    let event = event?.ok_or_else(|| {
                        MigrateError::Stream("the legacy server ended the replication stream".into())
                    })?;
                    route(event, cursor, &mut self.relations, &mut self.workers, &mut self.report, opts, &self.fence, self.horizon).await?;
                    // The fence's own transaction has ended: everything before it is routed.
                    if cursor.fence_seen && cursor.current.is_none() && !opts.follow {
                        return Ok(true);
                    }
                    if cursor.checkpoint_pending() && cursor.checkpoint_due() <= tokio::time::Instant::now() {
                        cursor.checkpoint(&mut self.workers).await?;
                    }
                }
                // The stream went quiet with transactions applied but not committed: a follow
                // would otherwise hold them until the server's next message, up to its
                // keepalive interval (30 s).
                _ = tokio::time::sleep_until(cursor.checkpoint_due()), if cursor.checkpoint_pending() => {
                    cursor.checkpoint(&mut self.workers).await?;
                }
            }
        }
    }

    /// Ends the run: between transactions the targets commit everything received and the slot
    /// is confirmed up to it; stopped inside a transaction, what the targets did not commit
    /// comes again next time. The workers and the stream close whatever the outcome.
    async fn settle(self, outcome: Result<bool>) -> Result<Settled> {
        let Run {
            mut stream,
            mut workers,
            report,
            cursor,
            mut confirmed,
            meter,
            ..
        } = self;
        let finished = match outcome {
            Ok(_) if cursor.current.is_none() => {
                let upto = cursor.upto;
                let done = async {
                    workers.checkpoint(upto).await?;
                    workers.wait_for(upto).await
                }
                .await;
                done.map(|()| upto)
            }
            Ok(_) => Ok(workers.committed()),
            Err(e) => Err(e),
        };
        workers.close().await;
        if let Ok(upto) = &finished
            && *upto > confirmed
        {
            confirmed = *upto;
            stream.confirm(confirmed);
        }
        stream.close().await;
        finished?;
        Ok(Settled {
            report,
            cursor,
            confirmed,
            meter,
        })
    }
}

/// One sync at a time: two would read the same changes and apply them side by side. The lock is
/// this connection's, so it goes with the process, however it ends. A killed sync's backend ends
/// soon after it next fails to reach its client.
async fn lock(legacy: &mut sqlx::PgConnection, wait: Duration) -> Result<()> {
    let _ = sqlx::raw_sql("SET client_connection_check_interval = 1000")
        .execute(&mut *legacy)
        .await;
    let give_up = Instant::now() + wait;
    loop {
        let mine: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(SYNC_LOCK)
            .fetch_one(&mut *legacy)
            .await?;
        if mine {
            return Ok(());
        }
        if Instant::now() >= give_up {
            return Err(MigrateError::SyncBusy);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Streams the slot; a walsender of a killed sync may still hold it a moment.
async fn open_stream(url: &str, slot: &str, from: Lsn, wait: Duration) -> Result<Stream> {
    let give_up = Instant::now() + wait.max(Duration::from_secs(10));
    loop {
        match Stream::open(url, slot, PUBLICATION, from).await {
            Ok(s) => return Ok(s),
            Err(e) if e.to_string().contains("is active for PID") && Instant::now() < give_up => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn route(
    event: Event,
    cursor: &mut Cursor,
    relations: &mut Relations,
    workers: &mut Workers,
    report: &mut SyncReport,
    opts: &SyncOptions,
    fence: &str,
    horizon: Lsn,
) -> Result<()> {
    let message = match event {
        Event::Position(lsn) => {
            if cursor.current.is_none() && lsn > cursor.upto {
                cursor.upto = lsn;
                cursor.idle = true;
            }
            return Ok(());
        }
        Event::Message(m) => m,
    };
    match message {
        Message::Begin {
            final_lsn,
            commit_time,
            ..
        } => {
            cursor.current = Some((final_lsn, pg_time(commit_time)));
            cursor.touched = [false; 4];
            cursor.idle = false;
        }
        Message::Relation(rel) => relations.describe(&rel)?,
        Message::Insert { relation, new } => {
            let change = RowChange::Insert {
                values: relations.in_contract_order(relation, new)?,
            };
            dispatch(cursor, relations.table(relation)?, change, workers, horizon).await?;
        }
        Message::Update { relation, old, new } => {
            let old_key = match &old {
                Some(old) => apply::old_key(old, relations.key_index(relation)?),
                None => None,
            };
            let change = RowChange::Update {
                old_key,
                values: relations.in_contract_order(relation, new)?,
            };
            dispatch(cursor, relations.table(relation)?, change, workers, horizon).await?;
        }
        Message::Delete { relation, old } => {
            let key = apply::old_key(&old, relations.key_index(relation)?)
                .ok_or_else(|| MigrateError::Stream("a delete without its key".into()))?;
            let change = RowChange::Delete { key };
            dispatch(cursor, relations.table(relation)?, change, workers, horizon).await?;
        }
        Message::Truncate {
            relations: truncated,
            ..
        } => truncate(cursor, relations, workers, truncated, horizon).await?,
        Message::Logical {
            prefix, content, ..
        } => {
            let content = String::from_utf8_lossy(&content);
            if prefix == MARKER_PREFIX && opts.until_marker.as_deref() == Some(content.as_ref()) {
                cursor.after_marker = true;
                report.marker_seen = true;
            } else if prefix == FENCE_PREFIX && content == fence {
                cursor.fence_seen = true;
            }
        }
        Message::Commit { end_lsn, .. } => commit(cursor, workers, report, end_lsn).await?,
        Message::Type | Message::Origin => {}
    }
    Ok(())
}

/// A truncate: each target's tables in one operation, in the transaction being received.
async fn truncate(
    cursor: &mut Cursor,
    relations: &Relations,
    workers: &mut Workers,
    truncated: Vec<u32>,
    horizon: Lsn,
) -> Result<()> {
    if cursor.after_marker {
        return Err(past_marker());
    }
    let (commit, _) = cursor.current.ok_or_else(outside)?;
    let mut by_target: [Vec<&'static schema::contract::Table>; 4] = Default::default();
    for relation in truncated {
        let table = relations.table(relation)?;
        by_target[target_of(table.service)].push(table);
    }
    for (i, tables) in by_target.into_iter().enumerate() {
        if tables.is_empty() {
            continue;
        }
        begin_on(cursor, i, commit, workers, horizon).await?;
        cursor.changes += 1;
        workers.send(i, Op::Truncate(tables)).await?;
    }
    Ok(())
}

/// The end of a legacy transaction: each target it touched commits it (at its next
/// checkpoint).
async fn commit(
    cursor: &mut Cursor,
    workers: &mut Workers,
    report: &mut SyncReport,
    end_lsn: Lsn,
) -> Result<()> {
    let (commit, time) = cursor.current.take().ok_or_else(outside)?;
    for i in 0..4 {
        if cursor.touched[i] {
            workers.send(i, Op::Commit { commit, time }).await?;
        }
    }
    // A transaction of messages only (a fence, a marker) applies nothing.
    if cursor.touched.iter().any(|t| *t) {
        report.transactions += 1;
    }
    cursor.upto = cursor.upto.max(end_lsn);
    cursor.last_commit_time = time.or(cursor.last_commit_time);
    Ok(())
}

async fn begin_on(
    cursor: &mut Cursor,
    target: usize,
    commit: Lsn,
    workers: &mut Workers,
    horizon: Lsn,
) -> Result<()> {
    if !cursor.touched[target] {
        cursor.touched[target] = true;
        workers
            .send(
                target,
                Op::Begin {
                    commit,
                    tolerant: commit <= horizon,
                },
            )
            .await?;
    }
    Ok(())
}

async fn dispatch(
    cursor: &mut Cursor,
    table: &'static schema::contract::Table,
    change: RowChange,
    workers: &mut Workers,
    horizon: Lsn,
) -> Result<()> {
    if cursor.after_marker {
        return Err(past_marker());
    }
    let (commit, _) = cursor.current.ok_or_else(outside)?;
    let target = target_of(table.service);
    begin_on(cursor, target, commit, workers, horizon).await?;
    cursor.changes += 1;
    workers
        .send(
            target,
            Op::Change(Pending {
                table,
                commit,
                change,
            }),
        )
        .await
}

fn outside() -> MigrateError {
    MigrateError::Stream("a change outside a transaction in the stream".into())
}

/// Brings the service databases up to the legacy database's current position: by syncing here,
/// or, while another sync (`--follow`) runs, by waiting until it has applied what was committed
/// before this call (an error if it stalls).
pub async fn catch_up(endpoints: &Endpoints) -> Result<()> {
    let mut legacy = connect::connection("legacy", endpoints.legacy()).await?;
    if slot::info(&mut legacy).await?.is_none() {
        return Ok(());
    }
    let quiet = |_: Lag| {};
    match sync(
        endpoints,
        &SyncOptions::default(),
        &crate::Silent,
        &quiet,
        std::future::pending(),
    )
    .await
    {
        Ok(_) => return Ok(()),
        Err(MigrateError::SyncBusy) => {}
        Err(e) => return Err(e),
    }
    // Another sync (`--follow`) is at it: wait until it has applied what is committed now. The
    // slot is confirmed only up to what all four targets committed. A follow that stops moving
    // is an error: the caller would otherwise go on as if caught up.
    let goal: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(&mut legacy)
        .await?;
    let goal: Lsn = goal.parse().map_err(MigrateError::Stream)?;
    let mut seen = Lsn(0);
    let mut deadline = Instant::now() + STALLED_FOLLOW;
    loop {
        let confirmed = slot::info(&mut legacy).await?.map_or(goal, |i| i.confirmed);
        if confirmed >= goal {
            return Ok(());
        }
        if confirmed > seen {
            seen = confirmed;
            deadline = Instant::now() + STALLED_FOLLOW;
        } else if Instant::now() >= deadline {
            return Err(MigrateError::SyncStalled(format!(
                "the running `sync --follow` has confirmed nothing for {} s (at {confirmed}, \
                 waiting for {goal}): see its output, or stop it and run `mfe migrate sync`",
                STALLED_FOLLOW.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How long a running follow may confirm nothing while another phase waits for it.
const STALLED_FOLLOW: Duration = Duration::from_secs(30);

fn past_marker() -> MigrateError {
    MigrateError::PastTheFreeze
}
