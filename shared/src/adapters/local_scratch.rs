//! Scratch servers as throwaway local PostgreSQL clusters in `<base>/<drill id>/`, started with `pg_ctl` on a
//! free loopback port with the settings of a server that only ever restores once: no fsync, minimal WAL (a
//! table created or truncated in the loading transaction writes none), no autovacuum, room for index builds.
//!
//! `initdb` runs once per PostgreSQL version into `<base>/template-<major>-…/`; each drill's cluster is a copy of
//! it (a fifth of initdb's time), whose administrator password is then changed to the drill's own.
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
use sha2::Digest;
use tokio::process::Command;

use super::postgres::PgDumper;
use crate::ports::{ScratchDatabases, ScratchEndpoint, ScratchError, ScratchHandle, ScratchSpec, ScratchState};

const ADMIN_USER: &str = "backstop_drill";

/// A server that restores once and is thrown away: nothing needs to survive a crash, nothing replicates.
/// Connections: a drill holds about `restore_jobs` + 4 at once (the loaders or the readers, the main one, the
/// early reader, the check's programs), so 80 leave room for the largest `restore_jobs` (32) twice over.
/// The shared lock table is `max_locks_per_transaction` times the processes, and the schema-only pg_dump after
/// the restore locks every table in one transaction: 1024 gives room for tens of thousands, more than a source
/// with default settings has for its own pg_dump.
/// `infra/bench/run.py` restores its comparisons into a server with these same settings.
pub const RESTORE_SETTINGS: &str =
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c wal_level=minimal \
     -c max_wal_senders=0 -c max_wal_size=4GB -c autovacuum=off -c maintenance_work_mem=256MB -c max_connections=80 \
     -c max_locks_per_transaction=1024";

pub struct LocalScratch {
    base: PathBuf,
    programs: PgDumper,
}

impl LocalScratch {
    /// `base`: where clusters live (default: `<temp dir>/backstop-scratch`).
    pub fn new(base: Option<PathBuf>, bin_dir: Option<PathBuf>) -> Self {
        LocalScratch {
            base: base.unwrap_or_else(|| std::env::temp_dir().join("backstop-scratch")),
            programs: PgDumper::new(bin_dir),
        }
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
            Err(backend(
                "scratch cluster",
                format!("{program} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
            ))
        }
    }

