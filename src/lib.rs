//! flotilla rolls a database upgrade out across many databases in waves, checks each one, and
//! stops before a bad upgrade spreads.
//!
//! The shape: the user's files are resolved into typed configuration ([`config`],
//! [`migrations`]); the pure planner ([`plan`]) turns them and each trust's applied history into
//! steps; the [`engine`] runs those steps through the narrow database port ([`db`]) and emits
//! typed events that reporters ([`report`]) consume.

pub mod adopt;
pub mod cli;
pub mod commands;
pub mod config;
pub mod db;
pub mod demo;
pub mod engine;
pub mod exit_codes;
pub mod files;
pub mod health;
pub mod journal;
pub mod migrations;
pub mod plan;
pub mod printable;
pub mod rehearse;
pub mod report;
pub mod secrets;
pub mod session;
pub mod traffic;
pub mod unfinished;
pub mod workers;

pub use exit_codes::ExitCode;
