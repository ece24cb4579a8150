//! The audit log's hash chain: tamper evidence kept beside the seed's `audit_logs`, never in it.
//!
//! Every row admin writes gets an entry `hash = sha256(previous hash || canonical row)`, appended
//! under a lock on the chain's head, in the transaction that writes the row. The rows that were
//! there before admin's first start (migrated legacy rows) are anchored once, as one block: the
//! first entry's hash covers the digest of each of them. Verifying recomputes everything from
//! the rows as they are now and names the first row changed, deleted, or inserted out of band.
//!
//! Someone who can write the database can also rewrite the whole chain; the head (seq and hash)
//! that `verify` reports is what to keep elsewhere to detect that (`mfe admin verify-audit
//! --expect-head`).

use std::collections::HashMap;

use futures_util::TryStreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;

use crate::store::audit_chain as store;

/// How many problems a verification lists (it counts them all).
const LISTED_PROBLEMS: usize = 100;

pub type Hash = [u8; 32];

/// The hash before the first entry.
const GENESIS: Hash = [0; 32];

fn entry_hash(previous: &[u8], canonical: &str) -> Hash {
    let mut h = Sha256::new();
    h.update(previous);
    h.update(canonical.as_bytes());
    h.finalize().into()
}

fn anchor_hash(previous: &[u8], block: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(previous);
    h.update(b"anchor");
    h.update(block);
    h.finalize().into()
}

fn row_digest(canonical: &str) -> Hash {
    Sha256::digest(canonical.as_bytes()).into()
}

/// The digest of the anchored block: sha256 over every anchored row's digest, in position order.
#[derive(Default)]
struct Block(Sha256);

impl Block {
    fn add(&mut self, digest: &[u8]) {
        self.0.update(digest);
    }

    fn finish(self) -> Hash {
        self.0.finalize().into()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("the audit chain has no head: admin has not anchored the log, or the head was deleted")]
    NoHead,
    #[error(
        "the audit chain is empty although admin has audited {0} events: it was deleted. \
         Check the log (mfe admin verify-audit), then anchor it again explicitly (mfe admin anchor-audit)"
    )]
    Wiped(i64),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Which rows to anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchoring {
    /// At admin's start: every row already there, once, before admin audited anything.
    FirstStart,
    /// An operator's explicit choice (`mfe admin anchor-audit`): the rows neither chained nor
    /// anchored, as a new block at the end of the chain.
    Unchained,
}

/// Anchors rows as one block (see [`Anchoring`]); returns how many, `None` when there was
/// nothing to do (already anchored at a first start, or no unchained row).
pub async fn anchor(pool: &PgPool, how: Anchoring) -> Result<Option<u64>, ChainError> {
    let mut tx = pool.begin().await?;
    // Replicas starting together: one anchors, the others wait here and find the head.
    store::lock_head(&mut tx).await?;
    let head = store::head(&mut tx).await?;
    let entries = store::entry_count(&mut tx).await?;
    let (seq, previous) = match (how, head) {
        (Anchoring::FirstStart, Some(_)) => return Ok(None),
        (Anchoring::FirstStart, None) if entries > 0 => return Ok(None),
        (Anchoring::FirstStart, None) => {
            // An empty chain beside an inbox that holds events means the chain was deleted:
            // anchoring now would bless whatever was changed meanwhile.
            let audited = store::audited_events(&mut tx).await?;
            if audited > 0 {
                return Err(ChainError::Wiped(audited));
            }
            (1, GENESIS.to_vec())
        }
        (Anchoring::Unchained, Some((seq, hash))) => (seq + 1, hash),
        (Anchoring::Unchained, None) if entries > 0 => return Err(ChainError::NoHead),
        (Anchoring::Unchained, None) => (1, GENESIS.to_vec()),
    };
    let anchored = store::anchor_unchained(&mut tx, seq).await?;
    if how == Anchoring::Unchained && anchored == 0 {
        return Ok(None);
    }
    let mut block = Block::default();
    {
        let mut digests = store::anchor_digests(&mut tx, seq);
        while let Some(digest) = digests.try_next().await? {
            block.add(&digest);
        }
    }
    let hash = anchor_hash(&previous, &block.finish());
    store::insert_anchor_entry(&mut tx, seq, anchored, &hash).await?;
    store::set_head(&mut tx, seq, &hash).await?;
    tx.commit().await?;
    Ok(Some(anchored))
}

/// After a migration's switch (cutover, rollback) brought audit rows into this database: when it
/// keeps a chain, they are anchored as a new block at its end (as [`Anchoring::Unchained`]);
/// `None` when there was nothing to anchor or no chain to anchor them to (a database without a
/// chain gets the other side's, or admin anchors every row at its first start).
pub async fn anchor_switched(pool: &PgPool) -> Result<Option<u64>, ChainError> {
    if !store::kept(pool).await? {
        return Ok(None);
    }
    anchor(pool, Anchoring::Unchained).await
}

