//! Support for the integration tests: throwaway PostgreSQL clusters on free loopback ports, one moto server
//! per test process, and fresh AWS resources (bucket, table, topic, queue, KMS key) for each test.
//!
//! Everything binds to 127.0.0.1 only, lives in temporary directories, and is stopped when the test ends or,
//! if the test process dies, by a watchdog that notices the process is gone.

pub mod aws;
pub mod cutting_proxy;
pub mod moto;
pub mod pg;
pub mod random_db;

use std::net::TcpListener;
use std::path::PathBuf;

/// The repository's root (the tests crate sits one level below it).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// A port nobody listens on right now. The OS picks it; the tiny window before the server binds is accepted.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind a loopback port").port()
}

/// A shell loop that kills `pid_expr`'s process when this test process is gone, so nothing outlives a crash.
pub(crate) fn watchdog_script(start: &str) -> String {
    format!(
        "{start} & child=$!; trap 'kill -INT $child 2>/dev/null; exit 0' TERM INT; \
         while [ -d /proc/{parent} ] && kill -0 $child 2>/dev/null; do sleep 0.5; done; kill -INT $child 2>/dev/null; wait $child",
        parent = std::process::id()
    )
}
