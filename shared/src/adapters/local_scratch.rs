//! Scratch servers as throwaway local PostgreSQL clusters in `<base>/<drill id>/`, started with `pg_ctl` on a
//! free loopback port with the settings of a server that only ever restores once: no fsync, minimal WAL (a
//! table created or truncated in the loading transaction writes none), no autovacuum, room for index builds.
//!
//! The base is the configured `scratch_dir`. Without one, a cluster whose restored database fits with room to
//! spare goes to memory-backed storage (`/dev/shm/backstop-scratch`, when that is a tmpfs), and any other to
//! `<temp dir>/backstop-scratch`: nothing in a scratch cluster has to survive a reboot, and a disk filesystem
//! charges for what a drill does most, making a thousand files from the template, writing pages the kernel
//! then writes back, and deleting it all (on ext4 right after other deletions, 0.72 s to copy the template's
//! files, against 0.044 s on tmpfs). What fits, and which memory directory is used, is [`MemoryRoom::fits`]
//! and `ours`.
//!
//! `initdb` runs once per PostgreSQL version into `<disk base>/template-<major>-…/`; each drill's cluster is a
//! copy of it (a fifth of initdb's time), whose administrator password is then changed to the drill's own.
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

/// Memory-backed storage the default places clusters in, when it is a tmpfs.
const MEMORY_FILESYSTEM: &str = "/dev/shm";
/// Linux's `statfs` type of a tmpfs.
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// What `statfs` says of the filesystem holding a path.
#[derive(Debug, Clone, Copy)]
pub struct Filesystem {
    /// A tmpfs: what is written there is memory.
    pub memory_backed: bool,
    /// Bytes free to an unprivileged writer.
    pub free: u64,
}

impl Filesystem {
    /// The filesystem holding `path`; none when it cannot be asked.
    pub fn of(path: &Path) -> Option<Filesystem> {
        use std::os::unix::ffi::OsStrExt;
        let name = CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: statfs fills the zeroed struct it is given from a NUL-terminated path.
        let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statfs(name.as_ptr(), &mut stat) } != 0 {
            return None;
        }
        Some(Filesystem {
            memory_backed: stat.f_type as i64 == TMPFS_MAGIC,
            free: (stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64),
        })
    }
}

pub struct LocalScratch {
    /// The configured directory, which holds every cluster and template; none for the default places.
    configured: Option<PathBuf>,
    programs: PgDumper,
}

/// Room in memory-backed storage: what its filesystem has free, what the machine's (or the process's control
/// group's) memory has available, and what the clusters already there were sized for.
#[derive(Debug, Clone, Copy)]
pub struct MemoryRoom {
    pub filesystem_free: u64,
    pub memory_available: u64,
    /// The sizes (`storage_gib`) of the clusters already in the memory directory, in bytes: what they hold now
    /// is counted in the free space, what they will still load is not.
    pub claimed: u64,
}

impl MemoryRoom {
    /// A restored database of `gib` fits when, with what the clusters already there were sized for, it takes at
    /// most half of what the filesystem has free and a quarter of the available memory (tmpfs pages are
    /// memory): the servers' own memory, PostgreSQL's shared memory (also in /dev/shm) and the rest of the
    /// machine keep room, and a database that might not fit goes to disk.
    pub fn fits(&self, gib: u32) -> bool {
        let bytes = (u64::from(gib) << 30).saturating_add(self.claimed);
        bytes <= self.filesystem_free / 2 && bytes <= self.memory_available / 4
    }

    /// The room for a cluster in `base` on `filesystem` now, when that is a tmpfs; none otherwise, or when it
    /// cannot be read.
    pub fn of(filesystem: &Path, base: &Path) -> Option<MemoryRoom> {
        let Filesystem { memory_backed: true, free: filesystem_free } = Filesystem::of(filesystem)? else {
            return None;
        };
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        let machine = memory_available(&meminfo)?;
        let memory_available = control_group_room().map_or(machine, |group| group.min(machine));
        Some(MemoryRoom { filesystem_free, memory_available, claimed: claimed_in(base, Utc::now()) })
    }
}

