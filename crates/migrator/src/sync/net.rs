//! The net effect of a run of row changes on one service database: what each key ends as once
//! they all happened, so a chunk of thousands of legacy transactions becomes a few set-based
//! statements per table instead of a statement per change.
//!
//! Folding follows what a key can go through in a consistent stream: inserted, updated any number
//! of times, deleted, inserted again. The result per key is a whole row to upsert, the columns an
//! update sets (a TOASTed value no change of the run touched stays unset, never NULL), or a
//! delete. A sequence no consistent stream holds (an update of a deleted row, a second insert)
//! makes the run unfoldable: it is then applied change by change, in order.
//!
//! No value is copied: the fold keeps, per key, the positions of the changes that make up its
//! last state, and the statements read the values from the changes themselves.

use std::collections::HashMap;

use crate::cdc::pgoutput::{Lsn, Value};
use schema::contract::Table;

/// A change of one row, its tuple in contract column order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowChange {
    Insert {
        values: Vec<Value>,
    },
    Update {
        /// The old key, when the update changed it.
        old_key: Option<String>,
        values: Vec<Value>,
    },
    Delete {
        key: String,
    },
}

impl RowChange {
    /// The values' size, for bounding a chunk by bytes.
    pub fn bytes(&self) -> usize {
        match self {
            RowChange::Insert { values } | RowChange::Update { values, .. } => values
                .iter()
                .map(|v| match v {
                    Value::Text(s) => s.len() + 8,
                    _ => 8,
                })
                .sum(),
            RowChange::Delete { key } => key.len() + 8,
        }
    }

    /// The update changed the row's key: it goes alone, in order.
    pub fn rekeys(&self, key_index: usize) -> bool {
        match self {
            RowChange::Update {
                old_key: Some(old),
                values,
            } => !matches!(values.get(key_index), Some(Value::Text(new)) if new == old),
            _ => false,
        }
    }
}

/// A change with where it comes from.
#[derive(Debug, Clone)]
pub struct Pending {
    pub table: &'static Table,
    /// The commit position of its legacy transaction.
    pub commit: Lsn,
    pub change: RowChange,
}

impl Pending {
    /// The key the change names (the new one for an update).
    pub fn key(&self) -> Option<&str> {
        match &self.change {
            RowChange::Insert { values } | RowChange::Update { values, .. } => {
                match values.get(self.table.key_index()) {
                    Some(Value::Text(k)) => Some(k),
                    _ => None,
                }
            }
            RowChange::Delete { key } => Some(key),
        }
    }
}

/// What a key ends as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    /// A whole row: inserted (again) in the run.
    Upsert,
    /// Updated only: the row was there before the run.
    Update,
    Delete,
}

/// One key's net effect.
#[derive(Debug, Clone)]
pub struct KeyNet {
    pub fold: Fold,
    /// First seen as an insert: absent before the run (the stream is consistent).
    pub fresh: bool,
    /// Positions (in the run) of the changes since the key's last insert or delete, in order.
    pub since: Vec<usize>,
}

/// The net effect of a run on one table.
#[derive(Debug, Default)]
pub struct TableNet<'a> {
    /// Keys in the order they were first seen (statements are then deterministic).
    pub keys: Vec<&'a str>,
    pub rows: HashMap<&'a str, KeyNet>,
}

/// Why a run cannot be folded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfoldable(pub String);

/// Folds `run` per table (by contract table name).
pub fn fold(run: &[Pending]) -> Result<HashMap<&'static str, TableNet<'_>>, Unfoldable> {
    let mut tables: HashMap<&'static str, TableNet<'_>> = HashMap::new();
    for (i, p) in run.iter().enumerate() {
        if p.change.rekeys(p.table.key_index()) {
            return Err(Unfoldable(format!("a key of {} changed", p.table.name)));
        }
        let key = p
            .key()
            .ok_or_else(|| Unfoldable(format!("a change of {} carries no key", p.table.name)))?;
        let net = tables.entry(p.table.name).or_default();
        match net.rows.get_mut(key) {
            None => {
                let (fold, since) = match p.change {
                    RowChange::Insert { .. } => (Fold::Upsert, vec![i]),
                    RowChange::Update { .. } => (Fold::Update, vec![i]),
                    RowChange::Delete { .. } => (Fold::Delete, Vec::new()),
                };
                net.keys.push(key);
                let fresh = fold == Fold::Upsert;
                net.rows.insert(key, KeyNet { fold, fresh, since });
            }
            Some(k) => match (k.fold, &p.change) {
                (Fold::Upsert | Fold::Update, RowChange::Update { .. }) => k.since.push(i),
                (_, RowChange::Delete { .. }) => {
                    k.fold = Fold::Delete;
                    k.fresh = false;
                    k.since.clear();
                }
                (Fold::Delete, RowChange::Insert { .. }) => {
                    k.fold = Fold::Upsert;
                    k.since = vec![i];
                }
                (fold, change) => {
                    return Err(Unfoldable(format!(
                        "{} {key}: {} after {}",
                        p.table.name,
                        match change {
                            RowChange::Insert { .. } => "an insert",
                            RowChange::Update { .. } => "an update",
                            RowChange::Delete { .. } => "a delete",
                        },
                        match fold {
                            Fold::Upsert => "an insert",
                            Fold::Update => "an update",
                            Fold::Delete => "a delete",
                        }
                    )));
                }
            },
        }
    }
    Ok(tables)
}

