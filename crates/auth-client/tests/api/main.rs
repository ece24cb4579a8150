//! The crate's tests: auth is faked over HTTP with wiremock, tokens are signed with fresh Ed25519
//! keys made here, exactly as auth signs them.

mod client;
mod extract;
mod support;
mod verify;
