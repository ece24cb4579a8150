mod schema;
mod system;
