//! The audit log's hash chain beside `audit_logs` (admin migration 0002): `admin.audit_chain`
//! (one entry per chained row or anchored block), `admin.audit_anchor` (each anchored row's
//! digest), `admin.audit_chain_head` (the newest entry). The hashing is in
//! [`crate::audit::chain`]; these are its statements.

use futures_util::stream::BoxStream;
use sqlx::{PgConnection, PgPool};

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

/// Rows neither anchored nor chained.
const UNCHAINED: &str = "FROM audit_logs a \
     WHERE NOT EXISTS (SELECT 1 FROM admin.audit_chain c WHERE c.audit_id = a.id) \
       AND NOT EXISTS (SELECT 1 FROM admin.audit_anchor x WHERE x.audit_id = a.id)";

/// A chain entry with the canonical form of the row it chains (`None`: the row is gone, or the
/// entry is an anchor): (seq, kind, audit id, stored hash, canonical row).
pub type Entry = (i64, String, Option<String>, Vec<u8>, Option<String>);

/// An anchored row: (audit id, its anchor's seq, stored digest, canonical row if still there).
pub type Anchored = (String, i64, Vec<u8>, Option<String>);

/// Whether this database keeps a chain: its tables exist and hold an entry.
pub async fn kept(pool: &PgPool) -> sqlx::Result<bool> {
    let tables: bool = sqlx::query_scalar(
        "SELECT to_regclass('admin.audit_chain_head') IS NOT NULL \
           AND to_regclass('admin.audit_chain') IS NOT NULL",
    )
    .fetch_one(pool)
    .await?;
    if !tables {
        return Ok(false);
    }
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM admin.audit_chain)")
        .fetch_one(pool)
        .await
}

/// Holds off every other anchoring and appending until `tx` ends (readers go on).
pub async fn lock_head(tx: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("LOCK TABLE admin.audit_chain_head IN SHARE ROW EXCLUSIVE MODE")
        .execute(tx)
        .await?;
    Ok(())
}

/// The chain's newest entry: (seq, hash).
pub async fn head(conn: &mut PgConnection) -> sqlx::Result<Option<(i64, Vec<u8>)>> {
    sqlx::query_as("SELECT seq, hash FROM admin.audit_chain_head")
        .fetch_optional(conn)
        .await
}

/// The newest entry's position, without its hash (readiness, metrics).
pub async fn head_seq(pool: &PgPool) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar("SELECT seq FROM admin.audit_chain_head")
        .fetch_optional(pool)
        .await
}

/// [`head`], locked until `tx` ends: entries follow each other in commit order.
pub async fn head_for_update(tx: &mut PgConnection) -> sqlx::Result<Option<(i64, Vec<u8>)>> {
    sqlx::query_as("SELECT seq, hash FROM admin.audit_chain_head FOR UPDATE")
        .fetch_optional(tx)
        .await
}

/// Makes `(seq, hash)` the head.
pub async fn set_head(tx: &mut PgConnection, seq: i64, hash: &[u8]) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO admin.audit_chain_head (seq, hash) VALUES ($1, $2) \
         ON CONFLICT (singleton) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash",
    )
    .bind(seq)
    .bind(hash)
    .execute(tx)
    .await?;
    Ok(())
}

pub async fn entry_count(tx: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM admin.audit_chain")
        .fetch_one(tx)
        .await
}

/// Events admin has applied (its inbox): a log with an empty chain beside them was wiped.
pub async fn audited_events(tx: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM admin.processed_events")
        .fetch_one(tx)
        .await
}

/// Records every row neither chained nor anchored as a row of the anchor `seq`, in
/// (created_at, id) order with its digest; returns how many.
pub async fn anchor_unchained(tx: &mut PgConnection, seq: i64) -> sqlx::Result<u64> {
    Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO admin.audit_anchor (audit_id, anchor_seq, position, digest) \
         SELECT a.id, $1, row_number() OVER (ORDER BY a.created_at, a.id), \
                sha256(convert_to({CANONICAL}, 'UTF8')) \
         {UNCHAINED}"
    )))
    .bind(seq)
    .execute(tx)
    .await?
    .rows_affected())
}

/// The digests of the anchor `seq`'s rows, in position order.
pub fn anchor_digests(tx: &mut PgConnection, seq: i64) -> BoxStream<'_, sqlx::Result<Vec<u8>>> {
    sqlx::query_scalar(
        "SELECT digest FROM admin.audit_anchor WHERE anchor_seq = $1 ORDER BY position",
    )
    .bind(seq)
    .fetch(tx)
}

pub async fn insert_anchor_entry(
    tx: &mut PgConnection,
    seq: i64,
    rows: u64,
    hash: &[u8],
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO admin.audit_chain (seq, kind, anchored_rows, hash) VALUES ($1, 'anchor', $2, $3)",
    )
    .bind(seq)
    .bind(rows as i64)
    .bind(hash)
    .execute(tx)
    .await?;
    Ok(())
}

/// The canonical form of the row `audit_id`.
pub async fn canonical_row(tx: &mut PgConnection, audit_id: &str) -> sqlx::Result<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT {CANONICAL} FROM audit_logs a WHERE a.id = $1"
    )))
    .bind(audit_id)
    .fetch_one(tx)
    .await
}

pub async fn insert_row_entry(
    tx: &mut PgConnection,
    seq: i64,
    audit_id: &str,
    hash: &[u8],
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO admin.audit_chain (seq, kind, audit_id, hash) VALUES ($1, 'row', $2, $3)",
    )
    .bind(seq)
    .bind(audit_id)
    .bind(hash)
    .execute(tx)
    .await?;
    Ok(())
}

/// The hash of entry `seq`.
pub async fn hash_at(pool: &PgPool, seq: i64) -> sqlx::Result<Option<Vec<u8>>> {
    sqlx::query_scalar("SELECT hash FROM admin.audit_chain WHERE seq = $1")
        .bind(seq)
        .fetch_optional(pool)
        .await
}

/// Every entry in seq order, with the row it chains.
pub fn entries(tx: &mut PgConnection) -> BoxStream<'_, sqlx::Result<Entry>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT c.seq, c.kind, c.audit_id, c.hash, {JOINED} \
         FROM admin.audit_chain c LEFT JOIN audit_logs a ON a.id = c.audit_id \
         ORDER BY c.seq"
    )))
    .fetch(tx)
}

/// Every anchored row in (anchor, position) order, with the row as it is now.
pub fn anchored(tx: &mut PgConnection) -> BoxStream<'_, sqlx::Result<Anchored>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT x.audit_id, x.anchor_seq, x.digest, {JOINED} \
         FROM admin.audit_anchor x LEFT JOIN audit_logs a ON a.id = x.audit_id \
         ORDER BY x.anchor_seq, x.position"
    )))
    .fetch(tx)
}

/// How many rows nobody chained, and the ids of the first `limit`, oldest first.
pub async fn unchained(tx: &mut PgConnection, limit: usize) -> sqlx::Result<(i64, Vec<String>)> {
    let count: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) {UNCHAINED}")))
            .fetch_one(&mut *tx)
            .await?;
    if count == 0 {
        return Ok((0, Vec::new()));
    }
    let ids = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT a.id {UNCHAINED} ORDER BY a.created_at, a.id LIMIT {limit}"
    )))
    .fetch_all(tx)
    .await?;
    Ok((count, ids))
}
