//! Integration tests: the backup and verify jobs against real PostgreSQL clusters and the emulated AWS APIs (moto),
//! and the Slack notifier against a local webhook stub.
//! One binary for all of them (one link, one moto server); each test makes its own clusters and resources.

mod aws_errors;
mod backup_restore;
mod common;
mod concurrency;
mod doc_links;
mod fail_closed;
mod fidelity;
mod fingerprint_v2;
mod hostile;
mod image;
mod monitor;
mod purge;
mod rds_scratch;
mod report;
mod restore;
mod servers;
mod slack;
mod state_machines;
mod template_rules;
mod verify;
mod versions;
mod wiring;
