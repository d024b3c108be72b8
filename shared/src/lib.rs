//! Backstop: PostgreSQL backups that are proven restorable.
//!
//! The library behind the Lambda functions (`functions/*`) and the `backstop` CLI:
//! - [`domain`]: backups, manifests, runs, fingerprints — plain data;
//! - [`jobs`]: the jobs, as async functions over [`ports`];
//! - [`adapters`]: the ports on AWS, on PostgreSQL's programs, and in memory for tests;
//! - [`pipeline`]: the streaming engine (fingerprint → compress → hash → multipart upload);
//! - [`notify`]: the Slack notifier (SNS alerts → Block Kit → incoming webhook);
//! - [`app`]: wiring from [`config::Config`] to a ready job; [`event`]: parsing Lambda events.

pub mod adapters;
pub mod app;
pub mod config;
mod config_errors;
pub mod domain;
pub mod event;
pub mod jobs;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod passwords;
pub mod pipeline;
pub mod ports;
pub mod telemetry;

#[cfg(test)]
mod error_style_tests;
#[cfg(test)]
mod layers_tests;
