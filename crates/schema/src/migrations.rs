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
