//! `mfe events`: operating the event hub. Dead-lettered events (those a service failed to apply
//! `EVENTS_MAX_RETRIES` times) wait in `<queue>.dlq`; operators list them, fix the cause, and
//! replay them into the service's queue.

use anyhow::bail;
use events::dlq::{self, Selection};
use uuid::Uuid;

use crate::ui;

#[derive(clap::Subcommand)]
pub enum EventsCommand {
    /// Dead-lettered events of one consuming service.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(clap::Args)]
pub struct Target {
    /// The broker.
    #[arg(long, env = "RABBITMQ_URL", default_value = platform::config::DEFAULT_RABBITMQ_URL, hide_env_values = true)]
    url: String,
    /// The consuming service, e.g. profile-service (its queue is `<service>.events`).
    #[arg(long, conflicts_with = "queue", required_unless_present = "queue")]
    service: Option<String>,
    /// The service's queue, when it is not `<service>.events` (EVENTS_QUEUE).
    #[arg(long)]
    queue: Option<String>,
}

impl Target {
    fn queue(&self) -> String {
        match (&self.queue, &self.service) {
            (Some(queue), _) => queue.clone(),
            (None, Some(service)) => format!("{service}.events"),
            (None, None) => unreachable!("clap requires --service or --queue"),
        }
    }
}

#[derive(clap::Subcommand)]
pub enum DlqCommand {
    /// Show dead-lettered events, oldest first, leaving them in place.
    List {
        #[command(flatten)]
        target: Target,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Move dead-lettered events back into the service's queue with their retries reset.
    Replay {
        #[command(flatten)]
        target: Target,
        /// The event ids to replay (repeatable).
        #[arg(long = "id", required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<Uuid>,
        /// Replay every dead-lettered event.
        #[arg(long)]
        all: bool,
        /// At most this many.
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
    },
}

/// Runs an `events` subcommand.
pub async fn run(command: EventsCommand, json: bool) -> anyhow::Result<()> {
    let EventsCommand::Dlq { command } = command;
    match command {
        DlqCommand::List { target, limit } => {
            let queue = target.queue();
            let letters = dlq::list(&target.url, &queue, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&letters)?);
                return Ok(());
            }
            if letters.is_empty() {
                println!("{}.dlq is empty", queue);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = letters
                .iter()
                .map(|l| {
                    vec![
                        l.id.clone().unwrap_or_else(|| "-".into()),
                        l.routing_key.clone().unwrap_or_else(|| "-".into()),
                        l.retries.to_string(),
                        shorten(l.error.as_deref().unwrap_or("-"), 70),
                    ]
                })
                .collect();
            ui::print_table(&["id", "type", "retries", "last error"], &rows);
            println!("{} dead-lettered event(s) in {queue}.dlq", letters.len());
        }
        DlqCommand::Replay {
            target,
            ids,
            all,
            limit,
        } => {
            let queue = target.queue();
            let selection = if all {
                Selection::All
            } else {
                Selection::Ids(ids.clone())
            };
            let report = dlq::replay(&target.url, &queue, &selection, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for id in &report.replayed {
                    println!("replayed {id}");
                }
                println!(
                    "{} event(s) replayed into {queue}, {} left in {queue}.dlq",
                    report.replayed.len(),
                    report.kept
                );
            }
            if let Selection::Ids(wanted) = &selection {
                let missing: Vec<String> = wanted
                    .iter()
                    .map(Uuid::to_string)
                    .filter(|id| !report.replayed.contains(id))
                    .collect();
                if !missing.is_empty() {
                    bail!("not found in {queue}.dlq: {}", missing.join(", "));
                }
            }
        }
    }
    Ok(())
}

fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}