/// `MemAvailable` of /proc/meminfo, in bytes.
fn memory_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// What the cgroup v2 memory limits of this process's group and the groups above it leave (`memory.max` −
/// `memory.current`, the least of them); none without a limit. In a container, tmpfs pages count against them,
/// and /proc/meminfo speaks of the host.
fn control_group_room() -> Option<u64> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let group = membership.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let mut dir = Path::new("/sys/fs/cgroup").join(group.trim_start_matches('/'));
    let mut least: Option<u64> = None;
    loop {
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
        if let Some(room) = read("memory.max").zip(read("memory.current")).and_then(|(m, c)| group_room(&m, &c)) {
            least = Some(least.map_or(room, |l| l.min(room)));
        }
        if dir == Path::new("/sys/fs/cgroup") || !dir.pop() {
            return least;
        }
    }
}

/// `memory.max` − `memory.current`, from the two files' text; none when the limit is `max`.
fn group_room(max: &str, current: &str) -> Option<u64> {
    let max: u64 = max.trim().parse().ok()?;
    Some(max.saturating_sub(current.trim().parse().ok()?))
}

/// The sizes the clusters in `base` were made for, in bytes (each keeps its `storage_gib`), but those past their
/// expiry: the sweep removes them, and one that will not go must not keep every later drill out of memory.
fn claimed_in(base: &Path, now: DateTime<Utc>) -> u64 {
    let Ok(entries) = std::fs::read_dir(base) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|cluster| expiry(cluster).is_none_or(|e| e >= now))
        .filter_map(|cluster| std::fs::read_to_string(cluster.join("storage_gib")).ok())
        .filter_map(|gib| gib.trim().parse::<u64>().ok())
        .fold(0u64, |sum, gib| sum.saturating_add(gib << 30))
}

/// When the cluster in `dir` expires, from its `expires_at`; none when that cannot be read.
fn expiry(dir: &Path) -> Option<DateTime<chrono::FixedOffset>> {
    DateTime::parse_from_rfc3339(std::fs::read_to_string(dir.join("expires_at")).ok()?.trim()).ok()
}

/// Whether `dir` is a directory this process may keep clusters in and sweep: a real directory (not a link),
/// owned by this process's user and writable by no one else. /dev/shm and /tmp are writable by every local
/// user, and what another put there (a link, a template with its own `pg_hba.conf`, an `expires_at`, a pid file)
/// must not steer what is copied, started, signalled or deleted.
fn ours(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_dir() && m.uid() == euid() && m.mode() & 0o022 == 0)
}

/// Makes `dir` when it is missing: private while it is made (the umask could leave it open to others for a
/// moment), then 0755, which the server's user needs to enter it.
fn make_missing(dir: &Path) {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() && std::fs::DirBuilder::new().mode(0o700).create(dir).is_ok() {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    }
}

/// This process's user id.
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

impl LocalScratch {
    /// `base`: where clusters live; none for the default (memory-backed storage when a restore fits, else
    /// `<temp dir>/backstop-scratch`).
    pub fn new(base: Option<PathBuf>, bin_dir: Option<PathBuf>) -> Self {
        LocalScratch { configured: base, programs: PgDumper::new(bin_dir) }
    }

    /// The memory directory clusters that fit go to; none when a directory is configured.
    fn memory_candidate(&self) -> Option<PathBuf> {
        self.configured.is_none().then(|| Path::new(MEMORY_FILESYSTEM).join("backstop-scratch"))
    }

    /// The disk directories, in the order tried: the configured one; by default `<temp dir>/backstop-scratch`,
    /// then `…/backstop-scratch-<uid>` for when the first is another user's.
    fn disk_candidates(&self) -> Vec<PathBuf> {
        match &self.configured {
            Some(dir) => vec![dir.clone()],
            None => {
                let shared = std::env::temp_dir().join("backstop-scratch");
                let own = std::env::temp_dir().join(format!("backstop-scratch-{}", euid()));
                vec![shared, own]
            }
        }
    }

    /// Every directory a cluster of this scratch may be in: a configured one as it is, the default ones only
    /// when they are [`ours`].
    fn bases(&self) -> Vec<PathBuf> {
        match &self.configured {
            Some(dir) => vec![dir.clone()],
            None => self.memory_candidate().into_iter().chain(self.disk_candidates()).filter(|d| ours(d)).collect(),
        }
    }

