//! Throwaway PostgreSQL clusters: initdb into a temporary directory, one server on a free loopback port,
//! fsync off (nothing here needs to survive a crash), stopped and removed on drop.
//!
//! PostgreSQL refuses to run as root; as root (CI), the server runs as the `postgres` system user that
//! Debian's package creates.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use backstop::config::{PasswordSource, TargetConfig};

use crate::{free_port, repo_root, watchdog_script};

/// Every test cluster's superuser (`postgres`) password; tests connect over TCP with it.
pub const SUPERUSER_PASSWORD: &str = "superuser-test-pw";
/// The password of the `backstop` login role that `seed_*` creates.
pub const BACKSTOP_PASSWORD: &str = "backstop-Dump-pw-7x!";

pub struct PgCluster {
    pub port: u16,
    pub dir: tempfile::TempDir,
    server: Child,
    /// The server's (and the client programs') bin directory.
    bin: PathBuf,
}

pub fn bin_dir() -> PathBuf {
    backstop::adapters::postgres::newest_debian_bin_dir()
        .expect("no PostgreSQL under /usr/lib/postgresql: run infra/ensure-deps.sh (the README's test command does)")
}

/// The uid/gid to run the server as: ours, or `postgres`'s when we are root.
fn server_identity() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = CString::new("postgres").unwrap();
    // SAFETY: getpwnam returns null or a pointer to a static record, read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!pw.is_null(), "running as root and there is no `postgres` user to run the test server as");
    // SAFETY: checked non-null above.
    unsafe { Some(((*pw).pw_uid, (*pw).pw_gid)) }
}

fn chown(path: &Path, identity: Option<(u32, u32)>) {
    if let Some((uid, gid)) = identity {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown to the server's user");
    }
}

fn as_server_user(cmd: &mut Command, identity: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = identity {
        cmd.uid(uid).gid(gid).env("HOME", "/tmp");
    }
    cmd
}

/// A copy of Debian's PostgreSQL (its programs and its share directory, laid out as installed, so the server finds
/// the share directory beside its programs) with an extension of the test's own added, named `name`, version 1.0,
/// made by `script`: for tests that need an extension the machine lacks. The copy lives as long as the `TempDir`;
/// its `bin` directory is the `PathBuf`.
pub fn bin_dir_with_extension(name: &str, script: &str) -> (tempfile::TempDir, PathBuf) {
    let installed = bin_dir();
    let major_dir = installed.parent().expect("…/postgresql/MAJOR/bin");
    let major = major_dir.file_name().expect("the major version's directory").to_owned();
    let root = tempfile::Builder::new().prefix("backstop-pg-install-").tempdir().expect("temp dir");
    // Readable by the server's user when the tests run as root.
    std::fs::set_permissions(root.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let copy = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to).unwrap();
        let out = Command::new("cp").arg("-a").arg(from).arg(to).output().expect("run cp");
        assert!(out.status.success(), "cp {}: {}", from.display(), String::from_utf8_lossy(&out.stderr));
    };
    copy(major_dir, &root.path().join("lib/postgresql"));
    copy(&Path::new("/usr/share/postgresql").join(&major), &root.path().join("share/postgresql"));
    let extensions = root.path().join("share/postgresql").join(&major).join("extension");
    std::fs::write(
        extensions.join(format!("{name}.control")),
        "comment = 'a test extension'\ndefault_version = '1.0'\nrelocatable = false\nschema = public\n",
    )
    .unwrap();
    std::fs::write(extensions.join(format!("{name}--1.0.sql")), script).unwrap();
    let bin = root.path().join("lib/postgresql").join(&major).join("bin");
    (root, bin)
}

/// PostgreSQL 17's programs, built from Debian's packages by `infra/pg-server/fetch.sh`: the directory it printed,
/// which the README's test command passes on as `BACKSTOP_PG17_BIN_DIR`.
pub fn pg17_bin_dir() -> PathBuf {
    let dir = std::env::var_os("BACKSTOP_PG17_BIN_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let out = std::process::Command::new(repo_root().join("infra/pg-server/fetch.sh"))
            .output()
            .expect("run infra/pg-server/fetch.sh");
        assert!(out.status.success(), "infra/pg-server/fetch.sh failed: {}", String::from_utf8_lossy(&out.stderr));
        PathBuf::from(String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim())
    });
    assert!(
        dir.join("postgres").exists(),
        "{} has no postgres: run infra/pg-server/fetch.sh (infra/test.sh does)",
        dir.display()
    );
    dir
}

