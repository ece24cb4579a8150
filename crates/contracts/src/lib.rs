//! Wire types shared between the services: what crosses a service boundary over HTTP or the event
//! hub. Serde and OpenAPI only; no I/O, no database types (each service owns its storage).

pub mod auth;
pub mod events;
pub mod users;