    /// Where templates and clusters on disk go, made when missing: the configured directory, or the first
    /// default one that is [`ours`].
    fn disk_dir(&self) -> Result<PathBuf, ScratchError> {
        if let Some(dir) = &self.configured {
            std::fs::create_dir_all(dir)
                .map_err(|e| backend("scratch directory", format!("{}: {e}", dir.display())))?;
            return Ok(dir.clone());
        }
        let candidates = self.disk_candidates();
        for dir in &candidates {
            make_missing(dir);
            if ours(dir) {
                return Ok(dir.clone());
            }
        }
        let names: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
        Err(backend(
            "scratch directory",
            format!(
                "none of {} is a directory of this user's that no one else may write (each is a link, or another \
                 user's): remove them, or set scratch_dir",
                names.join(", ")
            ),
        ))
    }

    /// The memory directory, made when missing, when it is [`ours`] to use; none otherwise (with a warning when
    /// it exists and is not).
    fn memory_dir(&self) -> Option<PathBuf> {
        let memory = self.memory_candidate()?;
        make_missing(&memory);
        if ours(&memory) {
            return Some(memory);
        }
        if memory.exists() {
            tracing::warn!(
                dir = %memory.display(),
                "not placing scratch clusters in memory: the directory is not a directory owned by this user and \
                 writable by no one else"
            );
        }
        None
    }

