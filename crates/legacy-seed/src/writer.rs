//! The statements' side of seeding: the session-local generator functions, and the writer that
//! runs the generating statements in batches and reports progress.

use platform::db::quote_ident;
use schema::contract::TABLES;
use sqlx::PgConnection;

use crate::statements::*;
use crate::{
    BATCH, DEMO_USERS, PASSWORD_POOL, Plan, STATUS_MIX, profiles_upto, special_rows, tokens_upto,
    transactions_upto,
};

/// Creates the session-local SQL functions the generating statements use. Only they see the
/// seed and the password pool, so the statements themselves are constant.
pub(crate) async fn install_functions(
    conn: &mut PgConnection,
    seed: u64,
    pool: &[String],
) -> Result<(), sqlx::Error> {
    let pool = pool
        .iter()
        .map(|h| format!("'{h}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let status = STATUS_MIX
        .iter()
        .scan(0, |upto, (status, share)| {
            *upto += share;
            Some(format!("WHEN (i * 37) % 100 < {upto} THEN '{status}'"))
        })
        .collect::<Vec<_>>()
        .join(" ");
    let sql = GENERATOR_FUNCTIONS
        .replace("{seed}", &seed.to_string())
        .replace("{pool}", &pool)
        .replace("{pool_len}", &PASSWORD_POOL.to_string())
        .replace("{status}", &status);
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(conn)
        .await?;
    Ok(())
}

/// The generators. Everything random is a slice of an md5 of the seed, the table and the row
/// number; SQL functions this simple are inlined by the planner, so they cost no call.
pub(crate) const GENERATOR_FUNCTIONS: &str = r#"
-- A hash of the seed and a key (table, row number, purpose): the root of all random values.
CREATE FUNCTION pg_temp.h(key text) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT md5('{seed}:' || key) $$;
-- The k-th (0..3) 32-bit unsigned integer of a hash.
CREATE FUNCTION pg_temp.n(h text, k int) RETURNS bigint LANGUAGE sql IMMUTABLE
    AS $$ SELECT ('x' || substr(h, 1 + 8 * k, 8))::bit(32)::bigint $$;
-- Milliseconds in [0, span) from slices k and k + 1 of a hash.
CREATE FUNCTION pg_temp.ms(h text, k int, span bigint) RETURNS bigint LANGUAGE sql IMMUTABLE
    AS $$ SELECT (pg_temp.n(h, k) * 1000 + pg_temp.n(h, k + 1) % 1000) % span $$;
-- A timestamp `ms` milliseconds after the start of the generated history (2021-01-01).
CREATE FUNCTION pg_temp.ts(ms bigint) RETURNS timestamp LANGUAGE sql IMMUTABLE
    AS $$ SELECT timestamp '2021-01-01 00:00:00' + ms * interval '1 millisecond' $$;
CREATE FUNCTION pg_temp.pick(a anyarray, n bigint) RETURNS anyelement LANGUAGE sql IMMUTABLE
    AS $$ SELECT a[1 + n % cardinality(a)] $$;
-- A version-4-shaped UUID (lowercase, hyphenated) for a key. Each md5 is used once: an inlined
-- function repeats an argument at every use, so the variant nibble comes from a second md5
-- (not hashtext: its value depends on the server's byte order).
CREATE FUNCTION pg_temp.uid(key text) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT overlay(overlay(md5('{seed}:id:' || key)::uuid::text placing '4' from 15)
                         placing substr('89ab', 1 + ascii(md5(key)) % 4, 1) from 20) $$;
-- Row i of users, payments and profiles (negative i: the special rows). `::text`, not a bare
-- `|| i`: that operator is only stable and would stop the planner from inlining.
CREATE FUNCTION pg_temp.user_id(i bigint) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT pg_temp.uid('users:' || i::text) $$;
CREATE FUNCTION pg_temp.payment_id(i bigint) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT pg_temp.uid('payments:' || i::text) $$;
CREATE FUNCTION pg_temp.profile_id(i bigint) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT pg_temp.uid('user_profiles:' || i::text) $$;
-- The bcrypt hash of user i, from the pool of real hashes.
CREATE FUNCTION pg_temp.pw(i bigint) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT (ARRAY[{pool}])[1 + ((i % {pool_len}) + {pool_len}) % {pool_len}] $$;
-- The status of generated payment i (mirrors `payment_status` in Rust). Text: a cast to the
-- enum type is only stable, so the caller casts.
CREATE FUNCTION pg_temp.status(i bigint) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT CASE {status} END $$;
"#;

/// Writes the rows of one transaction, reporting progress.
pub(crate) struct Writer<'a> {
    pub(crate) conn: &'a mut PgConnection,
    pub(crate) plan: &'a Plan,
    pub(crate) progress: &'a dyn Fn(&str, u64),
}

impl Writer<'_> {
    /// Users with their profiles and refresh tokens: the special rows, then batches.
    pub(crate) async fn users(&mut self, demo_hashes: &[String]) -> Result<(), sqlx::Error> {
        for (k, ((email, _, role), hash)) in DEMO_USERS.iter().zip(demo_hashes).enumerate() {
            sqlx::query(DEMO_USER_SQL)
                .bind(-(k as i64) - 1)
                .bind(email)
                .bind(hash)
                .bind(role)
                .execute(&mut *self.conn)
                .await?;
        }
        sqlx::raw_sql(SPECIAL_USERS_SQL)
            .execute(&mut *self.conn)
            .await?;
        self.report(&["users", "user_profiles", "refresh_tokens"], 0);
        for (from, to) in batches(self.plan.users) {
            sqlx::query(USERS_SQL)
                .bind(from as i64)
                .bind(to as i64)
                .execute(&mut *self.conn)
                .await?;
            self.report(&["users"], to);
            self.report(&["user_profiles"], profiles_upto(to));
            self.report(&["refresh_tokens"], tokens_upto(to));
        }
        Ok(())
    }

    /// Payments with their status histories.
    pub(crate) async fn payments(&mut self) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(SPECIAL_PAYMENTS_SQL)
            .execute(&mut *self.conn)
            .await?;
        self.report(&["payments", "payment_transactions"], 0);
        for (from, to) in batches(self.plan.payments) {
            sqlx::query(PAYMENTS_SQL)
                .bind(from as i64)
                .bind(to as i64)
                .bind(self.plan.users as i64)
                .execute(&mut *self.conn)
                .await?;
            self.report(&["payments"], to);
            self.report(&["payment_transactions"], transactions_upto(to));
        }
        Ok(())
    }

    pub(crate) async fn audit_logs(&mut self) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(SPECIAL_AUDIT_LOGS_SQL)
            .execute(&mut *self.conn)
            .await?;
        self.report(&["audit_logs"], 0);
        for (from, to) in batches(self.plan.audit_logs) {
            sqlx::query(AUDIT_LOGS_SQL)
                .bind(from as i64)
                .bind(to as i64)
                .bind(self.plan.users as i64)
                .bind(self.plan.payments as i64)
                .execute(&mut *self.conn)
                .await?;
            self.report(&["audit_logs"], to);
        }
        Ok(())
    }

    /// system_config does not grow with the scale: a platform has a handful of settings.
    pub(crate) async fn system_config(&mut self) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(SYSTEM_CONFIG_SQL)
            .execute(&mut *self.conn)
            .await?;
        self.report(&["system_config"], 0);
        Ok(())
    }

    /// Reports `generated` rows plus the table's special rows.
    fn report(&self, tables: &[&str], generated: u64) {
        for table in tables {
            (self.progress)(table, special_rows(table) + generated);
        }
    }
}

/// `(from, to)` row-number ranges (inclusive, from 1) covering 1..=n.
pub(crate) fn batches(n: u64) -> impl Iterator<Item = (u64, u64)> {
    (0..n.div_ceil(BATCH)).map(move |b| (b * BATCH + 1, ((b + 1) * BATCH).min(n)))
}

pub(crate) async fn count_rows(
    conn: &mut PgConnection,
) -> Result<Vec<(&'static str, u64)>, sqlx::Error> {
    let mut rows = Vec::new();
    for table in TABLES {
        let sql = format!("SELECT count(*) FROM {}", quote_ident(table.name));
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut *conn)
            .await?;
        rows.push((table.name, n as u64));
    }
    Ok(rows)
}
