//! `mfe admin`: operating the admin service's data directly in its database, without the service
//! running: `verify-audit` recomputes the audit log's hash chain.

use admin_service::audit::chain::{self, Verification};
use anyhow::{Context, bail};
use platform::Service;
use sqlx::Connection;
use sqlx::postgres::PgPoolOptions;

#[derive(clap::Subcommand)]
pub enum AdminCommand {
    /// Recompute the audit log's hash chain and name the first row changed, deleted or inserted
    /// out of band. Prints the chain's head: keep it somewhere else, and pass it back with
    /// --expect-head later to detect a rewrite of the whole chain.
    VerifyAudit {
        /// The admin service's database.
        #[arg(long, env = "ADMIN_DATABASE_URL", default_value = Service::Admin.default_database_url(), hide_env_values = true)]
        url: String,
        /// A head printed by an earlier run, `<seq>:<hash>`: the chain must still hold it.
        #[arg(long)]
        expect_head: Option<String>,
    },
    /// Cover the rows the chain does not (those verify-audit lists as inserted out of band) with
    /// a new anchor at the chain's end: rows the migration brought into audit_logs after admin
    /// first started, or a whole log whose chain was deleted. Run it only once verify-audit lists
    /// exactly the rows you expect: from then on they verify as if admin had written them.
    AnchorAudit {
        /// The admin service's database.
        #[arg(long, env = "ADMIN_DATABASE_URL", default_value = Service::Admin.default_database_url(), hide_env_values = true)]
        url: String,
    },
}

/// Exit codes: 0 the chain holds (or was anchored), 1 it does not, 2 usage or connection error.
pub async fn run(cmd: AdminCommand, json: bool) -> anyhow::Result<bool> {
    match cmd {
        AdminCommand::VerifyAudit { url, expect_head } => verify(&url, expect_head, json).await,
        AdminCommand::AnchorAudit { url } => anchor(&url, json).await,
    }
}

async fn connect(url: &str) -> anyhow::Result<sqlx::PgPool> {
    let masked = platform::config::mask_url(url);
    // One attempt first: the pool would retry a refused connection until its timeout.
    sqlx::PgConnection::connect(url)
        .await
        .with_context(|| format!("cannot connect to {masked}"))?
        .close()
        .await?;
    PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to {masked}"))
}

async fn anchor(url: &str, json: bool) -> anyhow::Result<bool> {
    let pool = connect(url).await?;
    let anchored = chain::anchor(&pool, chain::Anchoring::Unchained)
        .await
        .context("cannot anchor the audit log")?
        .unwrap_or(0);
    if json {
        println!("{}", serde_json::json!({"anchoredRows": anchored}));
    } else if anchored == 0 {
        println!("nothing to anchor: every row is covered by the chain");
    } else {
        println!("anchored {anchored} row(s) as a new block at the end of the audit chain");
    }
    Ok(true)
}

async fn verify(url: &str, expect_head: Option<String>, json: bool) -> anyhow::Result<bool> {
    let expected = expect_head.as_deref().map(parse_head).transpose()?;
    let masked = platform::config::mask_url(url);
    let pool = connect(url).await?;
    let verification = chain::verify(&pool)
        .await
        .with_context(|| format!("cannot read the audit chain in {masked}"))?;
    let kept = match &expected {
        None => None,
        Some((seq, hash)) => Some(
            chain::hash_at(&pool, *seq)
                .await
                .with_context(|| format!("cannot read the audit chain in {masked}"))?
                .is_some_and(|found| found == *hash),
        ),
    };
    let holds = verification.valid && kept != Some(false);
    if json {
        let report = serde_json::json!({
            "holds": holds,
            "verification": verification,
            "expectedHeadFound": kept,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&verification, expected.as_ref(), kept);
    }
    Ok(holds)
}

fn parse_head(head: &str) -> anyhow::Result<(i64, String)> {
    let Some((seq, hash)) = head.split_once(':') else {
        bail!("--expect-head must be <seq>:<hash>, as verify-audit prints it");
    };
    let seq: i64 = seq
        .parse()
        .with_context(|| format!("--expect-head: {seq:?} is not a sequence number"))?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("--expect-head: the hash must be 64 hex digits");
    }
    Ok((seq, hash.to_ascii_lowercase()))
}

fn print_report(v: &Verification, expected: Option<&(i64, String)>, kept: Option<bool>) {
    println!(
        "audit chain: {} chained rows, {} anchored legacy rows",
        v.chained_rows, v.anchored_rows
    );
    if let Some(head) = &v.head {
        println!("head: {}:{}", head.seq, head.hash);
    }
    if let (Some((seq, hash)), Some(kept)) = (expected, kept) {
        if kept {
            println!("the expected head {seq}:{hash} is still in the chain");
        } else {
            println!(
                "REWRITTEN: entry {seq} no longer has hash {hash}: the chain was rebuilt since"
            );
        }
    }
    if v.valid {
        println!("ok: no row was changed, deleted or inserted out of band");
        return;
    }
    println!("TAMPERED: {} problem(s)", v.problem_count);
    for p in &v.problems {
        let row = p.audit_log_id.as_deref().unwrap_or("-");
        let seq = p.seq.map_or("-".to_string(), |s| s.to_string());
        println!("  {:?}\trow {row}\tentry {seq}\t{}", p.kind, p.message);
    }
}
