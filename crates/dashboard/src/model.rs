//! From what the phase reports and what the journal says to one [`Snapshot`], with rates and ETAs
//! from the rows seen over the last seconds.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use migrator::status::Run;

use crate::collect::JournalView;
use crate::live::{LiveState, LiveTable};
use crate::snapshot::*;

/// Rates are measured over this window: long enough to smooth a chunk's commit, short enough to
/// follow a change of pace.
const WINDOW: Duration = Duration::from_secs(10);
/// Points of the throughput chart (one a second).
const POINTS: usize = 600;

/// Keeps the rows seen per table over [`WINDOW`] and the chart's points.
#[derive(Default)]
pub struct Model {
    seen: HashMap<String, VecDeque<(Instant, u64)>>,
    total: VecDeque<(Instant, u64)>,
    throughput: VecDeque<Point>,
    last_point: Option<Instant>,
}

pub struct Inputs<'a> {
    pub live: Option<&'a LiveState>,
    pub journal: &'a JournalView,
    pub hub: &'a HubView,
    pub now: Instant,
    pub wall: DateTime<Utc>,
}

pub(crate) fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

impl Model {
    pub fn snapshot(&mut self, i: Inputs<'_>) -> Snapshot {
        let live = i.live.filter(|l| l.phase.is_some());
        let tables: Vec<TableView> = i
            .journal
            .tables
            .iter()
            .map(|jt| self.table_view(jt, live, i.now))
            .collect();
        let rows: u64 = tables.iter().map(|t| t.rows).sum();
        let rows_total: u64 = tables.iter().map(|t| t.rows_total).sum();
        let bytes = tables.iter().map(|t| t.bytes).sum::<Option<u64>>();
        let rate = window_rate(&mut self.total, rows, i.now);
        if self
            .last_point
            .is_none_or(|t| i.now.duration_since(t) >= Duration::from_millis(950))
        {
            self.last_point = Some(i.now);
            self.throughput.push_back(Point {
                at: iso(i.wall),
                rows_per_second: rate,
            });
            if self.throughput.len() > POINTS {
                self.throughput.pop_front();
            }
        }
        let running = tables
            .iter()
            .any(|t| t.state != "done" && t.state != "not started" && t.state != "unreachable");
        Snapshot {
            version: VERSION,
            generated_at: iso(i.wall),
            mode: if live.is_some() { "live" } else { "journal" }.into(),
            phase: phase(live, &i.journal.runs, running, i.now),
            notes: notes(live, i.journal),
            totals: Totals {
                rows,
                rows_total,
                bytes,
                rows_per_second: rate,
                eta_seconds: eta(
                    rows,
                    rows_total,
                    rate,
                    if running { "running" } else { "done" },
                ),
            },
            tables,
            throughput: self.throughput.iter().cloned().collect(),
            verify: latest(&i.journal.runs, "verify").and_then(verify_view),
            sync: sync_view(live, i.journal),
            cutover: cutover_view(live, i.journal),
            rollback: rollback_view(live, i.journal),
            hub: i.hub.clone(),
            migration: migration_view(i.journal),
        }
    }

    /// One table as the journal has it, moved on by what the running phase said of it.
    fn table_view(
        &mut self,
        jt: &migrator::status::TableJournal,
        live: Option<&LiveState>,
        now: Instant,
    ) -> TableView {
        let lt = live.and_then(|l| l.tables.get(jt.table));
        // The phase's own counter moves with every batch; the journal's only per chunk.
        let (rows, total) = match lt {
            Some(lt) if lt.total > 0 || lt.rows > 0 => (lt.rows.max(jt.rows), lt.total),
            _ => (jt.rows, jt.estimated_rows),
        };
        let running = live.is_some_and(|l| l.state == "running");
        let state = match lt {
            // The journal's `done` is final; the phase's last step for the table may be older.
            _ if jt.state == "done" => jt.state.clone(),
            Some(LiveTable {
                step: Some(step), ..
            }) if running => step.clone(),
            // Every table of a copy is `loading` from its start; those no job has reached yet
            // are waiting.
            Some(LiveTable {
                step: None,
                rows: 0,
                ..
            }) if running && jt.state == "loading" => "waiting".to_string(),
            _ => jt.state.clone(),
        };
        let rows_total = if jt.state == "done" && lt.is_none() {
            rows
        } else {
            total.max(rows)
        };
        let rate = self.rate(jt.table, rows, now);
        TableView {
            table: jt.table.to_string(),
            service: jt.service.to_string(),
            eta_seconds: eta(rows, rows_total, rate, &state),
            state,
            rows,
            rows_total,
            bytes: jt.bytes,
            chunks_done: jt.chunks_done,
            chunks: jt.chunks,
            rows_per_second: rate,
        }
    }

