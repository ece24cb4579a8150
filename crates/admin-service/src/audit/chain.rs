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

macro_rules! canonical {
    () => {
        "jsonb_build_array(a.id, coalesce(a.user_id, \
         (SELECT r.user_id FROM admin.audit_cleared_refs r WHERE r.audit_id = a.id)), \
         a.action, a.resource_type, a.resource_id, \
         CASE WHEN a.details IS NULL THEN NULL ELSE jsonb_build_array(a.details) END, \
         a.ip_address, a.user_agent, CASE WHEN isfinite(a.created_at) \
         THEN to_char(a.created_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.MS BC') ELSE a.created_at::text END)::text"
    };
}
/// The canonical form of the `audit_logs` row aliased `a`: a JSON array of its columns in
/// PostgreSQL's own text form (jsonb output is normalised, the time has a fixed format), so the
/// writer and every later verifier see the same bytes. `details` is wrapped so that SQL NULL and
/// JSON `null` differ. A user id the database's own `ON DELETE SET NULL` cleared is read from
/// `admin.audit_cleared_refs` (migration 0003): the row is what admin chained.
pub const CANONICAL: &str = canonical!();

/// [`CANONICAL`] of a row an outer join may not have found: NULL then.
const JOINED: &str = concat!(
    "CASE WHEN a.id IS NULL THEN NULL ELSE ",
    canonical!(),
    " END"
);

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

/// The chain's newest entry: (seq, hash).
async fn read_head(conn: &mut PgConnection) -> Result<Option<(i64, Vec<u8>)>, ChainError> {
    Ok(
        sqlx::query_as("SELECT seq, hash FROM admin.audit_chain_head")
            .fetch_optional(conn)
            .await?,
    )
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
    sqlx::query("LOCK TABLE admin.audit_chain_head IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let head = read_head(&mut tx).await?;
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM admin.audit_chain")
        .fetch_one(&mut *tx)
        .await?;
    let (seq, previous) = match (how, head) {
        (Anchoring::FirstStart, Some(_)) => return Ok(None),
        (Anchoring::FirstStart, None) if entries > 0 => return Ok(None),
        (Anchoring::FirstStart, None) => {
            // An empty chain beside an inbox that holds events means the chain was deleted:
            // anchoring now would bless whatever was changed meanwhile.
            let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM admin.processed_events")
                .fetch_one(&mut *tx)
                .await?;
            if audited > 0 {
                return Err(ChainError::Wiped(audited));
            }
            (1, GENESIS.to_vec())
        }
        (Anchoring::Unchained, Some((seq, hash))) => (seq + 1, hash),
        (Anchoring::Unchained, None) if entries > 0 => return Err(ChainError::NoHead),
        (Anchoring::Unchained, None) => (1, GENESIS.to_vec()),
    };
    let anchored = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO admin.audit_anchor (audit_id, anchor_seq, position, digest) \
         SELECT a.id, $1, row_number() OVER (ORDER BY a.created_at, a.id), \
                sha256(convert_to({CANONICAL}, 'UTF8')) \
         FROM audit_logs a \
         WHERE NOT EXISTS (SELECT 1 FROM admin.audit_chain c WHERE c.audit_id = a.id) \
           AND NOT EXISTS (SELECT 1 FROM admin.audit_anchor x WHERE x.audit_id = a.id)"
    )))
    .bind(seq)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if how == Anchoring::Unchained && anchored == 0 {
        return Ok(None);
    }
    let mut block = Block::default();
    {
        let mut digests = sqlx::query_scalar::<_, Vec<u8>>(
            "SELECT digest FROM admin.audit_anchor WHERE anchor_seq = $1 ORDER BY position",
        )
        .bind(seq)
        .fetch(&mut *tx);
        while let Some(digest) = digests.try_next().await? {
            block.add(&digest);
        }
    }
    let hash = anchor_hash(&previous, &block.finish());
    sqlx::query(
        "INSERT INTO admin.audit_chain (seq, kind, anchored_rows, hash) VALUES ($1, 'anchor', $2, $3)",
    )
    .bind(seq)
    .bind(anchored as i64)
    .bind(hash.as_slice())
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO admin.audit_chain_head (seq, hash) VALUES ($1, $2) \
         ON CONFLICT (singleton) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash",
    )
    .bind(seq)
    .bind(hash.as_slice())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(anchored))
}

