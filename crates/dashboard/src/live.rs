//! What the phase running in this process reports (`mfe migrate <phase> --ui`): its tables' rows
//! as they stream, its steps and notes. The journal only knows a chunk once it is committed; this
//! moves with every batch.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use migrator::Progress;

#[derive(Default)]
pub struct Live {
    inner: Mutex<LiveState>,
}

#[derive(Debug, Clone, Default)]
pub struct LiveState {
    pub phase: Option<String>,
    pub started: Option<(Instant, DateTime<Utc>)>,
    /// `running`, `done`, `failed`; empty before `begin`.
    pub state: String,
    pub error: Option<String>,
    /// By table (or by a phase's own name for its steps: `cutover`, `rollback`, `sync`).
    pub tables: BTreeMap<String, LiveTable>,
    pub notes: Vec<String>,
    pub lag: Option<Lag>,
}

#[derive(Debug, Clone, Default)]
pub struct LiveTable {
    pub total: u64,
    pub rows: u64,
    pub step: Option<String>,
}

/// Sync's lag as its callback reports it.
#[derive(Debug, Clone, Copy)]
pub struct Lag {
    pub bytes: i64,
    pub seconds: f64,
    pub changes_per_second: f64,
}

/// Notes kept: the page shows the latest.
const NOTES: usize = 50;

impl Live {
    pub fn new() -> Self {
        Self::default()
    }

    /// A phase starts in this process.
    pub fn begin(&self, phase: &str) {
        let mut s = self.lock();
        *s = LiveState {
            phase: Some(phase.to_string()),
            started: Some((Instant::now(), Utc::now())),
            state: "running".into(),
            ..LiveState::default()
        };
    }

    /// The phase ended; `error` says why when it failed.
    pub fn finish(&self, error: Option<String>) {
        let mut s = self.lock();
        s.state = if error.is_some() { "failed" } else { "done" }.into();
        s.error = error;
    }

    pub fn lag(&self, lag: Lag) {
        self.lock().lag = Some(lag);
    }

    pub fn state(&self) -> LiveState {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LiveState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Progress for Live {
    fn table_started(&self, table: &str, total: u64, done: u64) {
        let mut s = self.lock();
        let t = s.tables.entry(table.to_string()).or_default();
        t.total = total.max(done);
        t.rows = done;
    }

    fn rows(&self, table: &str, rows: u64) {
        let mut s = self.lock();
        let t = s.tables.entry(table.to_string()).or_default();
        t.rows += rows;
        t.total = t.total.max(t.rows);
    }

    fn table_step(&self, table: &str, step: &str) {
        self.lock()
            .tables
            .entry(table.to_string())
            .or_default()
            .step = Some(step.to_string());
    }

    fn note(&self, message: &str) {
        let mut s = self.lock();
        s.notes.push(message.to_string());
        if s.notes.len() > NOTES {
            s.notes.remove(0);
        }
    }
}

/// Reports to several receivers (the terminal's bars and the dashboard).
pub struct Fanout(pub Vec<std::sync::Arc<dyn Progress>>);

impl Progress for Fanout {
    fn table_started(&self, table: &str, total: u64, done: u64) {
        self.0
            .iter()
            .for_each(|p| p.table_started(table, total, done));
    }

    fn rows(&self, table: &str, rows: u64) {
        self.0.iter().for_each(|p| p.rows(table, rows));
    }

    fn table_step(&self, table: &str, step: &str) {
        self.0.iter().for_each(|p| p.table_step(table, step));
    }

    fn note(&self, message: &str) {
        self.0.iter().for_each(|p| p.note(message));
    }
}