    async fn start(&self, dir: &Path) -> Result<(), ScratchError> {
        let port = std::fs::read_to_string(dir.join("port")).map_err(|e| backend("read port", e.to_string()))?;
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} {}",
            port.trim(),
            dir.display(),
            RESTORE_SETTINGS
        );
        let data = dir.join("data");
        let log = dir.join("server.log");
        // pg_ctl's own wait polls every 100 ms; waiting here for the server to say it is ready is quicker.
        self.run("pg_ctl", &["-D", path(&data), "-l", path(&log), "-W", "-o", &options, "start"], true).await?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let status = std::fs::read_to_string(data.join("postmaster.pid")).unwrap_or_default();
            // Line 8 of postmaster.pid is the server's state: `starting`, `ready`, `stopping`.
            if status.lines().nth(7).map(str::trim) == Some("ready") {
                return Ok(());
            }
            let gone = status.lines().next().and_then(|p| p.trim().parse::<i32>().ok()).is_some_and(|pid| !alive(pid));
            if gone || std::time::Instant::now() > deadline {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(backend(
                    "start scratch cluster",
                    format!(
                        "the server did not become ready: {}",
                        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                    ),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    async fn running(&self, dir: &Path) -> bool {
        postmaster_pid(dir).is_some_and(alive)
    }

    /// The initdb'd data directory drills copy, made once per PostgreSQL version (and programs directory).
    async fn template(&self) -> Result<PathBuf, ScratchError> {
        let version = self.run("initdb", &["--version"], false).await?;
        let program = self.programs.program("initdb");
        let digest = sha2::Sha256::digest(format!("{}\n{}", program.display(), version.trim()).as_bytes());
        let major = version.split_whitespace().nth(2).and_then(|v| v.split('.').next()).unwrap_or("x").to_string();
        let dir = self.base.join(format!("template-{major}-{}", &hex::encode(digest)[..12]));
        if dir.join("ready").exists() {
            return Ok(dir);
        }
        std::fs::create_dir_all(&self.base).map_err(|e| backend("template", e.to_string()))?;
        // One maker at a time; a lock older than initdb could take is a crashed maker's.
        let lock = self.base.join(format!("{}.lock", dir.file_name().and_then(|n| n.to_str()).unwrap_or("template")));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            match std::fs::create_dir(&lock) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if dir.join("ready").exists() {
                        return Ok(dir);
                    }
                    let stale = std::fs::metadata(&lock)
                        .and_then(|m| m.modified())
                        .map(|t| t.elapsed().unwrap_or_default() > std::time::Duration::from_secs(120))
                        .unwrap_or(true);
                    if stale || std::time::Instant::now() > deadline {
                        let _ = std::fs::remove_dir(&lock);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => return Err(backend("template", e.to_string())),
            }
        }
        let made = self.make_template(&dir).await;
        let _ = std::fs::remove_dir(&lock);
        made.map(|()| dir)
    }

    async fn make_template(&self, dir: &Path) -> Result<(), ScratchError> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| backend("template", e.to_string()))?;
        }
        std::fs::create_dir(dir).map_err(|e| backend("template", e.to_string()))?;
        chown_to_server(dir)?;
        let password = SecretString::from(format!("{:032x}", rand::random::<u128>()));
        write_secret(&dir.join("secrets"), &password)?;
        // initdb runs as the server's user and must read the password once; the copy is deleted after.
        let initdb_pw = dir.join("initdb-password");
        std::fs::write(&initdb_pw, password.expose_secret()).map_err(|e| backend("template", e.to_string()))?;
        std::fs::set_permissions(&initdb_pw, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|e| backend("template", e.to_string()))?;
        chown_to_server(&initdb_pw)?;
        let data = dir.join("data");
        let initdb = self
            .run(
                "initdb",
                &[
                    "-D",
                    path(&data),
                    "-U",
                    ADMIN_USER,
                    "-A",
                    "scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--pwfile",
                    path(&initdb_pw),
                ],
                true,
            )
            .await;
        let _ = std::fs::remove_file(&initdb_pw);
        initdb?;
        std::fs::write(dir.join("ready"), "").map_err(|e| backend("template", e.to_string()))
    }

    async fn stop_and_remove(&self, dir: &Path) -> Result<(), ScratchError> {
        if let Some(pid) = postmaster_pid(dir).filter(|pid| alive(*pid)) {
            // An immediate shutdown (what `pg_ctl -m immediate` sends): nothing here is worth a checkpoint.
            // SAFETY: signalling the scratch server's postmaster, whose pid its own pid file gives.
            unsafe { libc::kill(pid, libc::SIGQUIT) };
            // Gone when its pid file is (the server removes it as it exits; a zombie it may leave behind, where
            // nothing reaps, would still answer `kill(pid, 0)`).
            let started = std::time::Instant::now();
            let mut killed = false;
            while postmaster_pid(dir) == Some(pid) && alive(pid) {
                if !killed && started.elapsed() > std::time::Duration::from_secs(30) {
                    // SAFETY: as above; the server ignored the shutdown request.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    killed = true;
                } else if started.elapsed() > std::time::Duration::from_secs(40) {
                    return Err(backend(
                        "stop scratch cluster",
                        format!("postmaster {pid} of {} does not stop", dir.display()),
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        let removing = dir.to_path_buf();
        let removed = tokio::task::spawn_blocking(move || remove_tree(&removing))
            .await
            .map_err(|e| backend("remove scratch cluster", e.to_string()))?;
        match removed {
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
///
/// Looked up once per process with the reentrant `getpwnam_r`: `getpwnam` answers in a buffer shared by every
/// thread, and the template copy's threads asked at once, so one of them could read another's half-written
/// answer and give a file to the wrong owner (seen as the server's "could not open file …: Permission denied").
fn server_identity() -> Result<Option<(u32, u32)>, ScratchError> {
    static IDENTITY: std::sync::OnceLock<Option<(u32, u32)>> = std::sync::OnceLock::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    if let Some(identity) = IDENTITY.get() {
        return Ok(*identity);
    }
    let name = CString::new("postgres").expect("no NUL");
    // SAFETY: a zeroed passwd is a valid out-parameter; getpwnam_r fills it, its strings in `buffer`.
    let mut record: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and the buffer's length is the one passed.
    let status = unsafe { libc::getpwnam_r(name.as_ptr(), &mut record, buffer.as_mut_ptr(), buffer.len(), &mut found) };
    if status != 0 || found.is_null() {
        return Err(backend(
            "initdb",
            "running as root, and there is no `postgres` user to run a scratch server as".into(),
        ));
    }
    Ok(*IDENTITY.get_or_init(|| Some((record.pw_uid, record.pw_gid))))
}

fn chown_to_server(p: &Path) -> Result<(), ScratchError> {
    if let Some((uid, gid)) = server_identity()? {
        std::os::unix::fs::chown(p, Some(uid), Some(gid))
            .map_err(|e| backend("chown", format!("{}: {e}", p.display())))?;
    }
    Ok(())
}

/// The postmaster's pid, from the first line of the cluster's `postmaster.pid`.
fn postmaster_pid(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join("data").join("postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()
}

/// Whether the process exists (as a zombie too: our child is reaped by tokio, a daemon by init).
fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// `secrets/password` (0600) under `dir`.
fn write_secret(secrets: &Path, password: &SecretString) -> Result<(), ScratchError> {
    std::fs::create_dir_all(secrets).map_err(|e| backend("create", e.to_string()))?;
    let file = secrets.join("password");
    std::fs::write(&file, password.expose_secret()).map_err(|e| backend("create", e.to_string()))?;
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| backend("create", e.to_string()))
}

/// Copies a data directory, keeping modes (PostgreSQL insists on 0700) and giving it to the server's user.
///
/// The directories and links are made first, then the files (about a thousand, mostly small: creating them is
/// the cost, and on a filesystem that has just deleted many files it is CPU spent finding free inodes) are
/// copied by one thread per core.
fn copy_tree(from: &Path, to: &Path) -> Result<(), ScratchError> {
    let mut files = Vec::new();
    make_dirs_and_links(from, to, &mut files)?;
    on_every_core(&files, |(source, target)| {
        std::fs::copy(source, target)
            .map_err(|e| backend("copy the template cluster", format!("{}: {e}", source.display())))?;
        chown_to_server(target)
    })
}

/// Removes `dir` and everything in it. A restored database is a few large files, whose cached pages the kernel
/// frees one by one as each is unlinked, and many small ones: the files go first, by one thread per core, the
/// largest dealt out first so the threads' shares are about even; then the directories.
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    let mut files = Vec::new();
    list_files(dir, &mut files)?;
    files.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
    on_every_core(&files, |(_, file)| match std::fs::remove_file(file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    })?;
    std::fs::remove_dir_all(dir)
}

/// Runs `work` on each item by one thread per core (at most four), the items dealt out in turn, so a list
/// sorted largest first is shared about evenly. A thread stops at its first error; one of them is returned.
fn on_every_core<T: Sync, E: Send>(items: &[T], work: impl Fn(&T) -> Result<(), E> + Sync) -> Result<(), E> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|first| {
                let work = &work;
                scope.spawn(move || items.iter().skip(first).step_by(threads).try_for_each(work))
            })
            .collect();
        workers.into_iter().try_for_each(|worker| worker.join().expect("a file thread panicked"))
    })
}

/// Every file and symbolic link under `dir` (links are not followed), with its length.
fn list_files(dir: &Path, files: &mut Vec<(u64, PathBuf)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            list_files(&entry.path(), files)?;
        } else {
            files.push((entry.metadata().map_or(0, |m| m.len()), entry.path()));
        }
    }
    Ok(())
}

