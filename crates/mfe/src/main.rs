//! `mfe`: the platform's command line: the migration tool, the legacy seeder, operations.

mod admin;
mod dev;
mod devctl;
mod exit;
mod hub;
mod legacy;
mod migrate;
mod report;
mod ui;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "mfe", version, about = "The payments platform's command line")]
struct Cli {
    /// Print the report as JSON on stdout (no progress display).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Move the platform from the legacy shared database to one database per service.
    #[command(
        after_help = "Exit codes: 0 done, 1 differences found (verify), 2 usage, connection or contract error."
    )]
    Migrate {
        #[command(subcommand)]
        phase: migrate::Phase,
        #[command(flatten)]
        databases: migrate::Databases,
        #[command(flatten)]
        ui: migrate::UiArgs,
    },
    /// The event hub: dead-lettered events.
    #[command(after_help = "Exit codes: 0 done, 2 usage or connection error, or an id not found.")]
    Events {
        #[command(subcommand)]
        command: hub::EventsCommand,
    },
    /// The admin service's data: the audit log's hash chain.
    #[command(
        after_help = "Exit codes: 0 the chain holds, 1 tampered, 2 usage or connection error."
    )]
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Run the platform locally: the four services and the PSP sandbox, supervised.
    #[command(after_help = dev::AFTER_HELP)]
    Dev(dev::DevArgs),
    /// The legacy (POC-2) shared database: a realistic fixture to rehearse the migration on.
    Legacy {
        #[command(subcommand)]
        command: legacy::LegacyCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    platform::telemetry::init_for_cli();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mfe: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Migrate {
                phase,
                databases,
                ui,
            } => ExitCode::from(migrate::run(phase, &databases, &ui, cli.json).await),
            Command::Events { command } => match hub::run(command, cli.json).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mfe events: {e:#}");
                    ExitCode::from(2)
                }
            },
            Command::Admin { command } => match admin::run(command, cli.json).await {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("mfe admin: {e:#}");
                    ExitCode::from(2)
                }
            },
            Command::Dev(args) => ExitCode::from(dev::run(args, cli.json).await),
            Command::Legacy { command } => match legacy::run(command, cli.json).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mfe legacy: {e:#}");
                    ExitCode::from(2)
                }
            },
        }
    })
}
