//! `mfe legacy`: the legacy shared database (POC-2's `mfe_poc2`) as a fixture. The migration is
//! rehearsed, tested and benchmarked on databases this command fills, so it says exactly what it
//! wrote: rows per table, and the demo users' credentials to try the migrated platform with.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

use anyhow::Context;
use legacy_seed::live::{LoadOptions, LoadReport};
use legacy_seed::{self as seed, DEMO_USERS, SeedOptions, SeedReport};

#[derive(clap::Subcommand)]
pub enum LegacyCommand {
    /// Create and fill a legacy database (crates/schema/legacy-schema.sql) with realistic, deterministic
    /// data: N*10k users, N*100k payments with their status histories, N*50k audit log entries,
    /// profiles, refresh tokens, settings, and a fixed set of hard cases (unicode, NULLs, JSON
    /// null, extreme amounts and timestamps). The same --scale and --seed give identical data.
    Seed {
        /// The legacy database; created when missing.
        #[arg(
            long,
            env = "SHARED_DATABASE_URL",
            default_value = "postgresql://postgres:postgres@localhost:5432/mfe_poc2"
        )]
        url: String,
        /// N, may be fractional (0.01: 100 users, 1,000 payments).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Seed of every generated value.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Drop and recreate the legacy tables if they already hold rows (refused otherwise).
        #[arg(long)]
        replace: bool,
    },
    /// Play a live POC-2 against a seeded legacy database: registrations (user, profile and token
    /// in one transaction), logins and logouts, payments moving through their states with their
    /// history, profile edits that change a big TOASTed bio and edits that leave it, audit rows,
    /// config changes and deletes. Prints what committed, per kind and per table. Ctrl-C stops it
    /// early (with the report).
    WriteLoad {
        /// The legacy database.
        #[arg(
            long,
            env = "SHARED_DATABASE_URL",
            default_value = "postgresql://postgres:postgres@localhost:5432/mfe_poc2",
            hide_env_values = true
        )]
        url: String,
        /// Operations (transactions) per second.
        #[arg(long, default_value_t = 50)]
        rate: u32,
        /// Seconds to run.
        #[arg(long, default_value_t = 60.0)]
        duration: f64,
        /// Concurrent connections.
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Seed of the choices and generated values.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

/// Runs a `legacy` subcommand.
pub async fn run(cmd: LegacyCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        LegacyCommand::Seed {
            url,
            scale,
            seed,
            replace,
        } => {
            // Checked here too so that a typo fails before anything connects.
            anyhow::ensure!(
                scale.is_finite() && scale > 0.0,
                "--scale must be a positive number, got {scale}"
            );
            let opts = SeedOptions {
                url,
                scale,
                seed,
                replace,
            };
            let lines = ProgressLines::new(scale)?;
            let report = seed::seed(&opts, &|table, rows| lines.update(table, rows))
                .await
                .context("seeding the legacy database")?;
            if json {
                println!("{:#}", report.to_json());
            } else {
                print_summary(&report);
            }
            Ok(())
        }
        LegacyCommand::WriteLoad {
            url,
            rate,
            duration,
            workers,
            seed,
        } => {
            anyhow::ensure!(rate > 0, "--rate must be at least 1 operation per second");
            anyhow::ensure!(
                duration.is_finite() && duration > 0.0,
                "--duration must be a positive number of seconds, got {duration}"
            );
            anyhow::ensure!(workers > 0, "--workers must be at least 1");
            let opts = LoadOptions {
                url,
                rate,
                duration: std::time::Duration::from_secs_f64(duration),
                workers,
                seed,
            };
            // Ctrl-C or SIGTERM (a script stopping it) ends the load with its report.
            let ctrl_c = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut term) => {
                        tokio::select! {
                            _ = tokio::signal::ctrl_c() => {}
                            _ = term.recv() => {}
                        }
                    }
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            };
            let report = seed::live::write_load(&opts, ctrl_c)
                .await
                .context("playing the write load")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_load(&report);
            }
            Ok(())
        }
    }
}

fn print_load(report: &LoadReport) {
    println!(
        "{} operations committed in {:.1} s ({:.0}/s), {} failed",
        report.committed(),
        report.seconds,
        report.committed() as f64 / report.seconds.max(0.001),
        report.failed()
    );
    println!("\n{:<16} {:>9} {:>9}", "operation", "committed", "failed");
    let mut kinds: Vec<&str> = report.operations.keys().copied().collect();
    kinds.extend(
        report
            .failures
            .keys()
            .filter(|k| !report.operations.contains_key(*k)),
    );
    kinds.sort();
    for kind in kinds {
        println!(
            "{kind:<16} {:>9} {:>9}",
            report.operations.get(kind).copied().unwrap_or(0),
            report.failures.get(kind).copied().unwrap_or(0)
        );
    }
    println!(
        "\n{:<22} {:>9} {:>9} {:>9}",
        "table", "inserted", "updated", "deleted"
    );
    for (table, c) in &report.tables {
        println!(
            "{table:<22} {:>9} {:>9} {:>9}",
            c.inserted, c.updated, c.deleted
        );
    }
    if let Some(error) = &report.last_error {
        println!("\nlast failure: {error}");
    }
}

/// One stderr line per table when its last row is written, with its rate. Tables are written
/// in phases (users with profiles and tokens, payments with their histories, audit logs), so a
/// table's clock starts at its first report, which follows its phase's special rows.
struct ProgressLines {
    planned: HashMap<&'static str, u64>,
    /// Table -> (first report, rows then).
    started: RefCell<HashMap<String, (Instant, u64)>>,
    finished: RefCell<usize>,
}

impl ProgressLines {
    fn new(scale: f64) -> anyhow::Result<Self> {
        Ok(Self {
            planned: seed::planned_rows(scale)?.into_iter().collect(),
            started: RefCell::new(HashMap::new()),
            finished: RefCell::new(0),
        })
    }

    fn update(&self, table: &str, rows: u64) {
        let mut started = self.started.borrow_mut();
        let (since, first_rows) = *started
            .entry(table.to_string())
            .or_insert_with(|| (Instant::now(), rows));
        if self.planned.get(table) != Some(&rows) {
            return;
        }
        let secs = since.elapsed().as_secs_f64();
        let rate = if secs >= 0.01 && rows > first_rows {
            format!(
                "  {:>9} rows/s",
                thousands(((rows - first_rows) as f64 / secs) as u64)
            )
        } else {
            String::new()
        };
        eprintln!("  {table:<22} {:>11} rows{rate}", thousands(rows));
        let mut finished = self.finished.borrow_mut();
        *finished += 1;
        if *finished == self.planned.len() {
            eprintln!("  building indexes and foreign keys, analyzing...");
        }
    }
}

fn print_summary(report: &SeedReport) {
    println!(
        "Seeded {} (scale {}, seed {}) in {:.1} s\n",
        report.database,
        report.scale,
        report.seed,
        report.elapsed.as_secs_f64()
    );
    println!("{:<22} {:>11}", "table", "rows");
    for (table, rows) in &report.rows {
        println!("{table:<22} {:>11}", thousands(*rows));
    }
    println!("{:<22} {:>11}", "total", thousands(report.total()));
    println!("\nDemo users (email, password, role):");
    let width = DEMO_USERS
        .iter()
        .map(|(e, _, _)| e.len())
        .max()
        .unwrap_or(0);
    for (email, password, role) in DEMO_USERS {
        println!("  {email:<width$}  {password:<20}  {role}");
    }
}

/// `1234567` -> `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_groups_digits() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1_000), "1,000");
        assert_eq!(super::thousands(3_812_345), "3,812,345");
    }
}