    fn rate(&mut self, table: &str, rows: u64, now: Instant) -> f64 {
        let seen = self.seen.entry(table.to_string()).or_default();
        window_rate(seen, rows, now)
    }
}

/// Rows per second over the window, from `rows` now and what the window remembers.
fn window_rate(seen: &mut VecDeque<(Instant, u64)>, rows: u64, now: Instant) -> f64 {
    // A count that went down (a copy started again) starts a new window.
    if seen.back().is_some_and(|&(_, r)| r > rows) {
        seen.clear();
    }
    seen.push_back((now, rows));
    while seen.len() > 1 && now.duration_since(seen[0].0) > WINDOW {
        seen.pop_front();
    }
    let (t0, r0) = seen[0];
    let dt = now.duration_since(t0).as_secs_f64();
    if dt < 0.2 {
        return 0.0;
    }
    (rows - r0) as f64 / dt
}

fn eta(rows: u64, total: u64, rate: f64, state: &str) -> Option<f64> {
    if state == "done" || (total > 0 && rows >= total) {
        return Some(0.0);
    }
    (rate > 0.0 && total > rows).then(|| (total - rows) as f64 / rate)
}

fn latest<'a>(runs: &'a [Run], phase: &str) -> Option<&'a Run> {
    runs.iter()
        .filter(|r| r.phase == phase)
        .max_by(|a, b| a.at.cmp(&b.at))
}

fn phase(live: Option<&LiveState>, runs: &[Run], running: bool, now: Instant) -> Phase {
    if let Some(l) = live {
        return Phase {
            name: l.phase.clone(),
            state: l.state.clone(),
            started_at: l.started.map(|(_, wall)| iso(wall)),
            elapsed_seconds: l.started.map(|(t, _)| now.duration_since(t).as_secs_f64()),
            error: l.error.clone(),
        };
    }
    let last = runs.iter().max_by(|a, b| a.at.cmp(&b.at));
    if running {
        return Phase {
            name: Some("copy".into()),
            state: "running".into(),
            ..Phase::default()
        };
    }
    match last {
        Some(run) => Phase {
            name: Some(run.phase.clone()),
            state: if run.outcome == "ok" {
                "done"
            } else {
                "failed"
            }
            .into(),
            started_at: None,
            elapsed_seconds: None,
            error: (run.outcome != "ok").then(|| run.outcome.clone()),
        },
        None => Phase {
            name: None,
            state: "idle".into(),
            ..Phase::default()
        },
    }
}

