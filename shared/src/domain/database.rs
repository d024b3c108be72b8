//! Where a database is and who logs in to it: what a program needs to connect. The password travels apart, as
//! a secret, so that this can be logged and compared freely.

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseAddress {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    /// libpq `sslmode`; `prefer` when unset.
    pub sslmode: Option<String>,
    /// CA bundle for `verify-ca` / `verify-full`; libpq's default when unset.
    pub sslrootcert: Option<PathBuf>,
}
