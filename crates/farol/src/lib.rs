//! Farol: an open-source CRM and campaign engine for Brazilian sales, retention and CRM teams.
//!
//! One binary, one module per capability:
//! - [`crm`]: clients, contacts, tags, custom fields, portfolios, timelines;
//! - [`import`]: spreadsheets in (upload, mapping, normalization, dedupe, reports);
//! - [`segment`]: behavioral clusters from the data lake, named, linked to clients;
//! - [`campaign`]: templates, audiences, campaigns and their send workers;
//! - [`auth`]: users, login, tokens, roles; [`audit`]: the append-only audit log;
//! - [`api`]: the HTTP edge (router, errors, OpenAPI); [`ops`]: health, readiness, metrics;
//! - [`db`]: storage on SQLite or PostgreSQL; [`config`]: configuration;
//! - [`app`]: wiring; [`cli`]: the command line; [`demo`]: demo data.

pub mod accounts;
pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod bench;
pub mod campaign;
pub mod channels;
pub mod cli;
pub mod config;
pub mod crm;
pub mod db;
pub mod demo;
pub mod import;
pub mod ops;
pub mod segment;
pub mod state;
pub mod telemetry;
