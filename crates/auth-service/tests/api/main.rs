mod binary;
mod helpers;
mod input;
mod login;
mod register;
mod tokens;
mod users;
