//! `mfe`: the platform's command line. It grows with the migration tool; today it prepares the
//! four service databases with the services' own migrations.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use platform::{Env, Service, ServiceConfig};

#[derive(Parser)]
#[command(name = "mfe", version, about = "The payments platform's command line")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Move the platform from the legacy shared database to one database per service.
    Migrate {
        #[command(subcommand)]
        phase: Phase,
    },
}

#[derive(Subcommand)]
enum Phase {
    /// Create the four service databases if missing and apply each service's own migrations
    /// (URLs from AUTH_DATABASE_URL, PAYMENTS_DATABASE_URL, ADMIN_DATABASE_URL, PROFILE_DATABASE_URL).
    Prepare,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    platform::telemetry::init(platform::LogFormat::Text);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mfe: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate {
            phase: Phase::Prepare,
        } => prepare(&Env::from_process()).await,
    }
}

async fn prepare(env: &Env) -> anyhow::Result<()> {
    for service in Service::ALL {
        let mut config = ServiceConfig::from_env(service, env)?;
        config.db_max_connections = 2;
        let migrator = match service {
            Service::Auth => &auth_service::MIGRATOR,
            Service::Payments => &payments_service::MIGRATOR,
            Service::Admin => &admin_service::MIGRATOR,
            Service::Profile => &profile_service::MIGRATOR,
        };
        let pool = platform::app::open_database(&config, migrator).await?;
        pool.close().await;
        println!(
            "{service:<18} ready  {}",
            platform::config::mask_url(&config.database_url)
        );
    }
    Ok(())
}
