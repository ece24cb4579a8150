//! `mfe migrate <phase>`: the seed's migration phases over the engine in `migrator`.
//!
//! Exit codes: 0 done and consistent, 1 differences found (`verify`), 2 usage, connection,
//! contract or other errors.

use std::sync::Arc;

use clap::{Args, Subcommand};
use migrator::copy::CopyOptions;
use migrator::error::exit;
use migrator::verify::VerifyOptions;
use migrator::{Endpoints, MigrateError};
use platform::Service;

use crate::ui::{Bars, print_table, thousands};

#[derive(Subcommand)]
pub enum Phase {
    /// Check the legacy database against the contract and show what goes where. Changes nothing.
    Plan,
    /// Create the four service databases if missing and apply each service's own migrations.
    Prepare,
    /// Stream every table from the legacy database into its service database (binary COPY, one
    /// snapshot, parallel, indexes after the load). Resumes where a previous run stopped.
    Copy {
        /// Chunks copied at once.
        #[arg(long, default_value_t = 4)]
        jobs: usize,
        /// Split tables larger than this into heap block ranges of about this many rows.
        #[arg(long, default_value_t = 250_000)]
        chunk_rows: u64,
    },
    /// Compare row counts and full-content checksums of every table on both sides, name the rows
    /// that differ, and count orphaned cross-service references. Exit code 1 on any difference.
    Verify {
        /// Ids listed per table and kind of difference.
        #[arg(long, default_value_t = 20)]
        max_listed: usize,
    },
    /// Write every legacy table (one snapshot) into DIR: a compressed file per table and a
    /// manifest of row counts and checksums. Also the pre-migration backup.
    Export {
        #[arg(long)]
        out: std::path::PathBuf,
        /// Tables exported at once.
        #[arg(long, default_value_t = 4)]
        jobs: usize,
    },
    /// Load an export into the prepared service databases, after checking every file against its
    /// manifest (a damaged archive is refused before anything is written).
    Import {
        #[arg(long)]
        from: std::path::PathBuf,
        /// Tables loaded at once.
        #[arg(long, default_value_t = 4)]
        jobs: usize,
    },
    /// Where each phase and table stands, from the journal in the service databases.
    Status,
}

/// Where to read and write; flags override the services' environment variables.
#[derive(Args)]
pub struct Databases {
    /// The legacy shared database (read only).
    #[arg(long = "legacy", env = "SHARED_DATABASE_URL", default_value = platform::config::DEFAULT_SHARED_DATABASE_URL, global = true, hide_env_values = true)]
    legacy: String,
    #[arg(long = "auth", env = "AUTH_DATABASE_URL", default_value = Service::Auth.default_database_url(), global = true, hide_env_values = true)]
    auth: String,
    #[arg(long = "payments", env = "PAYMENTS_DATABASE_URL", default_value = Service::Payments.default_database_url(), global = true, hide_env_values = true)]
    payments: String,
    #[arg(long = "admin", env = "ADMIN_DATABASE_URL", default_value = Service::Admin.default_database_url(), global = true, hide_env_values = true)]
    admin: String,
    #[arg(long = "profile", env = "PROFILE_DATABASE_URL", default_value = Service::Profile.default_database_url(), global = true, hide_env_values = true)]
    profile: String,
}

impl Databases {
    fn endpoints(&self) -> Result<Endpoints, MigrateError> {
        let named = [
            ("SHARED_DATABASE_URL / --legacy", &self.legacy),
            ("AUTH_DATABASE_URL / --auth", &self.auth),
            ("PAYMENTS_DATABASE_URL / --payments", &self.payments),
            ("ADMIN_DATABASE_URL / --admin", &self.admin),
            ("PROFILE_DATABASE_URL / --profile", &self.profile),
        ];
        for (name, url) in named {
            platform::db::parse_url(url)
                .map_err(|e| MigrateError::Usage(format!("{name}: {e}")))?;
        }
        Ok(Endpoints::new(
            self.legacy.clone(),
            [
                (Service::Auth, self.auth.clone()),
                (Service::Payments, self.payments.clone()),
                (Service::Admin, self.admin.clone()),
                (Service::Profile, self.profile.clone()),
            ],
        ))
    }
}

/// Runs a phase; returns the process exit code.
pub async fn run(phase: Phase, databases: &Databases, json: bool) -> u8 {
    match run_phase(phase, databases, json).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mfe migrate: {e}");
            e.exit_code()
        }
    }
}

/// Runs `phase` with progress bars (none with `--json`), clearing them whatever the outcome.
async fn with_bars<T, F, Fut>(json: bool, phase: F) -> Result<T, MigrateError>
where
    F: FnOnce(Arc<dyn migrator::Progress>) -> Fut,
    Fut: std::future::Future<Output = Result<T, MigrateError>>,
{
    let bars = Arc::new(Bars::new(json));
    let outcome = phase(bars.clone()).await;
    bars.finish();
    outcome
}

