//! `export` / `import`: the seed's path through files, which is also the pre-migration backup.
//!
//! An archive is a directory: one zstd-compressed binary COPY file per table (`<table>.copy.zst`)
//! and `manifest.json` with each file's row count, content checksum (the same order-independent
//! checksum `verify` computes) and SHA-256. The manifest is written last, so a directory without
//! one is an unfinished export; `import` checks every file against it before writing anything.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::TryStreamExt;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::endpoints::Endpoints;
use crate::engine::check;
use crate::engine::connect;
use crate::engine::digest;
use crate::engine::journal;
use crate::engine::journal::state::{self, State};
use crate::engine::load::{self, Feed, TableLoad};
use crate::error::{MigrateError, Result};
use crate::progress::Progress;
use schema::contract::{TABLES, Table};

pub const MANIFEST: &str = "manifest.json";
const FORMAT: u32 = 1;
const ZSTD_LEVEL: i32 = 3;
const READ_BLOCK: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestTable {
    pub table: String,
    pub service: String,
    pub file: String,
    pub rows: i64,
    /// Sum of the rows' 64-bit hashes, as `verify` computes it.
    pub checksum: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format: u32,
    pub created_at: String,
    /// The legacy database it came from, password masked.
    pub source: String,
    pub tables: Vec<ManifestTable>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportReport {
    pub dir: String,
    pub tables: Vec<ManifestTable>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    pub tables: Vec<TableLoad>,
    /// Tables whose imported content matches the manifest's checksum.
    pub checksums_match: bool,
    pub seconds: f64,
}

fn file_name(table: &Table) -> String {
    format!("{}.copy.zst", table.name)
}

/// Writes every legacy table, from one snapshot, into `dir` (created; must not hold an export).
pub async fn export(
    endpoints: &Endpoints,
    dir: &Path,
    jobs: usize,
    progress: Arc<dyn Progress>,
) -> Result<ExportReport> {
    let started = Instant::now();
    let mut coordinator = connect::connection("legacy", endpoints.legacy()).await?;
    let differences = check::legacy_differences(&mut coordinator).await?;
    if !differences.is_empty() {
        return Err(MigrateError::ContractMismatch(differences));
    }
    if dir.join(MANIFEST).exists() {
        return Err(MigrateError::Usage(format!(
            "{} already holds an export; choose another directory",
            dir.display()
        )));
    }
    private_dir(dir)?;
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut coordinator)
        .await?;
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut coordinator)
        .await?;

    let semaphore = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let mut tasks = Vec::new();
    for table in TABLES {
        let (url, snapshot, dir) = (
            endpoints.legacy().to_string(),
            snapshot.clone(),
            dir.to_path_buf(),
        );
        let (semaphore, progress) = (semaphore.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire_owned().await.expect("semaphore open");
            export_table(&url, &snapshot, &dir, table, progress.as_ref()).await
        }));
    }
    let mut tables = Vec::new();
    for task in tasks {
        tables.push(
            task.await
                .map_err(|e| MigrateError::task("export task", e))??,
        );
    }
    let created_at: String = sqlx::query_scalar(
        "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
    )
    .fetch_one(&mut coordinator)
    .await?;
    let manifest = Manifest {
        format: FORMAT,
        created_at,
        source: platform::config::mask_url(endpoints.legacy()),
        tables: tables.clone(),
    };
    let tmp = dir.join(format!(".{MANIFEST}.partial"));
    {
        let mut file = private_file(&tmp)?;
        file.write_all(
            serde_json::to_string_pretty(&manifest)
                .expect("manifest serialises")
                .as_bytes(),
        )?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(MANIFEST))?;
    Ok(ExportReport {
        dir: dir.display().to_string(),
        tables,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A file of the export, readable by its owner only: the files hold password hashes and live
/// refresh tokens. A file left by an earlier run is narrowed too.
fn private_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// The export's directory, made (or narrowed) to its owner only.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

async fn export_table(
    url: &str,
    snapshot: &str,
    dir: &Path,
    table: &'static Table,
    progress: &dyn Progress,
) -> Result<ManifestTable> {
    let mut source = load::snapshot_connection(url, snapshot).await?;
    let (rows, checksum) = digest::table_checksum(&mut source, table).await?;
    progress.table_started(table.name, rows as u64, 0);
    let path = dir.join(file_name(table));
    let partial = dir.join(format!(".{}.partial", file_name(table)));
    let (tx, mut rx) = mpsc::channel::<Bytes>(16);
    let writer_path = partial.clone();
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<(String, u64)> {
        let file = HashingWriter::new(private_file(&writer_path)?);
        let mut encoder = zstd::Encoder::new(file, ZSTD_LEVEL)?;
        while let Some(bytes) = rx.blocking_recv() {
            encoder.write_all(&bytes)?;
        }
        let mut file = encoder.finish()?;
        file.flush()?;
        file.inner.sync_all()?;
        Ok(file.finish())
    });
    let sql = load::copy_out_sql(table, None, None);
    let mut stream = source.copy_out_raw(&sql).await?;
    let mut messages = 0u64;
    while let Some(bytes) = stream.try_next().await? {
        messages += 1;
        if messages.is_multiple_of(10_000) {
            progress.rows(table.name, 10_000);
        }
        if tx.send(bytes).await.is_err() {
            break;
        }
    }
    drop(stream);
    drop(tx);
    let (sha256, bytes) = writer
        .await
        .map_err(|e| MigrateError::task("export writer", e))??;
    std::fs::rename(&partial, &path)?;
    progress.rows(
        table.name,
        (rows as u64).saturating_sub(messages / 10_000 * 10_000),
    );
    progress.table_step(table.name, "exported");
    Ok(ManifestTable {
        table: table.name.to_string(),
        service: table.service.name().to_string(),
        file: file_name(table),
        rows,
        checksum,
        sha256,
        bytes,
    })
}

/// Reads and checks an archive: the manifest, every contract table present, every file's size and
/// SHA-256. Lists every problem at once.
pub fn check_archive(dir: &Path) -> Result<Manifest> {
    let text = std::fs::read_to_string(dir.join(MANIFEST)).map_err(|e| {
        MigrateError::Usage(format!(
            "{} is not an export (no readable {MANIFEST}: {e})",
            dir.display()
        ))
    })?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| MigrateError::Usage(format!("{}: damaged {MANIFEST}: {e}", dir.display())))?;
    let mut problems = Vec::new();
    if manifest.format != FORMAT {
        problems.push(format!(
            "format {} (this tool reads {FORMAT})",
            manifest.format
        ));
    }
    for table in TABLES {
        let Some(entry) = manifest.tables.iter().find(|t| t.table == table.name) else {
            problems.push(format!("{}: not in the manifest", table.name));
            continue;
        };
        if entry.file != file_name(table) {
            problems.push(format!(
                "{}: unexpected file name {}",
                table.name, entry.file
            ));
            continue;
        }
        match file_digest(&dir.join(&entry.file)) {
            Err(e) => problems.push(format!("{}: {e}", entry.file)),
            Ok((sha, bytes)) if bytes != entry.bytes || sha != entry.sha256 => {
                problems.push(format!(
                    "{}: damaged ({bytes} bytes, SHA-256 {sha}; manifest: {} bytes, {})",
                    entry.file, entry.bytes, entry.sha256
                ))
            }
            Ok(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(manifest)
    } else {
        Err(MigrateError::Usage(format!(
            "archive {} refused, nothing was written:\n  {}",
            dir.display(),
            problems.join("\n  ")
        )))
    }
}

/// Loads an archive into the (prepared, empty) service databases; resumable like `copy`.
pub async fn import(
    endpoints: &Endpoints,
    dir: &Path,
    jobs: usize,
    progress: Arc<dyn Progress>,
) -> Result<ImportReport> {
    let started = Instant::now();
    let manifest = check_archive(dir)?;
    let targets = load::open_targets(endpoints, jobs as u32 + 1).await?;
    let pools = &targets.pools;
    let entries = load::preflight(pools).await?;
    state::advance(endpoints, State::Copying, "import").await?;
    let rows: BTreeMap<&'static str, i64> = TABLES
        .iter()
        .map(|t| {
            (
                t.name,
                manifest
                    .tables
                    .iter()
                    .find(|m| m.table == t.name)
                    .map(|m| m.rows)
                    .unwrap_or(0),
            )
        })
        .collect();
    for table in TABLES.iter().filter(|t| entries[t.name].is_none()) {
        let mut target = pools[table.service.name()].acquire().await?;
        load::start_table(&mut target, table, rows[table.name], None, &[(None, None)]).await?;
    }
    let feed = Feed::Archive {
        dir: dir.to_path_buf(),
        rows,
    };
    let tables = load::run(pools.clone(), feed, jobs, progress).await?;
    let checksums_match = matches_manifest(pools, &manifest).await?;
    let report = ImportReport {
        tables,
        checksums_match,
        seconds: started.elapsed().as_secs_f64(),
    };
    for pool in pools.values() {
        let mut conn = pool.acquire().await?;
        let outcome = if checksums_match { "ok" } else { "differences" };
        let detail = serde_json::to_value(&report).unwrap_or_default();
        journal::record_run(&mut conn, "import", outcome, &detail).await?;
    }
    state::advance(endpoints, State::Copied, "import").await?;
    Ok(report)
}

/// Whether every imported table holds the rows and checksum its manifest entry says.
async fn matches_manifest(
    pools: &BTreeMap<&'static str, sqlx::PgPool>,
    manifest: &Manifest,
) -> Result<bool> {
    let mut all = true;
    for table in TABLES {
        let mut conn = pools[table.service.name()].acquire().await?;
        let (rows, checksum) = digest::table_checksum(&mut conn, table).await?;
        let expected = manifest
            .tables
            .iter()
            .find(|m| m.table == table.name)
            .expect("checked");
        if rows != expected.rows || checksum != expected.checksum {
            all = false;
            tracing::error!(
                table = table.name,
                "imported content does not match the manifest's checksum"
            );
        }
    }
    Ok(all)
}

/// The decompressed COPY data of one table's file, in blocks, read off the async runtime.
pub fn read_table(dir: &Path, table: &Table) -> Result<BoxStream<'static, Result<Bytes>>> {
    let path: PathBuf = dir.join(file_name(table));
    let file = File::open(&path).map_err(|source| MigrateError::File {
        path: path.clone(),
        source,
    })?;
    let (tx, rx) = mpsc::channel::<Result<Bytes>>(8);
    tokio::task::spawn_blocking(move || {
        let mut decoder = match zstd::Decoder::new(BufReader::new(file)) {
            Ok(d) => d,
            Err(e) => {
                let _ = tx.blocking_send(Err(e.into()));
                return;
            }
        };
        loop {
            let mut block = vec![0u8; READ_BLOCK];
            match decoder.read(&mut block) {
                Ok(0) => break,
                Ok(n) => {
                    block.truncate(n);
                    if tx.blocking_send(Ok(Bytes::from(block))).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(MigrateError::File {
                        path: path.clone(),
                        source: e,
                    }));
                    break;
                }
            }
        }
    });
    Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })))
}

fn file_digest(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READ_BLOCK];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((hex(&hasher.finalize()), bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A file writer that hashes and counts what it writes.
struct HashingWriter {
    inner: File,
    hasher: Sha256,
    bytes: u64,
}

impl HashingWriter {
    fn new(inner: File) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    fn finish(self) -> (String, u64) {
        (hex(&self.hasher.finalize()), self.bytes)
    }
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
