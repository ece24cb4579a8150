//! Each service's migrations: its own (`migrations/<service>/`, versions from 1), then the event
//! hub's tables it uses (versions from 10 001). Publishers have an outbox, consumers an inbox.

use std::sync::LazyLock;

use platform::Service;
use sqlx::migrate::Migrator;

use crate::hub::{HubTable, with_hub_tables};

pub static AUTH: LazyLock<Migrator> = LazyLock::new(|| {
    of_service(
        Service::Auth,
        sqlx::migrate!("migrations/auth"),
        &[HubTable::Outbox],
    )
});

pub static PAYMENTS: LazyLock<Migrator> = LazyLock::new(|| {
    of_service(
        Service::Payments,
        sqlx::migrate!("migrations/payments"),
        &[HubTable::Outbox, HubTable::Inbox],
    )
});

pub static ADMIN: LazyLock<Migrator> = LazyLock::new(|| {
    of_service(
        Service::Admin,
        sqlx::migrate!("migrations/admin"),
        &[HubTable::Outbox, HubTable::Inbox],
    )
});

pub static PROFILE: LazyLock<Migrator> = LazyLock::new(|| {
    of_service(
        Service::Profile,
        sqlx::migrate!("migrations/profile"),
        &[HubTable::Outbox, HubTable::Inbox],
    )
});

/// `service`'s own migrations with the hub's tables it uses, the history kept in its own schema
/// (`<schema>._sqlx_migrations`): in the shared topology, four services on the legacy database
/// keep four histories that never collide.
fn of_service(service: Service, own: Migrator, hub: &[HubTable]) -> Migrator {
    let mut migrator = with_hub_tables(own, service.schema(), hub);
    migrator.create_schema(service.schema());
    migrator.dangerous_set_table_name(format!("{}._sqlx_migrations", service.schema()));
    migrator
}

/// `service`'s migrations.
pub fn migrator(service: Service) -> &'static Migrator {
    match service {
        Service::Auth => &AUTH,
        Service::Payments => &PAYMENTS,
        Service::Admin => &ADMIN,
        Service::Profile => &PROFILE,
    }
}

/// The indexes each service's migrations add to the legacy tables it owns: the only additions
/// to the contract's `public` tables (everything else a service has lives in its own schema).
/// Each service's schema test and the shared topology's end-to-end test hold the catalog to it.
pub mod legacy_indexes {
    /// (table, index).
    pub type Added = &'static [(&'static str, &'static str)];

    /// Emails are unique regardless of case, and looked up that way.
    pub const AUTH: Added = &[("users", "users_email_lower_idx")];
    /// A user's payments newest first, each side one index range.
    pub const PAYMENTS: Added = &[
        ("payments", "payments_sender_id_created_at_idx"),
        ("payments", "payments_recipient_id_created_at_idx"),
    ];
    /// A resource's trail, and a keyset index per filter of the listing and the export.
    pub const ADMIN: Added = &[
        ("audit_logs", "audit_logs_resource_idx"),
        ("audit_logs", "audit_logs_created_at_id_idx"),
        ("audit_logs", "audit_logs_user_id_created_at_idx"),
        ("audit_logs", "audit_logs_action_created_at_idx"),
        ("audit_logs", "audit_logs_resource_type_created_at_idx"),
        ("audit_logs", "audit_logs_resource_id_created_at_idx"),
    ];
    pub const PROFILE: Added = &[];
    pub const ALL: [Added; 4] = [AUTH, PAYMENTS, ADMIN, PROFILE];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_history_is_kept_in_its_service_schema() {
        for service in Service::ALL {
            let m = migrator(service);
            assert_eq!(
                m.table_name,
                format!("{}._sqlx_migrations", service.schema())
            );
            assert_eq!(m.create_schemas.len(), 1);
            assert_eq!(m.create_schemas[0], service.schema());
        }
    }
}
