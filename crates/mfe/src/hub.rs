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
    /// Declare the exchange and every consuming service's queues and bindings, as each service
    /// does at its start. Run it on a new broker before the publishers start: RabbitMQ drops an
    /// event that no queue is bound to yet.
    Declare {
        /// The broker.
        #[arg(long, env = "RABBITMQ_URL", default_value = platform::config::DEFAULT_RABBITMQ_URL, hide_env_values = true)]
        url: String,
        /// The topic exchange.
        #[arg(long, env = "EVENTS_EXCHANGE", default_value = events::settings::DEFAULT_EXCHANGE)]
        exchange: String,
        /// Put this before each queue name (`<prefix>.<service>.events`), for a platform that
        /// shares its broker.
        #[arg(long)]
        prefix: Option<String>,
        /// `classic` or `quorum` (replicated across a broker cluster): as the services declare
        /// them (EVENTS_QUEUE_TYPE).
        #[arg(long, env = "EVENTS_QUEUE_TYPE", default_value = "classic")]
        queue_type: events::settings::QueueType,
    },
}

/// Every consuming service and the event types its queue is bound to (the same lists the
/// services bind at start).
const CONSUMERS: &[(&str, &[&str])] = contracts::events::subscriptions::ALL;

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
    let command = match command {
        EventsCommand::Dlq { command } => command,
        EventsCommand::Declare {
            url,
            exchange,
            prefix,
            queue_type,
        } => return declare(&url, &exchange, prefix.as_deref(), queue_type, json).await,
    };
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

async fn declare(
    url: &str,
    exchange: &str,
    prefix: Option<&str>,
    queue_type: events::settings::QueueType,
    json: bool,
) -> anyhow::Result<()> {
    let connection = events::broker::connect(url, "mfe events declare")
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the broker at {}: {e}",
                events::broker::masked(url)
            )
        })?;
    let channel = connection.create_channel().await?;
    let mut declared = Vec::new();
    for (service, keys) in CONSUMERS {
        // `<PREFIX>_EVENTS_QUEUE` names a service's queue, as `mfe dev` passes it on: declared
        // here, a queue the service does not read would collect its events for nobody.
        let named = std::env::var(format!(
            "{}_EVENTS_QUEUE",
            service.trim_end_matches("-service").to_uppercase()
        ))
        .ok()
        .filter(|q| !q.trim().is_empty());
        let queue = match (named, prefix) {
            (Some(queue), _) => queue,
            (None, Some(prefix)) => format!("{prefix}.{service}.events"),
            (None, None) => format!("{service}.events"),
        };
        let settings = events::EventsSettings {
            url: url.to_string().into(),
            source: service.to_string(),
            exchange: exchange.to_string(),
            queue: queue.clone(),
            prefetch: 1,
            max_retries: 0,
            retry_delay: std::time::Duration::ZERO,
            relay_poll: std::time::Duration::ZERO,
            outbox_retention: std::time::Duration::ZERO,
            queue_type,
        };
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        events::broker::declare_consumer_topology(&channel, &settings, &keys).await?;
        declared.push(serde_json::json!({"service": service, "queue": queue, "routingKeys": keys}));
    }
    let _ = connection.close(200, "declared".into()).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&declared)?);
    } else {
        for d in &declared {
            println!(
                "{} bound to {exchange} for {}",
                d["queue"].as_str().unwrap_or_default(),
                d["routingKeys"]
                    .as_array()
                    .map(|k| k
                        .iter()
                        .filter_map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}
