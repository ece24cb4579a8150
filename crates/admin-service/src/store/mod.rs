//! The admin service's tables: the seed's `audit_logs` and `system_config`, and the hash chain
//! beside the log (whose hashing is [`crate::audit::chain`]).

use sqlx::PgConnection;

pub mod audit_chain;
pub mod audit_logs;
pub mod system_config;

/// Makes the transaction `tx` just began one read-only snapshot: every read in it (an export's
/// pages, a verification's passes) sees the same log.
pub async fn snapshot(tx: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::raw_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(tx)
        .await?;
    Ok(())
}
