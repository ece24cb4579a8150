//! The legacy database's contract (`crates/schema/legacy-schema.sql`) as data: which tables exist, their
//! columns and types, their keys, which service each goes to, and which foreign keys the split
//! keeps or drops. Every phase checks a legacy database against it before touching anything.

use platform::Service;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// As PostgreSQL's `format_type` prints it.
    pub data_type: &'static str,
    pub nullable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    pub name: &'static str,
    pub service: Service,
    /// The primary key column (a single TEXT column in every legacy table).
    pub key: &'static str,
    pub columns: &'static [Column],
}

impl Table {
    /// Where the key is among the columns (contract order).
    pub fn key_index(&self) -> usize {
        self.columns
            .iter()
            .position(|c| c.name == self.key)
            .expect("the key is a column")
    }

    /// `"a", "b", ...` in contract order.
    pub fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| format!("\"{}\"", c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A foreign key of the legacy database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForeignKey {
    pub name: &'static str,
    pub table: &'static str,
    pub column: &'static str,
    pub references: &'static str,
    pub referenced_column: &'static str,
    /// Both ends in one service: the split keeps it. Otherwise it is dropped and `verify` counts
    /// the references that would break it.
    pub kept: bool,
}

const fn col(name: &'static str, data_type: &'static str, nullable: bool) -> Column {
    Column {
        name,
        data_type,
        nullable,
    }
}

const TEXT: &str = "text";
const TS: &str = "timestamp(3) without time zone";
const JSONB: &str = "jsonb";

/// In load order: a table comes after the tables its kept foreign keys point to.
pub const TABLES: &[Table] = &[
    Table {
        name: "users",
        service: Service::Auth,
        key: "id",
        columns: &[
            col("id", TEXT, false),
            col("email", TEXT, false),
            col("password_hash", TEXT, false),
            col("name", TEXT, false),
            col("role", "\"UserRole\"", false),
            col("email_verified", "boolean", false),
            col("created_at", TS, false),
            col("updated_at", TS, false),
        ],
    },
    Table {
        name: "refresh_tokens",
        service: Service::Auth,
        key: "id",
        columns: &[
            col("id", TEXT, false),
            col("user_id", TEXT, false),
            col("token", TEXT, false),
            col("expires_at", TS, false),
            col("created_at", TS, false),
        ],
    },
    Table {
        name: "payments",
        service: Service::Payments,
        key: "id",
        columns: &[
            col("id", TEXT, false),
            col("sender_id", TEXT, false),
            col("recipient_id", TEXT, true),
            col("amount", "numeric(10,2)", false),
            col("currency", TEXT, false),
            col("status", "\"PaymentStatus\"", false),
            col("type", "\"PaymentType\"", false),
            col("description", TEXT, true),
            col("metadata", JSONB, true),
            col("psp_transaction_id", TEXT, true),
            col("psp_status", TEXT, true),
            col("failure_reason", TEXT, true),
            col("completed_at", TS, true),
            col("created_at", TS, false),
            col("updated_at", TS, false),
        ],
    },
    Table {
        name: "payment_transactions",
        service: Service::Payments,
        key: "id",
        columns: &[
            col("id", TEXT, false),
            col("payment_id", TEXT, false),
            col("status", "\"PaymentStatus\"", false),
            col("status_message", TEXT, true),
            col("psp_transaction_id", TEXT, true),
            col("metadata", JSONB, true),
            col("created_at", TS, false),
        ],
    },
    Table {
        name: "audit_logs",
        service: Service::Admin,
        key: "id",
        columns: &[
            col("id", TEXT, false),
            col("user_id", TEXT, true),
            col("action", TEXT, false),
            col("resource_type", TEXT, true),
            col("resource_id", TEXT, true),
            col("details", JSONB, true),
            col("ip_address", TEXT, true),
            col("user_agent", TEXT, true),
            col("created_at", TS, false),
        ],
    },
    Table {
        name: "system_config",
        service: Service::Admin,
        key: "key",
        columns: &[
            col("key", TEXT, false),
            col("value", JSONB, false),
            col("description", TEXT, true),
            col("updated_at", TS, false),
            col("updated_by", TEXT, true),
        ],
    },
    Table {
        name: "user_profiles",
        service: Service::Profile,
        key: "id",
        columns: &[
            col("id", TEXT, false),
            col("user_id", TEXT, false),
            col("avatar_url", TEXT, true),
            col("phone", TEXT, true),
            col("address", TEXT, true),
            col("bio", TEXT, true),
            col("preferences", JSONB, true),
            col("created_at", TS, false),
            col("updated_at", TS, false),
        ],
    },
];

pub const FOREIGN_KEYS: &[ForeignKey] = &[
    fk(
        "refresh_tokens_user_id_fkey",
        "refresh_tokens",
        "user_id",
        "users",
        true,
    ),
    fk(
        "payments_sender_id_fkey",
        "payments",
        "sender_id",
        "users",
        false,
    ),
    fk(
        "payments_recipient_id_fkey",
        "payments",
        "recipient_id",
        "users",
        false,
    ),
    fk(
        "payment_transactions_payment_id_fkey",
        "payment_transactions",
        "payment_id",
        "payments",
        true,
    ),
    fk(
        "audit_logs_user_id_fkey",
        "audit_logs",
        "user_id",
        "users",
        false,
    ),
    fk(
        "user_profiles_user_id_fkey",
        "user_profiles",
        "user_id",
        "users",
        false,
    ),
];

const fn fk(
    name: &'static str,
    table: &'static str,
    column: &'static str,
    references: &'static str,
    kept: bool,
) -> ForeignKey {
    ForeignKey {
        name,
        table,
        column,
        references,
        referenced_column: "id",
        kept,
    }
}

pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}

pub fn tables_of(service: Service) -> impl Iterator<Item = &'static Table> {
    TABLES.iter().filter(move |t| t.service == service)
}

/// Enum types of the contract and their labels, in order.
pub const ENUMS: &[(&str, &[&str])] = &[
    ("UserRole", &["ADMIN", "CUSTOMER", "VENDOR"]),
    (
        "PaymentStatus",
        &["pending", "processing", "completed", "failed", "cancelled"],
    ),
    ("PaymentType", &["instant", "scheduled", "recurring"]),
];
