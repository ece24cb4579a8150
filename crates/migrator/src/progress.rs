//! How long-running phases report what they are doing; the CLI draws bars from it, tests ignore it.

/// Receives progress from a running phase. Called from several tasks at once.
pub trait Progress: Send + Sync {
    /// A table's work is known: `total` rows expected (an estimate), `done` already finished earlier.
    fn table_started(&self, _table: &str, _total: u64, _done: u64) {}
    /// `rows` more rows of `table` went through.
    fn rows(&self, _table: &str, _rows: u64) {}
    /// A table moved to another step (`loading`, `indexing`, `done`, `verifying`, ...).
    fn table_step(&self, _table: &str, _step: &str) {}
    /// Something the operator should know once (e.g. why live sync is unavailable).
    fn note(&self, _message: &str) {}
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {}