    /// Makes the cluster in `dir` (a base's `<drill id>`): its expiry first, so whatever a crash leaves of it is
    /// the sweep's; then the template's copy, started, with the drill's own password.
    async fn make(&self, dir: &Path, spec: &ScratchSpec) -> Result<ScratchHandle, ScratchError> {
        std::fs::create_dir(dir).map_err(|e| backend("create", format!("{}: {e}", dir.display())))?;
        let handle = ScratchHandle { kind: "local".into(), id: path(dir).to_string() };
        std::fs::write(dir.join("expires_at"), spec.expires_at.to_rfc3339())
            .map_err(|e| backend("create", format!("{}: {e}", dir.display())))?;
        std::fs::write(dir.join("storage_gib"), spec.storage_gib.to_string())
            .map_err(|e| backend("create", format!("{}: {e}", dir.display())))?;
        chown_to_server(dir)?;

        let template = self.template().await?;
        let (from, to) = (template.join("data"), dir.join("data"));
        tokio::task::spawn_blocking(move || copy_tree(&from, &to))
            .await
            .map_err(|e| backend("copy the template cluster", e.to_string()))??;
        let password = SecretString::from(format!("{:032x}", rand::random::<u128>()));
        write_secret(&dir.join("secrets"), &password)?;
        // The port is free when picked, not necessarily when the server binds it: another pick, on failure.
        let mut started = Err(backend("start", "not tried".into()));
        for _ in 0..3 {
            std::fs::write(dir.join("port"), free_port()?.to_string()).map_err(|e| backend("create", e.to_string()))?;
            started = self.start(dir).await;
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

    /// [`Self::make`]; on an error, what was made is removed: nothing half-made is left to hold memory or disk
    /// until someone removes it by hand.
    async fn make_or_remove(&self, dir: &Path, spec: &ScratchSpec) -> Result<ScratchHandle, ScratchError> {
        let made = self.make(dir, spec).await;
        if made.is_err() {
            let _ = self.stop_and_remove(dir).await;
        }
        made
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
        cluster_postmaster(dir).is_some()
    }

    /// The initdb'd data directory drills copy, made once per PostgreSQL version (and programs directory).
    async fn template(&self) -> Result<PathBuf, ScratchError> {
        let version = self.run("initdb", &["--version"], false).await?;
        let program = self.programs.program("initdb");
        let digest = sha2::Sha256::digest(format!("{}\n{}", program.display(), version.trim()).as_bytes());
        let major = version.split_whitespace().nth(2).and_then(|v| v.split('.').next()).unwrap_or("x").to_string();
        let disk = self.disk_dir()?;
        let dir = disk.join(format!("template-{major}-{}", &hex::encode(digest)[..12]));
        if dir.join("ready").exists() {
            return Ok(dir);
        }
        // One maker at a time; a lock older than initdb could take is a crashed maker's.
        let lock = disk.join(format!("{}.lock", dir.file_name().and_then(|n| n.to_str()).unwrap_or("template")));
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
        let running = cluster_postmaster(dir);
        if let Some(pid) = running {
            // An immediate shutdown (what `pg_ctl -m immediate` sends): nothing here is worth a checkpoint.
            // SAFETY: signalling the scratch server's postmaster, whose pid its own pid file gives.
            unsafe { libc::kill(pid, libc::SIGQUIT) };
        }
        // Its data files go while it exits, all but the pid file by which its exit is seen: a file a process
        // still has open is freed when it closes it, and whatever it writes meanwhile goes with the rest once it
        // has exited. Only from a real directory (`real_directory`).
        let data = dir.join("data");
        let emptying = tokio::task::spawn_blocking(move || {
            if !real_directory(&data) {
                return Ok(());
            }
            remove_files(&data, |file| file.file_name() == Some(std::ffi::OsStr::new("postmaster.pid")))
        });
        if let Some(pid) = running {
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
        let emptied = emptying.await.map_err(|e| backend("remove scratch cluster", e.to_string()))?;
        let removing = dir.to_path_buf();
        let removed = match emptied {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => tokio::task::spawn_blocking(move || remove_tree(&removing))
                .await
                .map_err(|e| backend("remove scratch cluster", e.to_string()))?,
        };
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

/// The pid of the postmaster serving the cluster in `dir`: the one its pid file names, if that process runs in
/// the cluster's data directory (a postmaster's working directory). The pid file is the server user's to write
/// (and a restored dump's, running as it), and after a reboot it names a pid another process may have since
/// taken: neither is signalled. A postmaster that has exited (a zombie has no working directory) has none.
fn cluster_postmaster(dir: &Path) -> Option<i32> {
    let pid = postmaster_pid(dir).filter(|pid| alive(*pid))?;
    let data = dir.join("data");
    if !real_directory(&data) {
        return None;
    }
    match std::fs::read_link(format!("/proc/{pid}/cwd")) {
        Ok(cwd) => (std::fs::canonicalize(&data).ok()? == cwd).then_some(pid),
        // Another user's process may not be looked into (without CAP_SYS_PTRACE, as in most containers), and
        // without a /proc none can: the pid file is then all there is to go by.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied || !Path::new("/proc/self/cwd").exists() => {
            Some(pid)
        }
        // No working directory: it has exited (a zombie), or is gone.
        Err(_) => None,
    }
}

/// Whether `path` is a directory itself, not a link to one: the server's user may swap a cluster's `data` for
/// a link to elsewhere, which nothing here must follow.
fn real_directory(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
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

/// Removes `dir` and everything in it: its files, then its directories, then its `expires_at`, so a cluster a
/// crash left half-removed is still the sweep's to finish.
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    let expiry = dir.join("expires_at");
    remove_files(dir, |file| file == expiry)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    std::fs::remove_dir_all(dir)
}

/// Removes the files under `dir` that `keep` does not hold back. A restored database is a few large files, whose
/// cached pages the kernel frees one by one as each is unlinked, and many small ones: they go by one thread per
/// core, the largest dealt out first so the threads' shares are about even.
fn remove_files(dir: &Path, keep: impl Fn(&Path) -> bool) -> std::io::Result<()> {
    let mut files = Vec::new();
    list_files(dir, &mut files)?;
    files.retain(|(_, file)| !keep(file));
    files.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
    on_every_core(&files, |(_, file)| match std::fs::remove_file(file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    })
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
    fn ready_when_made(&self) -> bool {
        true
    }

    async fn create(&self, spec: &ScratchSpec) -> Result<ScratchHandle, ScratchError> {
        if !safe_name(&spec.drill_id) {
            return Err(backend("create", format!("drill id {:?} cannot name a directory", spec.drill_id)));
        }
        let places: Vec<PathBuf> = self.bases().iter().map(|base| base.join(&spec.drill_id)).collect();
        // Asked again (a resumed drill), the cluster already made is the answer, wherever it was put.
        if let Some(made) = places.iter().find(|dir| dir.join("ready").exists()) {
            return Ok(ScratchHandle { kind: "local".into(), id: path(made).to_string() });
        }
        // A half-made cluster (a crash during the copy) is started over.
        for half_made in &places {
            self.stop_and_remove(half_made).await?;
        }
        let disk = self.disk_dir()?.join(&spec.drill_id);
        let memory = self.memory_dir().and_then(|memory| {
            let room = MemoryRoom::of(Path::new(MEMORY_FILESYSTEM), &memory)?;
            room.fits(spec.storage_gib).then(|| memory.join(&spec.drill_id))
        });
        if let Some(dir) = memory {
            match self.make_or_remove(&dir, spec).await {
                Ok(handle) => return Ok(handle),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot make the scratch cluster in memory: on disk")
                }
            }
        }
        self.make_or_remove(&disk, spec).await
    }

    async fn poll(&self, handle: &ScratchHandle) -> Result<ScratchState, ScratchError> {
        let dir = self.dir(handle);
        if !dir.join("ready").exists() {
            return Err(ScratchError::Failed {
                id: handle.id.clone(),
                message: "the scratch cluster does not exist (swept, lost at a reboot from memory, or never made)"
                    .into(),
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
        let mut clusters = Vec::new();
        let memory = self.memory_candidate();
        for base in self.bases() {
            match std::fs::read_dir(&base) {
                Ok(entries) => clusters.extend(entries.filter_map(Result::ok)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // The memory directory only holds what fitted: one that cannot be read does not stop the sweep of
                // the others. A disk directory that cannot be read is a failed sweep.
                Err(e) if memory.as_ref() == Some(&base) => {
                    tracing::warn!(dir = %base.display(), error = %e, "cannot sweep the memory scratch directory")
                }
                Err(e) => return Err(backend("sweep", format!("{}: {e}", base.display()))),
            }
        }
        let mut swept = Vec::new();
        for entry in clusters {
            let dir = entry.path();
            // A directory without a readable expiry is not ours to judge (a template, a lock).
            if expiry(&dir).is_some_and(|e| e < now) {
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
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn a_restore_fits_in_memory_only_with_room_to_spare() {
        let roomy = MemoryRoom { filesystem_free: 12 * GIB, memory_available: 22 * GIB, claimed: 0 };
        assert!(roomy.fits(1));
        assert!(roomy.fits(5));
        // More than a quarter of the available memory, or more than half the filesystem's free space: disk.
        assert!(!roomy.fits(6));
        assert!(!MemoryRoom { filesystem_free: 3 * GIB, memory_available: 64 * GIB, claimed: 0 }.fits(2));
        // What the clusters already there were sized for counts: two drills at once do not each take half.
        assert!(!MemoryRoom { claimed: 3 * GIB, ..roomy }.fits(3));
        assert!(MemoryRoom { claimed: 3 * GIB, ..roomy }.fits(2));
    }

    #[test]
    fn by_default_clusters_go_to_memory_or_the_temp_dir_and_a_configured_directory_holds_every_one() {
        let default = LocalScratch::new(None, None);
        assert_eq!(default.memory_candidate(), Some(PathBuf::from("/dev/shm/backstop-scratch")));
        assert_eq!(
            default.disk_candidates(),
            [
                std::env::temp_dir().join("backstop-scratch"),
                std::env::temp_dir().join(format!("backstop-scratch-{}", euid()))
            ]
        );
        let configured = LocalScratch::new(Some(PathBuf::from("/srv/drills")), None);
        assert_eq!(configured.memory_candidate(), None);
        assert_eq!(configured.memory_dir(), None);
        assert_eq!(configured.disk_candidates(), [PathBuf::from("/srv/drills")]);
        assert_eq!(configured.bases(), [PathBuf::from("/srv/drills")]);
    }

    #[test]
    fn available_memory_is_read_from_meminfo_and_a_control_groups_limit() {
        let meminfo = "MemTotal:       24000000 kB\nMemFree:        20000000 kB\nMemAvailable:   22000000 kB\n";
        assert_eq!(memory_available(meminfo), Some(22_000_000 * 1024));
        assert_eq!(memory_available("MemTotal: 1 kB\n"), None);
        assert_eq!(group_room("4294967296\n", "1073741824\n"), Some(3 << 30));
        assert_eq!(group_room("max\n", "1073741824\n"), None);
    }

    #[test]
    fn a_directory_is_ours_only_when_it_is_a_real_one_we_own_that_no_one_else_may_write() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("scratch");
        make_missing(&dir);
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o755);
        assert!(ours(&dir));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(!ours(&dir), "writable by others");
        let link = parent.path().join("link");
        std::os::unix::fs::symlink(parent.path(), &link).unwrap();
        assert!(!ours(&link), "a link");
        assert!(!ours(&parent.path().join("missing")));
    }

    #[test]
    fn what_the_clusters_in_a_directory_were_sized_for_is_summed() {
        let base = tempfile::tempdir().unwrap();
        for (name, gib) in [("a", "2"), ("b", "3\n")] {
            std::fs::create_dir(base.path().join(name)).unwrap();
            std::fs::write(base.path().join(name).join("storage_gib"), gib).unwrap();
        }
        std::fs::create_dir(base.path().join("template-15-x")).unwrap();
        let now = Utc::now();
        assert_eq!(claimed_in(base.path(), now), 5 * GIB);
        // One past its expiry is the sweep's, and no longer counts.
        std::fs::write(base.path().join("b").join("expires_at"), (now - chrono::Duration::minutes(1)).to_rfc3339())
            .unwrap();
        assert_eq!(claimed_in(base.path(), now), 2 * GIB);
        assert_eq!(claimed_in(&base.path().join("missing"), now), 0);
    }

    #[test]
    fn a_clusters_data_files_go_but_for_those_held_back_then_its_whole_tree() {
        let base = tempfile::tempdir().unwrap();
        let cluster = base.path().join("drill");
        std::fs::create_dir_all(cluster.join("data/base/5")).unwrap();
        for (file, bytes) in [("data/base/5/16384", 3000), ("data/base/5/16385", 10), ("data/postmaster.pid", 5)] {
            std::fs::write(cluster.join(file), vec![b'x'; bytes]).unwrap();
        }
        std::fs::write(cluster.join("expires_at"), "2026-12-05T00:00:00Z").unwrap();
        std::os::unix::fs::symlink("/nowhere", cluster.join("data/link")).unwrap();

        remove_files(&cluster.join("data"), |file| file.ends_with("postmaster.pid")).unwrap();
        let mut left = Vec::new();
        list_files(&cluster, &mut left).unwrap();
        let mut left: Vec<_> = left.into_iter().map(|(_, f)| f.strip_prefix(&cluster).unwrap().to_owned()).collect();
        left.sort();
        assert_eq!(left, [PathBuf::from("data/postmaster.pid"), PathBuf::from("expires_at")], "the link went too");

        remove_tree(&cluster).unwrap();
        assert!(!cluster.exists());
        assert_eq!(remove_tree(&cluster).unwrap_err().kind(), std::io::ErrorKind::NotFound, "gone is told apart");
    }

    #[test]
    fn only_a_process_running_in_the_clusters_data_directory_is_taken_for_its_postmaster() {
        let base = tempfile::tempdir().unwrap();
        let cluster = base.path().join("drill");
        std::fs::create_dir_all(cluster.join("data")).unwrap();
        let pid_file = |pid: u32| std::fs::write(cluster.join("data/postmaster.pid"), format!("{pid}\n")).unwrap();
        let mut postmaster =
            std::process::Command::new("sleep").arg("30").current_dir(cluster.join("data")).spawn().unwrap();
        pid_file(postmaster.id());
        assert_eq!(cluster_postmaster(&cluster), Some(postmaster.id() as i32));

        // A pid taken since by a process running elsewhere (this test's own): not signalled.
        pid_file(std::process::id());
        assert_eq!(cluster_postmaster(&cluster), None);

        // A data directory made a link to another: not followed, whatever runs there.
        pid_file(postmaster.id());
        std::fs::rename(cluster.join("data"), base.path().join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(base.path().join("elsewhere"), cluster.join("data")).unwrap();
        assert_eq!(cluster_postmaster(&cluster), None);
        postmaster.kill().unwrap();
        postmaster.wait().unwrap();
    }

    #[tokio::test]
    async fn removing_a_cluster_whose_data_directory_was_made_a_link_removes_the_link_not_what_it_points_to() {
        let base = tempfile::tempdir().unwrap();
        let (cluster, elsewhere) = (base.path().join("drill"), base.path().join("elsewhere"));
        std::fs::create_dir_all(&cluster).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("precious"), "keep").unwrap();
        std::os::unix::fs::symlink(&elsewhere, cluster.join("data")).unwrap();
        LocalScratch::new(Some(base.path().to_path_buf()), None).stop_and_remove(&cluster).await.unwrap();
        assert!(!cluster.exists());
        assert_eq!(std::fs::read_to_string(elsewhere.join("precious")).unwrap(), "keep");
    }

    #[test]
    fn the_benchmark_restores_under_the_same_settings_as_scratch_clusters() {
        let bench = include_str!("../../../infra/bench/run.py");
        for setting in RESTORE_SETTINGS.split("-c ").map(str::trim).filter(|s| !s.is_empty()) {
            assert!(bench.contains(&format!("\"{setting}\"")), "infra/bench/run.py's SCRATCH_SETTINGS lacks {setting}");
        }
    }
}
