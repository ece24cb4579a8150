//! `psp-sandbox`: settings from the environment, then serving until SIGTERM or Ctrl-C. A bad
//! setting is one line on stderr and exit code 2; any other startup error exit code 1.

use std::process::ExitCode;

use platform::Env;
use psp_sandbox::{NAME, Settings};

fn main() -> ExitCode {
    let settings = match Settings::from_env(&Env::from_process()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{NAME}: {e}");
            return ExitCode::from(2);
        }
    };
    let traces = match platform::otel::Traces::from_env(NAME) {
        Ok(traces) => traces,
        Err(e) => {
            eprintln!("{NAME}: {e}");
            return ExitCode::from(2);
        }
    };
    platform::telemetry::init(settings.log_format, traces.as_ref());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{NAME}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let webhook_url = settings.webhook_url.clone();
        let data_file = settings.data_file.clone();
        let sandbox = psp_sandbox::build(settings).await?;
        // The same "listening" line with `port` as the services log: scripts and tests wait for it.
        tracing::info!(
            service = NAME, port = sandbox.port(), %webhook_url, data_file = ?data_file, "listening"
        );
        sandbox
            .run_until(platform::server::shutdown_signal())
            .await?;
        tracing::info!("{NAME} stopped");
        anyhow::Ok(())
    });
    if let Some(traces) = traces {
        traces.shutdown();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "{NAME} failed");
            eprintln!("{NAME}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
