//! Row digests, computed inside PostgreSQL so that no table passes through this process: a count
//! and an order-independent checksum per bucket of keys, each row's md5 by key, a whole table's
//! portable checksum, and the row-by-row diff of the buckets that differ. `verify`, the archive's
//! manifest, the diff sync and the rollback's check all compare with these.

use std::collections::BTreeMap;

use futures::{Stream, TryStreamExt};
use serde::Serialize;
use sqlx::PgConnection;

use crate::engine::sql::ident;
use crate::error::Result;
use schema::contract::Table;

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Differences {
    /// Same key, other content.
    pub changed: Vec<String>,
    /// In the legacy database, not in the service database.
    pub missing: Vec<String>,
    /// In the service database, not in the legacy database.
    pub extra: Vec<String>,
    pub changed_count: u64,
    pub missing_count: u64,
    pub extra_count: u64,
}

impl Differences {
    pub fn is_empty(&self) -> bool {
        self.changed_count == 0 && self.missing_count == 0 && self.extra_count == 0
    }
}

/// How rows are hashed. Both are order-independent sums of 64-bit row hashes per bucket of keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hashing {
    /// PostgreSQL's own hash functions over the typed values (`hash_record_extended`, `hashtext`):
    /// several times faster, and equal on two servers of one major version (hash functions may
    /// change between majors). Enum values are hashed as their labels, since their OIDs differ
    /// between databases.
    Native,
    /// md5 of the row's text: equal on any two servers, slower.
    Portable,
}

/// The bucket of a key: 256 buckets, independent of collations.
pub(crate) fn bucket_expr(table: &Table, hashing: Hashing) -> String {
    match hashing {
        Hashing::Native => format!("(hashtext({}) & 255)", ident(table.key)),
        Hashing::Portable => format!(
            "('x' || substr(md5({}), 1, 2))::bit(8)::int",
            ident(table.key)
        ),
    }
}

/// A 64-bit hash of the whole row, columns in contract order.
pub(crate) fn row_hash_expr(table: &Table, hashing: Hashing) -> String {
    match hashing {
        Hashing::Native => {
            let columns: Vec<String> = table
                .columns
                .iter()
                .map(|c| {
                    let name = ident(c.name);
                    if c.data_type.starts_with('"') {
                        format!("{name}::text")
                    } else {
                        name
                    }
                })
                .collect();
            format!("hash_record_extended(ROW({}), 0)", columns.join(", "))
        }
        Hashing::Portable => {
            format!(
                "('x' || substr(md5(ROW({})::text), 1, 16))::bit(64)::bigint",
                table.column_list()
            )
        }
    }
}

/// Native hashing when both servers run the same major version (14 or later), portable otherwise.
pub(crate) async fn choose_hashing(a: &mut PgConnection, b: &mut PgConnection) -> Result<Hashing> {
    let major = "SELECT current_setting('server_version_num')::int / 10000";
    let va: i32 = sqlx::query_scalar(major).fetch_one(a).await?;
    let vb: i32 = sqlx::query_scalar(major).fetch_one(b).await?;
    Ok(if va == vb && va >= 14 {
        Hashing::Native
    } else {
        Hashing::Portable
    })
}

/// md5 of each row's text, by key.
pub(crate) async fn row_digests(
    conn: &mut PgConnection,
    table: &Table,
    keys: &[String],
) -> Result<std::collections::HashMap<String, String>> {
    let rows: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {key}, md5(ROW({cols})::text) FROM public.{t} WHERE {key} = ANY($1)",
        key = ident(table.key),
        cols = table.column_list(),
        t = ident(table.name)
    )))
    .bind(keys)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// A table's row count and whole-content checksum (the sum of its rows' portable hashes), as the
/// archive manifest records them: an archive may be imported on another server version.
pub async fn table_checksum(conn: &mut PgConnection, table: &Table) -> Result<(i64, String)> {
    let (rows, sum): (i64, String) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(*), coalesce(sum({hash}::numeric), 0)::text FROM public.{t}",
        hash = row_hash_expr(table, Hashing::Portable),
        t = ident(table.name)
    )))
    .fetch_one(conn)
    .await?;
    Ok((rows, sum))
}

/// Bucket -> (rows, checksum) computed by the server.
pub(crate) async fn bucket_sums(
    conn: &mut PgConnection,
    table: &Table,
    hashing: Hashing,
) -> Result<BTreeMap<i32, (i64, String)>> {
    let rows: Vec<(i32, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {bucket} AS b, count(*), sum({hash})::text FROM public.{t} GROUP BY 1",
        bucket = bucket_expr(table, hashing),
        hash = row_hash_expr(table, hashing),
        t = ident(table.name)
    )))
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(b, n, sum)| (b, (n, sum))).collect())
}

type KeyHashes<'c> =
    std::pin::Pin<Box<dyn Stream<Item = Result<(String, String), sqlx::Error>> + Send + 'c>>;

fn key_hashes<'c>(
    conn: &'c mut PgConnection,
    table: &Table,
    hashing: Hashing,
    buckets: &[i32],
) -> KeyHashes<'c> {
    let sql = format!(
        "SELECT {key}, md5(ROW({cols})::text) FROM public.{t} WHERE {bucket} = ANY($1) ORDER BY {key} COLLATE \"C\"",
        key = ident(table.key),
        cols = table.column_list(),
        t = ident(table.name),
        bucket = bucket_expr(table, hashing)
    );
    sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql))
        .bind(buckets.to_vec())
        .fetch(conn)
}

/// Merges both sides' (key, row hash) in byte order of the key (Rust's `String` order is the
/// "C" collation's), naming what differs.
pub(crate) async fn diff_rows(
    legacy: &mut PgConnection,
    target: &mut PgConnection,
    table: &Table,
    hashing: Hashing,
    buckets: &[i32],
    max_listed: usize,
) -> Result<Differences> {
    let mut left = key_hashes(legacy, table, hashing, buckets);
    let mut right = key_hashes(target, table, hashing, buckets);
    let mut d = Differences::default();
    let note = |list: &mut Vec<String>, count: &mut u64, key: String| {
        *count += 1;
        if list.len() < max_listed {
            list.push(key);
        }
    };
    let mut l = left.try_next().await?;
    let mut r = right.try_next().await?;
    loop {
        match (l.take(), r.take()) {
            (None, None) => break,
            (Some((k, _)), None) => {
                note(&mut d.missing, &mut d.missing_count, k);
                l = left.try_next().await?;
            }
            (None, Some((k, _))) => {
                note(&mut d.extra, &mut d.extra_count, k);
                r = right.try_next().await?;
            }
            (Some((lk, lh)), Some((rk, rh))) => match lk.cmp(&rk) {
                std::cmp::Ordering::Less => {
                    note(&mut d.missing, &mut d.missing_count, lk);
                    l = left.try_next().await?;
                    r = Some((rk, rh));
                }
                std::cmp::Ordering::Greater => {
                    note(&mut d.extra, &mut d.extra_count, rk);
                    r = right.try_next().await?;
                    l = Some((lk, lh));
                }
                std::cmp::Ordering::Equal => {
                    if lh != rh {
                        note(&mut d.changed, &mut d.changed_count, lk);
                    }
                    l = left.try_next().await?;
                    r = right.try_next().await?;
                }
            },
        }
    }
    Ok(d)
}