/// The newest entry's position; `None` before the log was anchored.
pub async fn head_seq(pool: &PgPool) -> Result<Option<i64>, ChainError> {
    Ok(store::head_seq(pool).await?)
}

/// Chains the row `audit_id`, just written in `tx`: locks the head until `tx` ends, so entries
/// follow each other in commit order. Returns the entry's position.
pub async fn append(tx: &mut PgConnection, audit_id: &str) -> Result<i64, ChainError> {
    let (seq, previous) = store::head_for_update(tx)
        .await?
        .ok_or(ChainError::NoHead)?;
    let canonical = store::canonical_row(tx, audit_id).await?;
    let hash = entry_hash(&previous, &canonical);
    let seq = seq + 1;
    store::insert_row_entry(tx, seq, audit_id, &hash).await?;
    store::set_head(tx, seq, &hash).await?;
    Ok(seq)
}

/// The hash (hex) of chain entry `seq`, if there is one: `--expect-head` checks that a head
/// recorded earlier is still in the chain.
pub async fn hash_at(pool: &PgPool, seq: i64) -> Result<Option<String>, ChainError> {
    Ok(store::hash_at(pool, seq).await?.map(hex::encode))
}

/// What a verification found.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// True when nothing was changed, deleted or inserted out of band.
    pub valid: bool,
    /// Rows chained one by one since admin's first start.
    pub chained_rows: u64,
    /// Rows anchored in blocks: at the first start (migrated legacy rows), and by operators.
    pub anchored_rows: u64,
    /// The chain's newest entry: keep it elsewhere to detect a rewrite of the whole chain.
    pub head: Option<Head>,
    /// How many problems were found in all.
    pub problem_count: u64,
    /// The first problems, in chain order (anchored rows, chained rows), then rows inserted out
    /// of band, oldest first; at most 100.
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Head {
    pub seq: i64,
    /// Hex.
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    pub kind: ProblemKind,
    /// The audit row concerned, when it is known.
    pub audit_log_id: Option<String>,
    /// The chain entry concerned (absent for a row inserted out of band).
    pub seq: Option<i64>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The row (or its chain entry) no longer hashes to what was chained.
    Changed,
    /// The row, or its chain entry, is gone.
    Deleted,
    /// A row nobody chained.
    Inserted,
    /// The chain itself does not hold together: head, anchor block or sequence altered.
    ChainBroken,
}

#[derive(Default)]
struct Findings {
    count: u64,
    listed: Vec<Problem>,
}

impl Findings {
    fn add(
        &mut self,
        kind: ProblemKind,
        audit_log_id: Option<String>,
        seq: Option<i64>,
        message: String,
    ) {
        self.count += 1;
        if self.listed.len() < LISTED_PROBLEMS {
            self.listed.push(Problem {
                kind,
                audit_log_id,
                seq,
                message,
            });
        }
    }
}

/// Recomputes the chain from the rows as they are, in one consistent snapshot, reading a row at a
/// time (bounded memory whatever the log's size).
pub async fn verify(pool: &PgPool) -> Result<Verification, ChainError> {
    let mut tx = pool.begin().await?;
    crate::store::snapshot(&mut tx).await?;
    let head = store::head(&mut tx).await?;
    let mut found = Findings::default();
    let (anchored_rows, blocks) = verify_anchors(&mut tx, &mut found).await?;
    let (chained_rows, last) = verify_entries(&mut tx, &blocks, &mut found).await?;
    check_head(head.as_ref(), last.as_ref(), &mut found);
    verify_unchained(&mut tx, &mut found).await?;
    tx.rollback().await?;
    Ok(Verification {
        valid: found.count == 0,
        chained_rows,
        anchored_rows,
        head: head.map(|(seq, hash)| Head {
            seq,
            hash: hex::encode(hash),
        }),
        problem_count: found.count,
        problems: found.listed,
    })
}

/// Checks every entry in seq order against the one before it and the row it chains (an anchor
/// against its block); returns how many rows were chained and the last entry (seq, hash).
async fn verify_entries(
    tx: &mut PgConnection,
    blocks: &HashMap<i64, Hash>,
    found: &mut Findings,
) -> Result<(u64, Option<(i64, Vec<u8>)>), ChainError> {
    let mut chained_rows = 0u64;
    let mut previous: Option<(i64, Vec<u8>)> = None;
    {
        let mut entries = store::entries(tx);
        while let Some((seq, kind, audit_id, stored, canonical)) = entries.try_next().await? {
            let expected_seq = previous.as_ref().map_or(1, |(s, _)| s + 1);
            if seq != expected_seq {
                found.add(
                    ProblemKind::Deleted,
                    None,
                    Some(expected_seq),
                    format!("chain entries {expected_seq} to {} are missing", seq - 1),
                );
            }
            let prev_hash = previous
                .as_ref()
                .map_or(GENESIS.to_vec(), |(_, h)| h.clone());
            if kind == "anchor" {
                let block = blocks
                    .get(&seq)
                    .copied()
                    .unwrap_or_else(|| Block::default().finish());
                if anchor_hash(&prev_hash, &block).as_slice() != stored.as_slice() {
                    found.add(
                        ProblemKind::ChainBroken,
                        None,
                        Some(seq),
                        "an anchor does not match the rows it anchored (rows added to or removed \
                         from its block)"
                            .into(),
                    );
                }
            } else {
                chained_rows += 1;
                match canonical {
                    None => found.add(
                        ProblemKind::Deleted,
                        audit_id.clone(),
                        Some(seq),
                        "the audit row was deleted".into(),
                    ),
                    Some(canonical) => {
                        if entry_hash(&prev_hash, &canonical).as_slice() != stored.as_slice() {
                            found.add(
                                ProblemKind::Changed,
                                audit_id.clone(),
                                Some(seq),
                                "the audit row (or its chain entry) was changed".into(),
                            );
                        }
                    }
                }
            }
            // The next entry is checked against the hash stored here, so one change is reported
            // once, not as a break of every later entry.
            previous = Some((seq, stored));
        }
    }
    Ok((chained_rows, previous))
}

