//! Jobs: plain async functions over the ports, one module (or folder) per job. Handlers and the CLI call these.

pub mod backup;
pub mod kernel;
pub mod manifests;
pub mod monitor;
pub mod purge;
pub mod report;
pub mod restore;
pub mod status;
#[cfg(test)]
pub(crate) mod test_support;
pub mod verify;
