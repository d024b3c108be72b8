//! Scratch servers as throwaway local PostgreSQL clusters: `initdb` into `<base>/<drill id>/`, `pg_ctl start`
//! on a free loopback port with fsync off (nothing in a scratch server needs to survive a crash).
//!
//! The cluster outlives the process that made it, as an RDS instance would: a drill resumed by a later
//! invocation finds it by its directory, and the sweeper removes clusters past their expiry. PostgreSQL refuses
//! to run as root, so as root the server runs as the `postgres` system user.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use tokio::process::Command;

use super::postgres::PgDumper;
use crate::ports::{ScratchDatabases, ScratchEndpoint, ScratchError, ScratchHandle, ScratchSpec, ScratchState};

const ADMIN_USER: &str = "backstop_drill";

pub struct LocalScratch {
    base: PathBuf,
    programs: PgDumper,
}

impl LocalScratch {
    /// `base`: where clusters live (default: `<temp dir>/backstop-scratch`).
    pub fn new(base: Option<PathBuf>, bin_dir: Option<PathBuf>) -> Self {
        LocalScratch { base: base.unwrap_or_else(|| std::env::temp_dir().join("backstop-scratch")), programs: PgDumper::new(bin_dir) }
    }

    fn dir(&self, handle: &ScratchHandle) -> PathBuf {
        PathBuf::from(&handle.id)
    }

    async fn run(&self, program: &str, args: &[&str], as_server_user: bool) -> Result<String, ScratchError> {
        let mut cmd = Command::new(self.programs.program(program));
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        if as_server_user {
            if let Some((uid, gid)) = server_identity()? {
                cmd.uid(uid).gid(gid);
            }
        }
        let out = cmd.output().await.map_err(|e| backend("scratch cluster", format!("cannot start {program}: {e}")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(backend("scratch cluster", format!("{program} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim())))
        }
    }

    async fn start(&self, dir: &Path) -> Result<(), ScratchError> {
        let port = std::fs::read_to_string(dir.join("port")).map_err(|e| backend("read port", e.to_string()))?;
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_wal_size=4GB -c max_connections=20",
            port.trim(),
            dir.display()
        );
        let data = dir.join("data");
        let log = dir.join("server.log");
        self.run("pg_ctl", &["-D", path(&data), "-l", path(&log), "-w", "-t", "60", "-o", &options, "start"], true).await?;
        Ok(())
    }

    async fn running(&self, dir: &Path) -> bool {
        self.run("pg_ctl", &["-D", path(&dir.join("data")), "status"], true).await.is_ok()
    }

    async fn stop_and_remove(&self, dir: &Path) -> Result<(), ScratchError> {
        if dir.join("data").exists() && self.running(dir).await {
            self.run("pg_ctl", &["-D", path(&dir.join("data")), "-m", "immediate", "-w", "stop"], true).await?;
        }
        match std::fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(backend("remove scratch cluster", format!("{}: {e}", dir.display()))),
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("scratch paths are UTF-8 (made from drill ids)")
}

fn backend(operation: &'static str, message: String) -> ScratchError {
    ScratchError::Backend { operation, message }
}

/// The uid/gid to run the server as: none (ours) unless we are root, then `postgres`'s.
fn server_identity() -> Result<Option<(u32, u32)>, ScratchError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = CString::new("postgres").expect("no NUL");
    // SAFETY: getpwnam returns null or a pointer to a static record, read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(backend("initdb", "running as root, and there is no `postgres` user to run a scratch server as".into()));
    }
    // SAFETY: checked non-null above.
    Ok(Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) }))
}

fn chown_to_server(p: &Path) -> Result<(), ScratchError> {
    if let Some((uid, gid)) = server_identity()? {
        std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(|e| backend("chown", format!("{}: {e}", p.display())))?;
    }
    Ok(())
}

fn free_port() -> Result<u16, ScratchError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| backend("pick a port", e.to_string()))
}