impl PgCluster {
    /// A cluster of Debian's newest installed PostgreSQL (15 here).
    pub fn start() -> Self {
        Self::start_with(bin_dir())
    }

    /// A cluster of the PostgreSQL whose programs are in `bin`.
    pub fn start_with(bin: PathBuf) -> Self {
        let identity = server_identity();
        let dir = tempfile::Builder::new().prefix("backstop-pg-").tempdir().expect("temp dir");
        chown(dir.path(), identity);
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, SUPERUSER_PASSWORD).unwrap();
        chown(&pwfile, identity);
        let out = as_server_user(&mut Command::new(bin.join("initdb")), identity)
            .args(["-U", "postgres", "-A", "scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync", "--pwfile"])
            .arg(&pwfile)
            .arg("-D")
            .arg(&data)
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        Self::launch(bin, dir)
    }

    /// A hot standby of `primary` (a base backup that streams from it), as a read replica is: it answers
    /// queries, and refuses to write.
    pub fn start_standby_of(primary: &PgCluster) -> Self {
        let identity = server_identity();
        let dir = tempfile::Builder::new().prefix("backstop-pg-").tempdir().expect("temp dir");
        chown(dir.path(), identity);
        let out = as_server_user(&mut Command::new(primary.bin.join("pg_basebackup")), identity)
            .args(["-h", "127.0.0.1", "-U", "postgres", "-R", "-X", "stream", "--checkpoint=fast", "-p"])
            .arg(primary.port.to_string())
            .arg("-D")
            .arg(dir.path().join("data"))
            .env("PGPASSWORD", SUPERUSER_PASSWORD)
            .output()
            .expect("run pg_basebackup");
        assert!(out.status.success(), "pg_basebackup failed: {}", String::from_utf8_lossy(&out.stderr));
        Self::launch(primary.bin.clone(), dir)
    }

    /// Starts the server of `dir/data` on a free port and waits until it answers.
    fn launch(bin: PathBuf, dir: tempfile::TempDir) -> Self {
        let identity = server_identity();
        let data = dir.path().join("data");
        let port = free_port();
        let log = dir.path().join("server.log");
        let start = format!(
            "exec '{postgres}' -D '{data}' -p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{sock}' \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=30 >'{log}' 2>&1",
            postgres = bin.join("postgres").display(),
            data = data.display(),
            sock = dir.path().display(),
            log = log.display(),
        );
        let server = as_server_user(Command::new("sh").arg("-c").arg(watchdog_script(&format!("({start})"))), identity)
            .stdin(Stdio::null())
            .spawn()
            .expect("start postgres");
        let cluster = PgCluster { port, dir, server, bin };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cluster.try_psql("postgres", "SELECT 1").is_ok_and(|o| o.trim() == "1") {
            assert!(
                Instant::now() < deadline,
                "postgres did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// Serves TLS from now on (a reload) with the fixtures' certificate for `localhost`, which their
    /// `ca.crt` signed (tests/fixtures/tls); connections without TLS are still taken.
    pub fn serve_tls(&self) {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls");
        let identity = server_identity();
        for file in ["server.crt", "server.key"] {
            let copy = self.dir.path().join(file);
            std::fs::copy(fixtures.join(file), &copy).unwrap();
            // The server refuses a key others may read.
            std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
            chown(&copy, identity);
        }
        let dir = self.dir.path().display();
        // One statement a psql: ALTER SYSTEM runs outside a transaction block.
        for setting in [
            format!("ssl_cert_file = '{dir}/server.crt'"),
            format!("ssl_key_file = '{dir}/server.key'"),
            "ssl = on".into(),
        ] {
            self.psql("postgres", &format!("ALTER SYSTEM SET {setting}"));
        }
        self.psql("postgres", "SELECT pg_reload_conf()");
        // The reload is asynchronous: serving once a new connection says it is encrypted.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self
            .try_psql("postgres", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .is_ok_and(|ssl| ssl.trim() == "t")
        {
            assert!(Instant::now() < deadline, "the server does not serve TLS after a reload");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// psql as the superuser; Err(stderr) on failure.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .args(["-d", db, "-c", sql])
            .env("PGPASSWORD", SUPERUSER_PASSWORD)
            .output()
            .expect("run psql");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql).unwrap_or_else(|e| panic!("psql failed on {db}: {e}\nSQL: {sql}"))
    }

    /// Runs a SQL file as the superuser with ON_ERROR_STOP.
    pub fn psql_file(&self, db: &str, file: &Path) {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .args(["-d", db, "-f"])
            .arg(file)
            .env("PGPASSWORD", SUPERUSER_PASSWORD)
            .output()
            .expect("run psql");
        assert!(out.status.success(), "psql -f {} failed: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    }

    /// The `backstop` login role that reads everything (pg_read_all_data), as a deployment would create it.
    pub fn create_backup_role(&self) {
        self.psql(
            "postgres",
            &format!("CREATE ROLE backstop LOGIN PASSWORD '{BACKSTOP_PASSWORD}'; GRANT pg_read_all_data TO backstop;"),
        );
    }

    /// Database `name` seeded from `infra/seed/sample.sql` (with the roles it expects) plus the backup role.
    pub fn seed_sample(&self, name: &str) {
        self.psql("postgres", "CREATE ROLE app_owner NOLOGIN; CREATE ROLE app_reader NOLOGIN;");
        self.psql("postgres", &format!("CREATE DATABASE {name} OWNER app_owner"));
        self.psql_file(name, &repo_root().join("infra/seed/sample.sql"));
        self.create_backup_role();
    }

    /// Runs a SQL script (given as text) as the superuser with ON_ERROR_STOP; Err(stderr) on failure.
    pub fn try_psql_script(&self, db: &str, script: &str) -> Result<(), String> {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), script).expect("write the script");
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .args(["-d", db, "-f"])
            .arg(file.path())
            .env("PGPASSWORD", SUPERUSER_PASSWORD)
            .output()
            .expect("run psql");
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Database `name` seeded from `infra/seed/hostile.sql` plus the backup role.
    pub fn seed_hostile(&self, name: &str) {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.psql_file(name, &repo_root().join("infra/seed/hostile.sql"));
        self.create_backup_role();
    }

    /// A target for the `backstop` role, its password in a 0600 file under `dir`.
    pub fn target(&self, name: &str, database: &str, password: &str, dir: &Path) -> TargetConfig {
        let file = dir.join(format!("{name}-password"));
        std::fs::write(&file, password).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        TargetConfig {
            name: name.into(),
            host: "127.0.0.1".into(),
            port: self.port,
            database: database.into(),
            user: "backstop".into(),
            password: PasswordSource::File(file),
            sslmode: Some("disable".into()),
            sslrootcert: None,
            checks: vec![],
            pitr_source_instance: None,
            retention: Default::default(),
            runner: Default::default(),
            size_gb: None,
            databases: Vec::new(),
            exclude_databases: Vec::new(),
        }
    }

    /// pg_dump of `db` as plain SQL (the superuser's view), for fingerprinting a restored copy.
    pub fn dump(&self, db: &str) -> Vec<u8> {
        self.dump_with(db, &[])
    }

    /// pg_dump of `db` as plain SQL with extra options (`--schema-only`, `--data-only`).
    pub fn dump_with(&self, db: &str, options: &[&str]) -> Vec<u8> {
        let out = Command::new(self.bin.join("pg_dump"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .args(["-d", db])
            .args(options)
            .env("PGPASSWORD", SUPERUSER_PASSWORD)
            .output()
            .expect("run pg_dump");
        assert!(out.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    /// Runs `shell` (a pipeline) with PG* pointing at this cluster as the superuser, as an operator would.
    pub fn shell(&self, shell: &str) -> std::process::Output {
        Command::new("bash")
            .arg("-o")
            .arg("pipefail")
            .arg("-c")
            .arg(shell)
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", "postgres")
            .env("PGPASSWORD", SUPERUSER_PASSWORD)
            .env("PATH", format!("{}:{}", self.bin.display(), std::env::var("PATH").unwrap_or_default()))
            .output()
            .expect("run bash")
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // SIGTERM to the watchdog: it stops the server (fast shutdown) and waits for it.
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.server.id() as i32, libc::SIGTERM) };
        let _ = self.server.wait();
    }
}
