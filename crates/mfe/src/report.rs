//! How each phase's report is shown: as JSON (`--json`, for machines) or as tables, and which exit
//! code it means. One [`Report`] impl per report type keeps both renderings side by side.

use crate::exit;
use migrator::archive::{ExportReport, ImportReport};
use migrator::copy::CopyReport;
use migrator::engine::load::TableLoad;
use migrator::plan::Plan;
use migrator::prepare::Prepared;
use migrator::status::Status;
use migrator::sync::SyncReport;
use migrator::verify::VerifyReport;
use serde::Serialize;

use crate::ui::{print_table, thousands};

/// A phase's report.
pub trait Report: Serialize {
    /// The tables and lines a person reads.
    fn print(&self);

    /// The process exit code the report means.
    fn exit_code(&self) -> u8 {
        exit::OK
    }
}

/// Prints `report` (JSON or tables) and returns its exit code.
pub fn show<R: Report>(report: &R, json: bool) -> u8 {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).expect("reports serialise")
        );
    } else {
        report.print();
    }
    report.exit_code()
}

impl Report for Plan {
    fn print(&self) {
        println!("legacy database {} matches the contract\n", self.legacy);
        let rows: Vec<Vec<String>> = self
            .tables
            .iter()
            .map(|t| {
                vec![
                    t.table.into(),
                    t.service.into(),
                    t.target.clone(),
                    thousands(t.estimated_rows.max(0)),
                ]
            })
            .collect();
        print_table(&["table", "service", "into", "rows (est.)"], &rows);
        println!();
        let rows: Vec<Vec<String>> = self
            .foreign_keys
            .iter()
            .map(|f| vec![f.name.into(), f.reference.clone(), f.fate.into()])
            .collect();
        print_table(&["foreign key", "reference", "after the split"], &rows);
        println!();
        print_capture(&self.capture);
        println!("\npreflight of a live migration:");
        let rows: Vec<Vec<String>> = self
            .preflight
            .iter()
            .map(|c| {
                vec![
                    c.level.as_str().to_uppercase(),
                    c.check.into(),
                    c.server.clone(),
                    c.found.clone(),
                    c.fix.clone().unwrap_or_default(),
                ]
            })
            .collect();
        print_table(&["", "check", "server", "found", "what to change"], &rows);
    }

    fn exit_code(&self) -> u8 {
        if self.failed() {
            exit::DIFFERENCES
        } else {
            exit::OK
        }
    }
}

impl Report for Vec<Prepared> {
    fn print(&self) {
        let rows: Vec<Vec<String>> = self
            .iter()
            .map(|p| {
                vec![
                    p.service.into(),
                    p.database.clone(),
                    p.migrations.to_string(),
                ]
            })
            .collect();
        print_table(&["service", "database", "migrations"], &rows);
    }
}

impl Report for CopyReport {
    fn print(&self) {
        print_loads(&self.tables);
        let total: i64 = self.tables.iter().map(|t| t.rows).sum();
        println!(
            "\ncopied {} rows in {:.1} s",
            thousands(total),
            self.seconds
        );
    }
}

impl Report for VerifyReport {
    fn print(&self) {
        let rows: Vec<Vec<String>> = self
            .tables
            .iter()
            .map(|t| {
                let d = &t.differences;
                vec![
                    t.table.into(),
                    thousands(t.legacy_rows),
                    thousands(t.target_rows),
                    d.changed_count.to_string(),
                    d.missing_count.to_string(),
                    d.extra_count.to_string(),
                    if t.ok { "ok" } else { "DIFFERENT" }.into(),
                ]
            })
            .collect();
        println!();
        print_table(
            &[
                "table",
                "legacy rows",
                "service rows",
                "changed",
                "missing",
                "extra",
                "verdict",
            ],
            &rows,
        );
        for t in self.tables.iter().filter(|t| !t.ok) {
            let d = &t.differences;
            for (kind, ids) in [
                ("changed", &d.changed),
                ("missing", &d.missing),
                ("extra", &d.extra),
            ] {
                if !ids.is_empty() {
                    println!("  {} {kind}: {}", t.table, ids.join(", "));
                }
            }
        }
        println!();
        let rows: Vec<Vec<String>> = self
            .orphans
            .iter()
            .map(|o| vec![o.reference.clone(), o.orphans.to_string()])
            .collect();
        print_table(&["dropped foreign key", "orphans"], &rows);
        for o in self.orphans.iter().filter(|o| o.orphans > 0) {
            println!("  {} orphaned: {}", o.reference, o.examples.join(", "));
        }
        let verdict = if self.ok {
            "verified: identical"
        } else {
            "verify FOUND DIFFERENCES"
        };
        println!("\n{verdict} in {:.1} s", self.seconds);
    }