/// Drill ids are ours (timestamp + hex), but a directory name is checked all the same.
fn safe_name(drill_id: &str) -> bool {
    !drill_id.is_empty() && drill_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[async_trait]
impl ScratchDatabases for LocalScratch {
    async fn create(&self, spec: &ScratchSpec) -> Result<ScratchHandle, ScratchError> {
        if !safe_name(&spec.drill_id) {
            return Err(backend("create", format!("drill id {:?} cannot name a directory", spec.drill_id)));
        }
        let dir = self.base.join(&spec.drill_id);
        let handle = ScratchHandle { kind: "local".into(), id: path(&dir).to_string() };
        if dir.join("ready").exists() {
            return Ok(handle);
        }
        // A half-made cluster (a crash during initdb) is started over.
        self.stop_and_remove(&dir).await?;
        std::fs::create_dir_all(&self.base).map_err(|e| backend("create", e.to_string()))?;
        std::fs::create_dir(&dir).map_err(|e| backend("create", e.to_string()))?;
        chown_to_server(&dir)?;

        let password = SecretString::from(format!("{:032x}", rand::random::<u128>()));
        let secrets = dir.join("secrets");
        std::fs::create_dir(&secrets).map_err(|e| backend("create", e.to_string()))?;
        let pwfile = secrets.join("password");
        std::fs::write(&pwfile, password.expose_secret()).map_err(|e| backend("create", e.to_string()))?;
        std::fs::set_permissions(&pwfile, std::os::unix::fs::PermissionsExt::from_mode(0o600)).map_err(|e| backend("create", e.to_string()))?;
        // initdb runs as the server's user and must read the password once; the copy is deleted after.
        let initdb_pw = dir.join("initdb-password");
        std::fs::write(&initdb_pw, password.expose_secret()).map_err(|e| backend("create", e.to_string()))?;
        std::fs::set_permissions(&initdb_pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).map_err(|e| backend("create", e.to_string()))?;
        chown_to_server(&initdb_pw)?;
        let data = dir.join("data");
        let initdb = self
            .run(
                "initdb",
                &["-D", path(&data), "-U", ADMIN_USER, "-A", "scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync", "--pwfile", path(&initdb_pw)],
                true,
            )
            .await;
        let _ = std::fs::remove_file(&initdb_pw);
        initdb?;
        std::fs::write(dir.join("port"), free_port()?.to_string()).map_err(|e| backend("create", e.to_string()))?;
        std::fs::write(dir.join("expires_at"), spec.expires_at.to_rfc3339()).map_err(|e| backend("create", e.to_string()))?;
        self.start(&dir).await?;
        std::fs::write(dir.join("ready"), "").map_err(|e| backend("create", e.to_string()))?;
        Ok(handle)
    }

    async fn poll(&self, handle: &ScratchHandle) -> Result<ScratchState, ScratchError> {
        let dir = self.dir(handle);
        if !dir.join("ready").exists() {
            return Err(ScratchError::Failed { id: handle.id.clone(), message: "the scratch cluster does not exist (swept or never made)".into() });
        }
        // After a reboot the cluster is there but stopped.
        if !self.running(&dir).await {
            self.start(&dir).await?;
        }
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).map_err(|e| backend("read scratch cluster", format!("{name}: {e}")));
        let port = read("port")?.trim().parse().map_err(|_| backend("read scratch cluster", "bad port file".into()))?;
        Ok(ScratchState::Ready(ScratchEndpoint {
            host: "127.0.0.1".into(),
            port,
            user: ADMIN_USER.into(),
            password: SecretString::from(read("secrets/password")?),
            maintenance_db: "postgres".into(),
            sslmode: "disable".into(),
        }))
    }

    async fn destroy(&self, handle: &ScratchHandle) -> Result<(), ScratchError> {
        self.stop_and_remove(&self.dir(handle)).await
    }

    async fn sweep_expired(&self, now: DateTime<Utc>) -> Result<Vec<ScratchHandle>, ScratchError> {
        let entries = match std::fs::read_dir(&self.base) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(backend("sweep", e.to_string())),
        };
        let mut swept = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let dir = entry.path();
            let expires = std::fs::read_to_string(dir.join("expires_at")).ok().and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok());
            // A directory without a readable expiry is not ours to judge, unless it is an abandoned half-made one.
            if expires.is_some_and(|e| e < now) {
                let handle = ScratchHandle { kind: "local".into(), id: path(&dir).to_string() };
                self.destroy(&handle).await?;
                swept.push(handle);
            }
        }
        Ok(swept)
    }
}
