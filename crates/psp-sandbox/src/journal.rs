//! The data file: every change of the ledger as one JSON line, replayed at start, so that a
//! restarted sandbox still knows its charges, finishes settling the pending ones and delivers the
//! webhooks it had not delivered. A real provider does not forget.
//!
//! Lines are only ever appended. A line that does not parse (a write cut short by a crash) is
//! skipped with a warning rather than refusing to start.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::charges::Charge;
use crate::webhooks::Event;

/// One line of the data file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "camelCase")]
pub enum Record {
    /// The charge as it is after a change; the last line of a reference wins. `event` is the
    /// webhook the change made due (it reached its final state).
    #[serde(rename_all = "camelCase")]
    Charge {
        charge: Box<Charge>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<Box<Event>>,
    },
    /// The first POST of a reference failed on purpose (5000.xx) after `attempts` POSTs.
    #[serde(rename_all = "camelCase")]
    Refused { reference: String, attempts: u32 },
    /// The webhook `event` was delivered or given up; either way it is not sent again.
    #[serde(rename_all = "camelCase")]
    WebhookDone { event: String, delivered: bool },
}

/// What the data file held at start.
#[derive(Debug, Default)]
pub struct Replayed {
    pub charges: HashMap<String, Charge>,
    pub refused: HashMap<String, u32>,
    /// Webhooks made due and neither delivered nor given up, oldest first.
    pub undelivered: Vec<Event>,
}

/// The open data file.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: tokio::fs::File,
}

impl Journal {
    /// Opens (creating) the file at `path` and reads back what it holds.
    pub async fn open(path: &Path) -> anyhow::Result<(Self, Replayed)> {
        let shown = path.display();
        let text = match tokio::fs::read(path).await {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => anyhow::bail!("cannot read the data file {shown}: {e}"),
        };
        let replayed = replay(&text, path);
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the data file {shown}: {e}"))?;
        if !text.is_empty() && !text.ends_with('\n') {
            // A line cut short by a crash must not swallow the next one.
            file.write_all(b"\n").await?;
            file.flush().await?;
        }
        Ok((
            Self {
                path: path.to_path_buf(),
                file,
            },
            replayed,
        ))
    }

    /// Appends `record` as one line; returns once the operating system has it.
    pub async fn append(&mut self, record: &Record) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line).await?;
        self.file.flush().await
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn replay(text: &str, path: &Path) -> Replayed {
    let mut replayed = Replayed::default();
    let mut due: Vec<Event> = Vec::new();
    let mut done: HashSet<String> = HashSet::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record = match serde_json::from_str::<Record>(line) {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(
                    file = %path.display(), line = index + 1, error = %e,
                    "skipping an unreadable line of the data file"
                );
                continue;
            }
        };
        match record {
            Record::Charge { charge, event } => {
                replayed.refused.remove(&charge.reference);
                if let Some(event) = event {
                    due.push(*event);
                }
                replayed.charges.insert(charge.reference.clone(), *charge);
            }
            Record::Refused {
                reference,
                attempts,
            } => {
                replayed.refused.insert(reference, attempts);
            }
            Record::WebhookDone { event, .. } => {
                done.insert(event);
            }
        }
    }
    due.retain(|event| !done.contains(&event.id));
    replayed.undelivered = due;
    replayed
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::charges::{ChargeStatus, parse_amount};

    fn charge(reference: &str, attempts: u32) -> Charge {
        Charge {
            id: format!("ch_{reference}"),
            reference: reference.into(),
            amount: parse_amount("12.34").unwrap(),
            currency: "USD".into(),
            description: None,
            status: ChargeStatus::Succeeded,
            decline_code: None,
            message: None,
            attempts,
            created_at: Utc::now(),
            settled_at: Some(Utc::now()),
        }
    }

    fn line(record: &Record) -> String {
        serde_json::to_string(record).unwrap()
    }

    #[test]
    fn the_last_line_of_a_reference_wins_and_done_webhooks_stay_done() {
        let first = charge("a", 1);
        let delivered = Event::for_charge(&first, Utc::now()).unwrap();
        let pending = Event::for_charge(&charge("b", 1), Utc::now()).unwrap();
        let text = [
            line(&Record::Charge {
                charge: Box::new(first.clone()),
                event: Some(Box::new(delivered.clone())),
            }),
            line(&Record::Charge {
                charge: Box::new(charge("b", 1)),
                event: Some(Box::new(pending.clone())),
            }),
            line(&Record::WebhookDone {
                event: delivered.id.clone(),
                delivered: true,
            }),
            line(&Record::Charge {
                charge: Box::new(charge("a", 2)),
                event: None,
            }),
            line(&Record::Refused {
                reference: "c".into(),
                attempts: 1,
            }),
        ]
        .join("\n");
        let replayed = replay(&text, Path::new("test"));
        assert_eq!(replayed.charges.len(), 2);
        assert_eq!(replayed.charges["a"].attempts, 2);
        assert_eq!(replayed.refused.get("c"), Some(&1));
        let undelivered: Vec<_> = replayed.undelivered.iter().map(|e| &e.id).collect();
        assert_eq!(undelivered, [&pending.id]);
    }

    #[test]
    fn a_line_cut_short_is_skipped() {
        let whole = line(&Record::Charge {
            charge: Box::new(charge("a", 1)),
            event: None,
        });
        let text = format!("{whole}\n{}\n", &whole[..whole.len() / 2]);
        let replayed = replay(&text, Path::new("test"));
        assert_eq!(replayed.charges.len(), 1);
    }

    #[tokio::test]
    async fn appended_records_are_read_back() {
        let path = std::env::temp_dir().join(format!("psp-journal-{}.jsonl", uuid::Uuid::new_v4()));
        let (mut journal, replayed) = Journal::open(&path).await.unwrap();
        assert!(replayed.charges.is_empty());
        let written = charge("a", 1);
        journal
            .append(&Record::Charge {
                charge: Box::new(written.clone()),
                event: None,
            })
            .await
            .unwrap();
        drop(journal);
        let (_, replayed) = Journal::open(&path).await.unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(replayed.charges["a"], written);
    }
}