/// The directory tree of `from` made under `to` (modes kept), its symbolic links made, its files listed.
fn make_dirs_and_links(from: &Path, to: &Path, files: &mut Vec<(PathBuf, PathBuf)>) -> Result<(), ScratchError> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |e: std::io::Error| backend("copy the template cluster", format!("{}: {e}", from.display()));
    std::fs::create_dir(to).map_err(fail)?;
    std::fs::set_permissions(
        to,
        std::fs::Permissions::from_mode(std::fs::metadata(from).map_err(fail)?.permissions().mode()),
    )
    .map_err(fail)?;
    chown_to_server(to)?;
    for entry in std::fs::read_dir(from).map_err(fail)? {
        let entry = entry.map_err(fail)?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(fail)?;
        if kind.is_dir() {
            make_dirs_and_links(&source, &target, files)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source).map_err(fail)?, &target).map_err(fail)?;
        } else {
            files.push((source, target));
        }
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

        let template = self.template().await?;
        let (from, to) = (template.join("data"), dir.join("data"));
        tokio::task::spawn_blocking(move || copy_tree(&from, &to))
            .await
            .map_err(|e| backend("copy the template cluster", e.to_string()))??;
        let password = SecretString::from(format!("{:032x}", rand::random::<u128>()));
        write_secret(&dir.join("secrets"), &password)?;
        std::fs::write(dir.join("expires_at"), spec.expires_at.to_rfc3339())
            .map_err(|e| backend("create", e.to_string()))?;
        // The port is free when picked, not necessarily when the server binds it: another pick, on failure.
        let mut started = Err(backend("start", "not tried".into()));
        for _ in 0..3 {
            std::fs::write(dir.join("port"), free_port()?.to_string()).map_err(|e| backend("create", e.to_string()))?;
            started = self.start(&dir).await;
            if started.is_ok() {
                break;
            }
        }
        started?;
        // The copy answers to the template's password until it is given the drill's own.
        let template_password = SecretString::from(
            std::fs::read_to_string(template.join("secrets/password")).map_err(|e| backend("create", e.to_string()))?,
        );
        let port = std::fs::read_to_string(dir.join("port")).map_err(|e| backend("create", e.to_string()))?;
        let endpoint = ScratchEndpoint {
            host: "127.0.0.1".into(),
            port: port.trim().parse().map_err(|_| backend("create", "bad port file".into()))?,
            user: ADMIN_USER.into(),
            password: template_password,
            maintenance_db: "postgres".into(),
            sslmode: "disable".into(),
        };
        let client =
            super::pg_wire::connect(&endpoint, "postgres").await.map_err(|e| backend("create", e.to_string()))?;
        let literal = password.expose_secret().replace('\'', "''");
        client.batch_execute(&format!("ALTER ROLE {ADMIN_USER} PASSWORD '{literal}'")).await.map_err(|e| {
            backend("create", format!("cannot set the drill's password: {}", super::pg_wire::describe(&e)))
        })?;
        std::fs::write(dir.join("ready"), "").map_err(|e| backend("create", e.to_string()))?;
        Ok(handle)
    }

    async fn poll(&self, handle: &ScratchHandle) -> Result<ScratchState, ScratchError> {
        let dir = self.dir(handle);
        if !dir.join("ready").exists() {
            return Err(ScratchError::Failed {
                id: handle.id.clone(),
                message: "the scratch cluster does not exist (swept or never made)".into(),
            });
        }
        // After a reboot the cluster is there but stopped.
        if !self.running(&dir).await {
            self.start(&dir).await?;
        }
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).map_err(|e| backend("read scratch cluster", format!("{name}: {e}")))
        };
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
            let expires = std::fs::read_to_string(dir.join("expires_at"))
                .ok()
                .and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok());
            // A directory without a readable expiry is not ours to judge, unless it is an abandoned half-made one.
            if expires.is_some_and(|e| e < now) {
                let handle = ScratchHandle { kind: "local".into(), id: path(&dir).to_string() };
                // One cluster that will not go does not keep the sweep from the others; the next sweep retries it.
                match self.destroy(&handle).await {
                    Ok(()) => swept.push(handle),
                    Err(e) => {
                        tracing::warn!(cluster = %handle.id, error = %e, "could not sweep an expired scratch cluster")
                    }
                }
            }
        }
        Ok(swept)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_benchmark_restores_under_the_same_settings_as_scratch_clusters() {
        let bench = include_str!("../../../infra/bench/run.py");
        for setting in super::RESTORE_SETTINGS.split("-c ").map(str::trim).filter(|s| !s.is_empty()) {
            assert!(bench.contains(&format!("\"{setting}\"")), "infra/bench/run.py's SCRATCH_SETTINGS lacks {setting}");
        }
    }
}