/// The per-table summary of `copy` and `import`.
fn print_loads(tables: &[migrator::load::TableLoad]) {
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

fn emit<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("reports serialise")
    );
}

async fn run_phase(phase: Phase, databases: &Databases, json: bool) -> Result<u8, MigrateError> {
    let endpoints = databases.endpoints()?;
    match phase {
        Phase::Plan => {
            let plan = migrator::plan::plan(&endpoints).await?;
            if json {
                emit(&plan);
                return Ok(exit::OK);
            }
            println!("legacy database {} matches the contract\n", plan.legacy);
            let rows: Vec<Vec<String>> = plan
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
            let rows: Vec<Vec<String>> = plan
                .foreign_keys
                .iter()
                .map(|f| vec![f.name.into(), f.reference.clone(), f.fate.into()])
                .collect();
            print_table(&["foreign key", "reference", "after the split"], &rows);
            Ok(exit::OK)
        }
        Phase::Prepare => {
            let prepared = migrator::prepare::prepare(&endpoints).await?;
            if json {
                emit(&prepared);
                return Ok(exit::OK);
            }
            let rows: Vec<Vec<String>> = prepared
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
            Ok(exit::OK)
        }
        Phase::Copy { jobs, chunk_rows } => {
            if jobs == 0 || chunk_rows == 0 {
                return Err(MigrateError::Usage(
                    "--jobs and --chunk-rows must be at least 1".into(),
                ));
            }
            let opts = CopyOptions { jobs, chunk_rows };
            let report =
                with_bars(json, |bars| migrator::copy::copy(&endpoints, &opts, bars)).await?;
            if json {
                emit(&report);
                return Ok(exit::OK);
            }
            print_loads(&report.tables);
            let total: i64 = report.tables.iter().map(|t| t.rows).sum();
            println!(
                "\ncopied {} rows in {:.1} s",
                thousands(total),
                report.seconds
            );
            Ok(exit::OK)
        }
        Phase::Verify { max_listed } => {
            let opts = VerifyOptions { max_listed };
            let report = with_bars(json, |bars| {
                migrator::verify::verify(&endpoints, &opts, bars)
            })
            .await?;
            let code = if report.ok {
                exit::OK
            } else {
                exit::DIFFERENCES
            };
            if json {
                emit(&report);
                return Ok(code);
            }
            let rows: Vec<Vec<String>> = report
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
                        if t.ok {
                            "ok".into()
                        } else {
                            "DIFFERENT".into()
                        },
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
            for t in report.tables.iter().filter(|t| !t.ok) {
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
            let rows: Vec<Vec<String>> = report
                .orphans
                .iter()
                .map(|o| vec![o.reference.clone(), o.orphans.to_string()])
                .collect();
            print_table(&["dropped foreign key", "orphans"], &rows);
            for o in report.orphans.iter().filter(|o| o.orphans > 0) {
                println!("  {} orphaned: {}", o.reference, o.examples.join(", "));
            }
            println!(
                "\n{} in {:.1} s",
                if report.ok {
                    "verified: identical"
                } else {
                    "verify FOUND DIFFERENCES"
                },
                report.seconds
            );
            Ok(code)
        }
        Phase::Export { out, jobs } => {
            let report = with_bars(json, |bars| {
                migrator::archive::export(&endpoints, &out, jobs.max(1), bars)
            })
            .await?;
            if json {
                emit(&report);
                return Ok(exit::OK);
            }
            let rows: Vec<Vec<String>> = report
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
            println!("\nexported to {} in {:.1} s", report.dir, report.seconds);
            Ok(exit::OK)
        }
        Phase::Import { from, jobs } => {
            let report = with_bars(json, |bars| {
                migrator::archive::import(&endpoints, &from, jobs.max(1), bars)
            })
            .await?;
            let code = if report.checksums_match {
                exit::OK
            } else {
                exit::DIFFERENCES
            };
            if json {
                emit(&report);
                return Ok(code);
            }
            print_loads(&report.tables);
            println!(
                "\n{} in {:.1} s",
                if report.checksums_match {
                    "imported; checksums match the manifest"
                } else {
                    "imported, but CHECKSUMS DIFFER from the manifest"
                },
                report.seconds
            );
            Ok(code)
        }
        Phase::Status => {
            let status = migrator::status::status(&endpoints).await?;
            if json {
                emit(&status);
                return Ok(exit::OK);
            }
            let rows: Vec<Vec<String>> = status
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
            let rows: Vec<Vec<String>> = status
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
            Ok(exit::OK)
        }
    }
}
