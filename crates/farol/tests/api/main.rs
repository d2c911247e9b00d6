//! Black-box tests of the HTTP API over real HTTP, on SQLite or PostgreSQL
//! (`FAROL_TEST_BACKEND`). See helpers.rs.

mod audit;
mod auth;
mod campaigns;
mod channel_ops;
mod channels;
mod cli;
mod clients;
mod demo;
mod helpers;
mod imports;
mod ops;
mod pacing;
mod policies;
mod rbac;
mod segments;
mod smartico;
mod smartico_campaigns;
mod tenancy;
mod users;
