//! One moto server (the AWS emulator) per test process, started on first use from the project's virtualenv.

use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{free_port, repo_root, watchdog_script};

pub struct Moto {
    pub endpoint: String,
    _process: Child,
}

static MOTO: OnceLock<Moto> = OnceLock::new();

/// The shared server's endpoint URL; each test creates its own resources on it.
pub fn endpoint() -> &'static str {
    &MOTO.get_or_init(start).endpoint
}

fn start() -> Moto {
    // moto's server behind infra/moto_server.py, which makes DynamoDB's conditional writes atomic as they are
    // on DynamoDB (the leases and claims the tests race rely on it).
    let python = repo_root().join(".venv/bin/python");
    let server = repo_root().join("infra/moto_server.py");
    assert!(
        python.exists(),
        "{} is missing: run infra/ensure-deps.sh (the README's test command does)",
        python.display()
    );
    let port = free_port();
    let log = std::env::temp_dir().join(format!("backstop-test-moto-{port}.log"));
    let start =
        format!("'{}' '{}' -H 127.0.0.1 -p {port} >'{}' 2>&1", python.display(), server.display(), log.display());
    let process = Command::new("sh")
        .arg("-c")
        .arg(watchdog_script(&start))
        .stdin(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto did not start within 60 s; see {}", log.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto { endpoint, _process: process }
}