/// The head must name the last entry.
fn check_head(head: Option<&(i64, Vec<u8>)>, last: Option<&(i64, Vec<u8>)>, found: &mut Findings) {
    match (head, last) {
        (None, None) => {}
        (Some((seq, hash)), Some((last_seq, last_hash))) => {
            if seq != last_seq || hash != last_hash {
                found.add(
                    ProblemKind::ChainBroken,
                    None,
                    Some(*last_seq),
                    format!("the chain ends at entry {last_seq} but its head says {seq}: the newest entries were cut off or the head was altered"),
                );
            }
        }
        (None, Some(_)) => found.add(
            ProblemKind::ChainBroken,
            None,
            None,
            "the chain's head was deleted".into(),
        ),
        (Some((seq, _)), None) => found.add(
            ProblemKind::Deleted,
            None,
            Some(1),
            format!("every chain entry up to {seq} was deleted"),
        ),
    }
}

/// Checks each anchored row against its digest; returns how many there are and, per anchor
/// entry, the digest of its block of stored digests (which the entry's hash must cover).
async fn verify_anchors(
    tx: &mut PgConnection,
    found: &mut Findings,
) -> Result<(u64, HashMap<i64, Hash>), ChainError> {
    let mut blocks: HashMap<i64, Hash> = HashMap::new();
    let mut current: Option<(i64, Block)> = None;
    let mut count = 0u64;
    let mut rows = store::anchored(tx);
    while let Some((audit_id, anchor_seq, digest, canonical)) = rows.try_next().await? {
        count += 1;
        if current.as_ref().is_none_or(|(seq, _)| *seq != anchor_seq) {
            if let Some((seq, block)) = current.take() {
                blocks.insert(seq, block.finish());
            }
            current = Some((anchor_seq, Block::default()));
        }
        if let Some((_, block)) = current.as_mut() {
            block.add(&digest);
        }
        match canonical {
            None => found.add(
                ProblemKind::Deleted,
                Some(audit_id),
                Some(anchor_seq),
                "the anchored row was deleted".into(),
            ),
            Some(canonical) if row_digest(&canonical).as_slice() != digest.as_slice() => found.add(
                ProblemKind::Changed,
                Some(audit_id),
                Some(anchor_seq),
                "the anchored row was changed".into(),
            ),
            Some(_) => {}
        }
    }
    if let Some((seq, block)) = current {
        blocks.insert(seq, block.finish());
    }
    Ok((count, blocks))
}

/// Rows neither anchored nor chained: written into `audit_logs` by someone other than admin.
async fn verify_unchained(tx: &mut PgConnection, found: &mut Findings) -> Result<(), ChainError> {
    let (count, ids) = store::unchained(tx, LISTED_PROBLEMS).await?;
    if count == 0 {
        return Ok(());
    }
    let listed = ids.len() as u64;
    for id in ids {
        found.add(
            ProblemKind::Inserted,
            Some(id),
            None,
            "the audit row was inserted out of band".into(),
        );
    }
    // Counted, not listed: the list is full.
    found.count += count as u64 - listed;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hash_depends_on_the_one_before() {
        let a = entry_hash(&GENESIS, "[\"x\"]");
        let b = entry_hash(&a, "[\"y\"]");
        assert_ne!(entry_hash(&GENESIS, "[\"y\"]"), b);
        assert_eq!(entry_hash(&a, "[\"y\"]"), b);
    }

    #[test]
    fn the_anchor_covers_every_digest_in_order() {
        let (d1, d2) = (row_digest("1"), row_digest("2"));
        let mut forward = Block::default();
        forward.add(&d1);
        forward.add(&d2);
        let mut backward = Block::default();
        backward.add(&d2);
        backward.add(&d1);
        assert_ne!(
            anchor_hash(&GENESIS, &forward.finish()),
            anchor_hash(&GENESIS, &backward.finish())
        );
    }
}
