mod binary;
mod helpers;
mod input;
mod login;
mod register;
mod schema;
mod tokens;
mod users;