/// The last value the changes at `since` give column `column` (`Unchanged` when none sets it).
pub fn value<'a>(run: &'a [Pending], since: &[usize], column: usize) -> &'a Value {
    for &i in since.iter().rev() {
        let values = match &run[i].change {
            RowChange::Insert { values } | RowChange::Update { values, .. } => values,
            RowChange::Delete { .. } => continue,
        };
        match values.get(column) {
            Some(Value::Unchanged) | None => continue,
            Some(v) => return v,
        }
    }
    &Value::Unchanged
}

/// The columns an update sets, as a bit per contract column.
pub fn set_mask(run: &[Pending], since: &[usize], columns: usize) -> u64 {
    (0..columns.min(64))
        .filter(|&c| *value(run, since, c) != Value::Unchanged)
        .fold(0u64, |m, c| m | 1 << c)
}

/// Every key the run changed with the last commit that changed it (an update of a key changes
/// the old and the new one): what verify and cutover check again.
pub fn touched(run: &[Pending]) -> HashMap<&'static str, HashMap<&str, Lsn>> {
    let mut out: HashMap<&'static str, HashMap<&str, Lsn>> = HashMap::new();
    for p in run {
        let keys = out.entry(p.table.name).or_default();
        if let Some(k) = p.key() {
            keys.insert(k, p.commit);
        }
        if let RowChange::Update {
            old_key: Some(old), ..
        } = &p.change
        {
            keys.insert(old, p.commit);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::contract::table;

    fn cfg() -> &'static Table {
        table("system_config").unwrap()
    }

    // system_config: key, value, description, updated_at, updated_by.
    fn row(key: &str, value: &str, description: Value) -> Vec<Value> {
        vec![
            Value::Text(key.into()),
            Value::Text(value.into()),
            description,
            Value::Text("2026-01-01 00:00:00".into()),
            Value::Null,
        ]
    }

    fn p(commit: u64, change: RowChange) -> Pending {
        Pending {
            table: cfg(),
            commit: Lsn(commit),
            change,
        }
    }

    #[test]
    fn an_insert_then_updates_is_one_row_with_the_last_values_and_kept_toast() {
        let run = vec![
            p(
                1,
                RowChange::Insert {
                    values: row("a", "1", Value::Text("long".into())),
                },
            ),
            p(
                2,
                RowChange::Update {
                    old_key: None,
                    values: row("a", "2", Value::Unchanged),
                },
            ),
        ];
        let nets = fold(&run).unwrap();
        let k = &nets["system_config"].rows["a"];
        assert_eq!(k.fold, Fold::Upsert);
        assert!(k.fresh);
        assert_eq!(value(&run, &k.since, 1), &Value::Text("2".into()));
        assert_eq!(value(&run, &k.since, 2), &Value::Text("long".into()));
    }

    #[test]
    fn updates_only_set_what_some_update_carried() {
        let run = vec![
            p(
                1,
                RowChange::Update {
                    old_key: None,
                    values: row("a", "1", Value::Unchanged),
                },
            ),
            p(
                2,
                RowChange::Update {
                    old_key: None,
                    values: row("a", "2", Value::Unchanged),
                },
            ),
        ];
        let nets = fold(&run).unwrap();
        let k = &nets["system_config"].rows["a"];
        assert_eq!(k.fold, Fold::Update);
        assert_eq!(set_mask(&run, &k.since, 5), 0b11011);
        assert_eq!(value(&run, &k.since, 1), &Value::Text("2".into()));
    }

    #[test]
    fn delete_then_insert_is_a_whole_row_and_insert_then_delete_a_delete() {
        let run = vec![
            p(1, RowChange::Delete { key: "a".into() }),
            p(
                2,
                RowChange::Insert {
                    values: row("a", "new", Value::Null),
                },
            ),
            p(
                3,
                RowChange::Insert {
                    values: row("b", "x", Value::Null),
                },
            ),
            p(4, RowChange::Delete { key: "b".into() }),
        ];
        let nets = fold(&run).unwrap();
        let t = &nets["system_config"];
        assert_eq!(t.keys, vec!["a", "b"]);
        assert_eq!(t.rows["a"].fold, Fold::Upsert);
        assert!(!t.rows["a"].fresh, "it was there before the run");
        assert_eq!(
            value(&run, &t.rows["a"].since, 1),
            &Value::Text("new".into())
        );
        assert_eq!(t.rows["b"].fold, Fold::Delete);
        let touched = touched(&run);
        assert_eq!(touched["system_config"]["a"], Lsn(2));
        assert_eq!(touched["system_config"]["b"], Lsn(4));
    }

    #[test]
    fn what_no_consistent_stream_holds_is_not_folded() {
        for run in [
            vec![
                p(1, RowChange::Delete { key: "a".into() }),
                p(
                    2,
                    RowChange::Update {
                        old_key: None,
                        values: row("a", "1", Value::Null),
                    },
                ),
            ],
            vec![
                p(
                    1,
                    RowChange::Insert {
                        values: row("a", "1", Value::Null),
                    },
                ),
                p(
                    2,
                    RowChange::Insert {
                        values: row("a", "1", Value::Null),
                    },
                ),
            ],
        ] {
            assert!(fold(&run).is_err());
        }
    }

    #[test]
    fn a_key_update_is_never_folded() {
        let change = RowChange::Update {
            old_key: Some("old".into()),
            values: row("new", "1", Value::Null),
        };
        assert!(change.rekeys(0));
        assert!(fold(&[p(1, change)]).is_err());
        let same = RowChange::Update {
            old_key: Some("a".into()),
            values: row("a", "1", Value::Null),
        };
        assert!(!same.rekeys(0));
    }
}