    fn exit_code(&self) -> u8 {
        if self.ok { exit::OK } else { exit::DIFFERENCES }
    }
}

impl Report for ExportReport {
    fn print(&self) {
        let rows: Vec<Vec<String>> = self
            .tables
            .iter()
            .map(|t| {
                vec![
                    t.table.clone(),
                    t.file.clone(),
                    thousands(t.rows),
                    thousands(t.bytes as i64),
                ]
            })
            .collect();
        println!();
        print_table(&["table", "file", "rows", "bytes"], &rows);
        println!("\nexported to {} in {:.1} s", self.dir, self.seconds);
    }
}

impl Report for ImportReport {
    fn print(&self) {
        print_loads(&self.tables);
        let verdict = if self.checksums_match {
            "imported; checksums match the manifest"
        } else {
            "imported, but CHECKSUMS DIFFER from the manifest"
        };
        println!("\n{verdict} in {:.1} s", self.seconds);
    }

    fn exit_code(&self) -> u8 {
        if self.checksums_match {
            exit::OK
        } else {
            exit::DIFFERENCES
        }
    }
}

impl Report for Status {
    fn print(&self) {
        println!(
            "migration: {}\n",
            self.state.map_or(
                "not started",
                migrator::engine::journal::state::State::as_str
            )
        );
        let rows: Vec<Vec<String>> = self
            .tables
            .iter()
            .map(|t| {
                vec![
                    t.table.into(),
                    t.service.into(),
                    t.state.clone(),
                    format!("{}/{}", t.chunks_done, t.chunks),
                    thousands(t.rows_copied),
                ]
            })
            .collect();
        print_table(&["table", "service", "copy", "chunks", "rows"], &rows);
        println!();
        let rows: Vec<Vec<String>> = self
            .phases
            .iter()
            .map(|p| {
                vec![
                    p.service.into(),
                    p.phase.clone(),
                    p.outcome.clone(),
                    p.at.clone(),
                ]
            })
            .collect();
        print_table(&["service", "phase", "last outcome", "at"], &rows);
        if let Some(capture) = &self.capture {
            println!();
            print_capture(capture);
        }
        if !self.sync.is_empty() {
            println!();
            let rows: Vec<Vec<String>> = self
                .sync
                .iter()
                .map(|p| {
                    vec![
                        p.service.into(),
                        p.position.clone(),
                        thousands(p.transactions),
                        p.commit_time.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            print_table(
                &["service", "applied up to", "transactions", "committed at"],
                &rows,
            );
        }
        if !self.way_back.is_empty() {
            println!();
            println!("the way back (changes since cutover, for `mfe migrate rollback`):");
            let rows: Vec<Vec<String>> = self
                .way_back
                .iter()
                .map(|w| {
                    vec![
                        w.service.into(),
                        w.slot.slot.clone(),
                        thousands(w.slot.behind_bytes),
                        thousands(w.slot.retained_bytes),
                    ]
                })
                .collect();
            print_table(
                &["service", "slot", "behind (bytes)", "WAL kept (bytes)"],
                &rows,
            );
        }
    }
}

/// The capture slot, as `plan` and `status` show it.
fn print_capture(c: &migrator::cdc::slot::CaptureState) {
    match (&c.unavailable_because, c.exists) {
        (Some(why), _) => println!("live sync: unavailable: {why}"),
        (None, false) => println!(
            "live sync: available; copy will make the capture slot {}",
            c.slot
        ),
        (None, true) => println!(
            "live sync: slot {} at {}, {} bytes behind, keeping {} bytes of WAL",
            c.slot,
            c.confirmed.as_deref().unwrap_or("-"),
            thousands(c.lag_bytes.unwrap_or(0)),
            thousands(c.retained_bytes.unwrap_or(0))
        ),
    }
    if let Some(warning) = &c.warning {
        println!("WARNING: {warning}");
    }
}

/// Each step of a switch (cutover, rollback) and how long it took.
fn print_steps(steps: &[(String, f64)]) {
    let rows: Vec<Vec<String>> = steps
        .iter()
        .map(|(step, secs)| vec![step.clone(), format!("{secs:.3}")])
        .collect();
    print_table(&["step", "seconds"], &rows);
}

/// The per-table summary of `copy` and `import`.
fn print_loads(tables: &[TableLoad]) {
    let rows: Vec<Vec<String>> = tables
        .iter()
        .map(|t| {
            vec![
                t.table.into(),
                t.service.into(),
                thousands(t.rows),
                t.chunks.to_string(),
                t.chunks_resumed.to_string(),
                t.state.into(),
            ]
        })
        .collect();
    println!();
    print_table(
        &["table", "service", "rows", "chunks", "resumed", "state"],
        &rows,
    );
}

impl Report for SyncReport {
    fn print(&self) {
        println!(
            "applied {} legacy transactions ({} rows) in {:.1} s; position {}; lag {} bytes",
            thousands(self.transactions as i64),
            thousands(self.rows as i64),
            self.seconds,
            self.position.as_deref().unwrap_or("-"),
            thousands(self.lag_bytes)
        );
    }
}

impl Report for migrator::abort::AbortReport {
    fn print(&self) {
        if self.slot_dropped {
            println!(
                "dropped the capture slot {} and its publication: the legacy server no longer keeps WAL for it",
                self.slot
            );
        } else {
            println!("there was no capture slot {} to drop", self.slot);
        }
        if self.way_back_dropped {
            println!(
                "dropped the way back (the service databases' slots): a rollback is no longer possible"
            );
        }
    }
}

impl Report for migrator::cutover::CutoverReport {
    fn print(&self) {
        println!(
            "cut over: writes to the legacy database were frozen for {:.3} s; the stream ended at {}",
            self.freeze_seconds, self.marker_lsn
        );
        println!(
            "  {} legacy transactions applied and {} changed rows verified inside the freeze",
            self.transactions_in_freeze, self.verified_rows
        );
        print_steps(&self.steps);
        println!(
            "  the topology file {} now says DATABASE_TOPOLOGY=split; the legacy database refuses writes",
            self.topology_file
        );
    }
}

impl Report for migrator::sync::diff::DiffSyncReport {
    fn print(&self) {
        println!(
            "{} pass(es) in {:.1} s: {} rows rewritten from the legacy database, {} deleted; {}",
            self.passes,
            self.seconds,
            thousands(self.rows_written as i64),
            thousands(self.rows_deleted as i64),
            if self.converged {
                "both sides are equal"
            } else {
                "still differing (writes going on?): run it again, or with --follow"
            }
        );
    }

    fn exit_code(&self) -> u8 {
        if self.converged {
            exit::OK
        } else {
            exit::DIFFERENCES
        }
    }
}

impl Report for migrator::rollback::RollbackReport {
    fn print(&self) {
        if self.already_done {
            println!(
                "already rolled back: nothing written now; the topology file {} says DATABASE_TOPOLOGY=shared",
                self.topology_file
            );
        } else {
            println!(
                "rolled back: writes were frozen for {:.3} s; {} rows the services changed since cutover, {} written back, {} verified",
                self.freeze_seconds,
                thousands(self.changed_rows as i64),
                thousands(self.rows_written() as i64),
                thousands(self.verified_rows as i64)
            );
            let rows: Vec<Vec<String>> = self
                .tables
                .iter()
                .map(|t| {
                    vec![
                        t.table.clone(),
                        thousands(t.inserted as i64),
                        thousands(t.updated as i64),
                        thousands(t.deleted as i64),
                    ]
                })
                .collect();
            print_table(&["table", "inserted", "updated", "deleted"], &rows);
            if !self.carried.is_empty() {
                let rows: Vec<Vec<String>> = self
                    .carried
                    .iter()
                    .map(|c| vec![c.table.clone(), thousands(c.rows as i64)])
                    .collect();
                print_table(&["services' own table", "rows carried"], &rows);
            }
            print_steps(&self.steps);
            println!(
                "  the topology file {} now says DATABASE_TOPOLOGY=shared; the service databases refuse writes",
                self.topology_file
            );
        }
        if !self.conflicts.is_empty() {
            println!(
                "\n{} changes the legacy database could not take as they are (kept in mfe_rollback.conflicts):",
                self.conflicts.len()
            );
            let rows: Vec<Vec<String>> = self
                .conflicts
                .iter()
                .map(|c| {
                    vec![
                        c.table.clone(),
                        c.key.clone(),
                        c.outcome.clone(),
                        c.reason.clone(),
                    ]
                })
                .collect();
            print_table(&["table", "id", "outcome", "why"], &rows);
        }
    }

    /// Conflicts need an operator's decision: exit 1, like differences found by verify.
    fn exit_code(&self) -> u8 {
        if self.conflicts.is_empty() {
            exit::OK
        } else {
            exit::DIFFERENCES
        }
    }
}