/// Chains the row `audit_id`, just written in `tx`: locks the head until `tx` ends, so entries
/// follow each other in commit order. Returns the entry's position.
pub async fn append(tx: &mut PgConnection, audit_id: &str) -> Result<i64, ChainError> {
    let (seq, previous): (i64, Vec<u8>) =
        sqlx::query_as("SELECT seq, hash FROM admin.audit_chain_head FOR UPDATE")
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(ChainError::NoHead)?;
    let canonical: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT {CANONICAL} FROM audit_logs a WHERE a.id = $1"
    )))
    .bind(audit_id)
    .fetch_one(&mut *tx)
    .await?;
    let hash = entry_hash(&previous, &canonical);
    let seq = seq + 1;
    sqlx::query(
        "INSERT INTO admin.audit_chain (seq, kind, audit_id, hash) VALUES ($1, 'row', $2, $3)",
    )
    .bind(seq)
    .bind(audit_id)
    .bind(hash.as_slice())
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE admin.audit_chain_head SET seq = $1, hash = $2")
        .bind(seq)
        .bind(hash.as_slice())
        .execute(&mut *tx)
        .await?;
    Ok(seq)
}

/// The hash (hex) of chain entry `seq`, if there is one: `--expect-head` checks that a head
/// recorded earlier is still in the chain.
pub async fn hash_at(pool: &PgPool, seq: i64) -> Result<Option<String>, ChainError> {
    let hash: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT hash FROM admin.audit_chain WHERE seq = $1")
            .bind(seq)
            .fetch_optional(pool)
            .await?;
    Ok(hash.map(hex::encode))
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
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let head = read_head(&mut tx).await?;
    let mut found = Findings::default();
    let (anchored_rows, blocks) = verify_anchors(&mut tx, &mut found).await?;

    let mut chained_rows = 0u64;
    let mut previous: Option<(i64, Vec<u8>)> = None;
    {
        type Entry = (i64, String, Option<String>, Vec<u8>, Option<String>);
        let mut entries = sqlx::query_as::<_, Entry>(sqlx::AssertSqlSafe(format!(
            "SELECT c.seq, c.kind, c.audit_id, c.hash, {JOINED} \
             FROM admin.audit_chain c LEFT JOIN audit_logs a ON a.id = c.audit_id \
             ORDER BY c.seq"
        )))
        .fetch(&mut *tx);
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
    match (&head, &previous) {
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

/// Checks each anchored row against its digest; returns how many there are and, per anchor
/// entry, the digest of its block of stored digests (which the entry's hash must cover).
async fn verify_anchors(
    tx: &mut PgConnection,
    found: &mut Findings,
) -> Result<(u64, HashMap<i64, Hash>), ChainError> {
    let mut blocks: HashMap<i64, Hash> = HashMap::new();
    let mut current: Option<(i64, Block)> = None;
    let mut count = 0u64;
    let mut rows =
        sqlx::query_as::<_, (String, i64, Vec<u8>, Option<String>)>(sqlx::AssertSqlSafe(format!(
            "SELECT x.audit_id, x.anchor_seq, x.digest, {JOINED} \
             FROM admin.audit_anchor x LEFT JOIN audit_logs a ON a.id = x.audit_id \
             ORDER BY x.anchor_seq, x.position"
        )))
        .fetch(&mut *tx);
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
    const UNCHAINED: &str = "FROM audit_logs a \
         WHERE NOT EXISTS (SELECT 1 FROM admin.audit_chain c WHERE c.audit_id = a.id) \
           AND NOT EXISTS (SELECT 1 FROM admin.audit_anchor x WHERE x.audit_id = a.id)";
    let count: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) {UNCHAINED}")))
            .fetch_one(&mut *tx)
            .await?;
    if count == 0 {
        return Ok(());
    }
    let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT a.id {UNCHAINED} ORDER BY a.created_at, a.id LIMIT {LISTED_PROBLEMS}"
    )))
    .fetch_all(&mut *tx)
    .await?;
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