fn notes(live: Option<&LiveState>, journal: &JournalView) -> Vec<String> {
    let mut notes = live.map(|l| l.notes.clone()).unwrap_or_default();
    notes.extend(journal.problems.iter().cloned());
    if let Some(warning) = journal.capture.as_ref().and_then(|c| c.warning.clone()) {
        notes.push(warning);
    }
    notes
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Verify's report as the journal keeps it (`mfe migrate verify --json`).
fn verify_view(run: &Run) -> Option<VerifyView> {
    let d = &run.detail;
    let tables = d.get("tables")?.as_array()?;
    let int = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_i64()).unwrap_or(0);
    Some(VerifyView {
        at: Some(run.at.clone()),
        ok: run.outcome == "ok",
        seconds: d.get("seconds").and_then(|s| s.as_f64()),
        tables: tables
            .iter()
            .map(|t| {
                let diff = &t["differences"];
                VerifyTable {
                    table: t["table"].as_str().unwrap_or_default().to_string(),
                    service: t["service"].as_str().unwrap_or_default().to_string(),
                    legacy_rows: int(t, "legacyRows"),
                    target_rows: int(t, "targetRows"),
                    ok: t["ok"].as_bool().unwrap_or(false),
                    missing: strings(&diff["missing"]),
                    extra: strings(&diff["extra"]),
                    changed: strings(&diff["changed"]),
                    missing_count: int(diff, "missingCount").max(0) as u64,
                    extra_count: int(diff, "extraCount").max(0) as u64,
                    changed_count: int(diff, "changedCount").max(0) as u64,
                }
            })
            .collect(),
        orphans: d
            .get("orphans")
            .and_then(|o| o.as_array())
            .map(|o| {
                o.iter()
                    .map(|x| Orphans {
                        foreign_key: x["foreignKey"].as_str().unwrap_or_default().to_string(),
                        reference: x["reference"].as_str().unwrap_or_default().to_string(),
                        orphans: int(x, "orphans"),
                        examples: strings(&x["examples"]),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    })
}

fn migration_view(journal: &JournalView) -> MigrationView {
    let capture = journal
        .capture
        .as_ref()
        .filter(|c| c.exists)
        .map(|c| SlotHold {
            slot: c.slot.clone(),
            database: "legacy".into(),
            retained_bytes: c.retained_bytes.unwrap_or(0),
        });
    MigrationView {
        state: journal.state.map(|s| s.as_str().to_string()),
        slots: capture
            .into_iter()
            .chain(journal.way_back.iter().map(|(service, w)| SlotHold {
                slot: w.slot.clone(),
                database: service.name().to_string(),
                retained_bytes: w.retained_bytes,
            }))
            .collect(),
    }
}

fn sync_view(live: Option<&LiveState>, journal: &JournalView) -> SyncView {
    let lag = live.and_then(|l| l.lag);
    let capture = journal.capture.as_ref().filter(|c| c.exists);
    SyncView {
        lag_bytes: lag
            .map(|l| l.bytes)
            .or_else(|| capture.and_then(|c| c.lag_bytes)),
        lag_seconds: lag.map(|l| l.seconds),
        changes_per_second: lag.map(|l| l.changes_per_second),
        slot: capture.map(|c| c.slot.clone()),
        positions: journal.positions.clone(),
    }
}

fn cutover_view(live: Option<&LiveState>, journal: &JournalView) -> CutoverView {
    let cutover = live.filter(|l| l.phase.as_deref() == Some("cutover"));
    let step = cutover.and_then(|l| l.tables.get("cutover")?.step.clone());
    let done = latest(&journal.runs, "cutover").filter(|r| r.outcome == "ok");
    let frozen = journal.frozen_at.is_some();
    // The cutover this process runs comes first: an earlier one may be recorded as done.
    let state = match (cutover.map(|l| l.state.as_str()), frozen, done.is_some()) {
        (Some("running"), true, _) => "frozen",
        (Some("running"), false, _) => "in progress",
        (Some("failed"), _, _) => "failed",
        (_, true, false) => "frozen",
        (_, _, true) => "done",
        _ => "not started",
    };
    CutoverView {
        state: state.into(),
        step,
        frozen_at: journal.frozen_at.clone(),
        freeze_seconds: done.and_then(|r| r.detail.get("freezeSeconds").and_then(|s| s.as_f64())),
        at: done.map(|r| r.at.clone()),
    }
}

fn rollback_view(live: Option<&LiveState>, journal: &JournalView) -> RollbackView {
    let step = live
        .filter(|l| l.phase.as_deref() == Some("rollback") && l.state == "running")
        .and_then(|l| l.tables.get("rollback").and_then(|t| t.step.clone()));
    match &journal.rollback {
        Some(r) => RollbackView { step, ..r.clone() },
        None => RollbackView {
            state: if step.is_some() {
                "staging"
            } else {
                "not started"
            }
            .into(),
            step,
            ..RollbackView::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_is_the_rows_over_the_window_and_restarts_when_the_count_goes_down() {
        let t0 = Instant::now();
        let mut seen = VecDeque::new();
        assert_eq!(window_rate(&mut seen, 0, t0), 0.0);
        assert_eq!(
            window_rate(&mut seen, 500, t0 + Duration::from_secs(1)),
            500.0
        );
        assert_eq!(
            window_rate(&mut seen, 1500, t0 + Duration::from_secs(2)),
            750.0
        );
        // Old samples leave the window.
        let later = t0 + Duration::from_secs(30);
        window_rate(&mut seen, 1500, later - Duration::from_secs(1));
        assert_eq!(window_rate(&mut seen, 2500, later), 1000.0);
        assert_eq!(
            window_rate(&mut seen, 10, later + Duration::from_secs(1)),
            0.0
        );
    }

    #[test]
    fn an_eta_needs_a_rate_and_is_zero_once_done() {
        assert_eq!(eta(50, 100, 10.0, "loading"), Some(5.0));
        assert_eq!(eta(50, 100, 0.0, "loading"), None);
        assert_eq!(eta(100, 100, 0.0, "done"), Some(0.0));
        assert_eq!(eta(0, 0, 0.0, "not started"), None);
    }
}
