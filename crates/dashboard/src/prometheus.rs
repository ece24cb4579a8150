//! The snapshot's figures as Prometheus gauges (text format 0.0.4), for a scraper instead of the
//! page: the same numbers, read at the same moment.

use std::fmt::Write;

use crate::snapshot::Snapshot;

struct Out(String);

impl Out {
    fn help(&mut self, name: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} gauge");
    }

    fn value(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

type TableFigure = fn(&crate::snapshot::TableView) -> Option<f64>;

pub fn render(s: &Snapshot) -> String {
    let mut o = Out(String::new());
    tables(&mut o, s);
    phase(&mut o, s);
    sync(&mut o, s);
    switch(&mut o, s);
    hub(&mut o, s);
    o.0
}

/// The per-table gauges of the copy.
fn tables(o: &mut Out, s: &Snapshot) {
    let per_table: [(&str, &str, TableFigure); 7] = [
        (
            "mfe_migration_table_rows",
            "Rows copied into the table's service database.",
            |t| Some(t.rows as f64),
        ),
        (
            "mfe_migration_table_rows_expected",
            "Rows the copy expects (the legacy table's estimate).",
            |t| Some(t.rows_total as f64),
        ),
        (
            "mfe_migration_table_bytes",
            "The table's size in its service database.",
            |t| t.bytes.map(|b| b as f64),
        ),
        (
            "mfe_migration_table_chunks",
            "Chunks the table's copy is split into.",
            |t| Some(t.chunks as f64),
        ),
        (
            "mfe_migration_table_chunks_done",
            "Chunks committed.",
            |t| Some(t.chunks_done as f64),
        ),
        (
            "mfe_migration_table_rows_per_second",
            "Rows per second over the last 10 seconds.",
            |t| Some(t.rows_per_second),
        ),
        (
            "mfe_migration_table_eta_seconds",
            "Seconds left at the current pace (absent when unknown).",
            |t| t.eta_seconds,
        ),
    ];
    for (name, help, get) in per_table {
        o.help(name, help);
        for t in &s.tables {
            if let Some(v) = get(t) {
                o.value(name, &[("table", &t.table), ("service", &t.service)], v);
            }
        }
    }
    o.help(
        "mfe_migration_table_state",
        "1 for the table's current state.",
    );
    for t in &s.tables {
        o.value(
            "mfe_migration_table_state",
            &[
                ("table", &t.table),
                ("service", &t.service),
                ("state", &t.state),
            ],
            1.0,
        );
    }
}

/// The phase, its pace, and the last verify.
fn phase(o: &mut Out, s: &Snapshot) {
    o.help(
        "mfe_migration_rows_per_second",
        "Rows per second over all tables.",
    );
    o.value(
        "mfe_migration_rows_per_second",
        &[],
        s.totals.rows_per_second,
    );
    let phase = s.phase.name.as_deref().unwrap_or("none");
    o.help(
        "mfe_migration_phase",
        "1 for the latest phase and its state.",
    );
    o.value(
        "mfe_migration_phase",
        &[("phase", phase), ("state", &s.phase.state)],
        1.0,
    );
    if let Some(v) = &s.verify {
        o.help(
            "mfe_migration_verify_ok",
            "1 when the last verify found no difference.",
        );
        o.value("mfe_migration_verify_ok", &[], flag(v.ok));
        o.help(
            "mfe_migration_verify_differences",
            "Rows the last verify found differing, by kind.",
        );
        for t in &v.tables {
            for (kind, n) in [
                ("missing", t.missing_count),
                ("extra", t.extra_count),
                ("changed", t.changed_count),
            ] {
                o.value(
                    "mfe_migration_verify_differences",
                    &[("table", &t.table), ("kind", kind)],
                    n as f64,
                );
            }
        }
    }
}

/// The sync's lag and the WAL each slot of the migration keeps.
fn sync(o: &mut Out, s: &Snapshot) {
    if let Some(lag) = s.sync.lag_bytes {
        o.help(
            "mfe_migration_sync_lag_bytes",
            "WAL the capture slot has not confirmed.",
        );
        o.value("mfe_migration_sync_lag_bytes", &[], lag as f64);
    }
    if let Some(lag) = s.sync.lag_seconds {
        o.help(
            "mfe_migration_sync_lag_seconds",
            "Age of the newest change sync applied.",
        );
        o.value("mfe_migration_sync_lag_seconds", &[], lag);
    }
    if !s.migration.slots.is_empty() {
        o.help(
            "mfe_migration_slot_retained_bytes",
            "WAL a server keeps for a slot of the migration.",
        );
        for slot in &s.migration.slots {
            o.value(
                "mfe_migration_slot_retained_bytes",
                &[("slot", &slot.slot), ("database", &slot.database)],
                slot.retained_bytes as f64,
            );
        }
    }
}

/// Cutover, its freeze, and rollback.
fn switch(o: &mut Out, s: &Snapshot) {
    o.help("mfe_migration_cutover_state", "1 for the cutover's state.");
    o.value(
        "mfe_migration_cutover_state",
        &[("state", &s.cutover.state)],
        1.0,
    );
    let frozen = frozen_seconds(s);
    if let Some(secs) = frozen {
        o.help(
            "mfe_migration_freeze_seconds",
            "How long the legacy database has refused writes (while frozen), or did (after cutover).",
        );
        o.value("mfe_migration_freeze_seconds", &[], secs);
    }
    o.help(
        "mfe_migration_rollback_state",
        "1 for the rollback's state.",
    );
    o.value(
        "mfe_migration_rollback_state",
        &[("state", &s.rollback.state)],
        1.0,
    );
}

/// The event hub: the broker and each service queue.
fn hub(o: &mut Out, s: &Snapshot) {
    o.help(
        "mfe_hub_available",
        "1 when the event hub's broker answered.",
    );
    o.value("mfe_hub_available", &[], flag(s.hub.available));
    for (name, help, get) in [
        (
            "mfe_hub_queue_messages",
            "Ready messages in a service's queue.",
            (|q| q.messages) as fn(&events::dlq::QueueDepth) -> u32,
        ),
        (
            "mfe_hub_queue_consumers",
            "Consumers of a service's queue.",
            |q| q.consumers,
        ),
        (
            "mfe_hub_dead_letters",
            "Messages in a service queue's dead-letter queue.",
            |q| q.dead_letters,
        ),
    ] {
        o.help(name, help);
        for q in &s.hub.queues {
            o.value(name, &[("queue", &q.queue)], get(q) as f64);
        }
    }
}

/// While frozen: since `frozenAt` (by the snapshot's clock); after: the recorded freeze.
fn frozen_seconds(s: &Snapshot) -> Option<f64> {
    if s.cutover.state == "frozen" {
        let at = chrono::DateTime::parse_from_rfc3339(s.cutover.frozen_at.as_deref()?).ok()?;
        let now = chrono::DateTime::parse_from_rfc3339(&s.generated_at).ok()?;
        return Some((now - at).num_milliseconds().max(0) as f64 / 1000.0);
    }
    s.cutover.freeze_seconds
}
