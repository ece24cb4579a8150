mod consumer;
mod helpers;
mod profile;
mod schema;
mod shared;
mod system;
