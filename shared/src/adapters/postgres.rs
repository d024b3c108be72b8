//! The dumper on PostgreSQL's own client programs: `psql` (pre-flight), `pg_dumpall --roles-only`, `pg_dump`.
//!
//! Connection settings reach the programs through libpq's environment variables, and the password through a
//! 0600 passfile that lives only while the program runs: nothing secret is ever on a command line (visible to
//! every user in `ps`). Inherited `PG*` variables are removed first so the target's settings are the only ones.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use async_trait::async_trait;
use bytes::Bytes;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::domain::manifest::{DatabaseLocale, DumpSession};
use crate::domain::redact::redact;
use crate::domain::DatabaseAddress;
use crate::ports::{DumpError, DumpExit, Dumper, RolesDump, RunningDump, ServerFacts};

/// pg_dump waits this long for a table lock before giving up, rather than hanging behind a long DDL.
const LOCK_WAIT_TIMEOUT_MS: u32 = 300_000;
/// Seconds libpq waits for a connection.
const CONNECT_TIMEOUT_S: u32 = 15;
/// How much of a program's stderr is kept for the record and the alert.
pub(crate) const STDERR_TAIL_BYTES: usize = 4096;

pub struct PgDumper {
    bin_dir: Option<PathBuf>,
}

impl PgDumper {
    /// `bin_dir`: where the client programs are; `None` looks in the newest `/usr/lib/postgresql/N/bin`
    /// (Debian's layout), then on `PATH`.
    pub fn new(bin_dir: Option<PathBuf>) -> Self {
        PgDumper { bin_dir: bin_dir.or_else(newest_debian_bin_dir) }
    }

    pub(crate) fn program(&self, name: &str) -> PathBuf {
        match &self.bin_dir {
            Some(dir) => dir.join(name),
            None => PathBuf::from(name),
        }
    }

    /// A command for `program` connected to `target` with the password in a fresh passfile.
    fn command(
        &self,
        program: &str,
        target: &DatabaseAddress,
        password: &SecretString,
    ) -> Result<(Command, tempfile::NamedTempFile), DumpError> {
        let connection = Connection {
            host: &target.host,
            port: target.port,
            user: &target.user,
            database: &target.database,
            sslmode: target.sslmode.as_deref().unwrap_or("prefer"),
            sslrootcert: target.sslrootcert.as_deref(),
        };
        Ok(connection.command(&self.program(program), password)?)
    }

    /// Runs a short program to completion and returns its stdout, or its redacted stderr as the error.
    async fn run_to_end(
        &self,
        program: &str,
        args: &[&str],
        target: &DatabaseAddress,
        password: &SecretString,
    ) -> Result<Vec<u8>, DumpError> {
        let (mut cmd, _passfile) = self.command(program, target, password)?;
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        let output = cmd.output().await.map_err(|cause| DumpError::Spawn { program: program.into(), cause })?;
        if output.status.success() {
            Ok(output.stdout)
        } else {
            Err(DumpError::Failed {
                program: program.into(),
                status: output.status.to_string(),
                stderr_tail: redact(&tail(&output.stderr), &[password]),
            })
        }
    }

    pub(crate) async fn client_major_version(&self) -> Result<(u32, String), DumpError> {
        let output = Command::new(self.program("pg_dump"))
            .arg("--version")
            .output()
            .await
            .map_err(|cause| DumpError::Spawn { program: "pg_dump".into(), cause })?;
        // "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
        let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
        let version = text.split_whitespace().nth(2).unwrap_or_default().to_string();
        let major = version.split('.').next().and_then(|m| m.parse().ok()).ok_or_else(|| {
            DumpError::ClientUnusable(format!(
                "cannot read a version in {text:?} from `{} --version`; is it PostgreSQL's pg_dump?",
                self.program("pg_dump").display()
            ))
        })?;
        Ok((major, version))
    }
}

#[async_trait]
impl Dumper for PgDumper {
    async fn preflight(&self, target: &DatabaseAddress, password: &SecretString) -> Result<ServerFacts, DumpError> {
        // One row, fields separated by a unit separator (no setting contains one).
        let query =
            "SELECT concat_ws(chr(31), current_setting('server_version_num'), current_setting('server_version'), \
                     current_setting('TimeZone'), current_setting('bytea_output'), pg_encoding_to_char(encoding), \
                     current_setting('standard_conforming_strings'), datcollate, datctype, \
                     coalesce(to_jsonb(pg_database) ->> 'datlocprovider', 'c'), \
                     coalesce(to_jsonb(pg_database) ->> 'datlocale', to_jsonb(pg_database) ->> 'daticulocale', ''), \
                     coalesce((SELECT array_to_string(setconfig, chr(30)) FROM pg_db_role_setting \
                               WHERE setdatabase = pg_database.oid AND setrole = 0), ''), pg_is_in_recovery(), \
                     json_build_object('owner', pg_get_userbyid(datdba), \
                       'comment', shobj_description(oid, 'pg_database'), \
                       'grants', CASE WHEN datacl IS NOT NULL THEN (SELECT coalesce(json_agg(json_build_object( \
                         'grantee', CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, \
                         'privilege', a.privilege_type, 'grantable', a.is_grantable)), '[]') FROM aclexplode(datacl) a) END, \
                       'role_settings', (SELECT coalesce(json_agg(json_build_object('role', pg_get_userbyid(s.setrole), \
                         'setting', c)), '[]') FROM pg_db_role_setting s, unnest(s.setconfig) c \
                         WHERE s.setdatabase = pg_database.oid AND s.setrole <> 0)), \
                     current_setting('quote_all_identifiers')) \
                     FROM pg_database WHERE datname = current_database()";
        // pg_dump's own version is asked meanwhile: two client programs' start-up, one after the other, was most of
        // the pre-flight's time.
        let args = ["-X", "-w", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", query];
        let (out, client) = tokio::join!(self.run_to_end("psql", &args, target, password), self.client_major_version());
        let out = out?;
        // Only the line end goes: a field (the settings) may be empty, its separator kept.
        let text = String::from_utf8_lossy(&out).trim_end_matches(['\n', '\r']).to_string();
        let fields: Vec<&str> = text.split('\u{1f}').collect();
        let [num, version, time_zone, bytea_output, encoding, standard_strings, collate, ctype, provider, locale, settings, in_recovery, properties, quote_all] =
            fields.as_slice()
        else {
            return Err(DumpError::ClientUnusable(format!(
                "psql's answer to the pre-flight query is not what it asked for: {text:?}"
            )));
        };
        let server_major = num.parse::<u32>().map(|n| n / 10_000).unwrap_or(0);
        let (client_major, client_version) = client?;
        if server_major > client_major {
            return Err(DumpError::VersionMismatch(format!(
                "the server runs PostgreSQL {version} but pg_dump is {client_version}, and pg_dump cannot dump a newer \
                 server: attach the PostgreSQL {server_major} client layer or point BACKSTOP_PG_BIN_DIR at PostgreSQL \
                 {server_major}'s client programs"
            )));
        }
        let session = DumpSession {
            time_zone: time_zone.to_string(),
            bytea_output: bytea_output.to_string(),
            client_encoding: encoding.to_string(),
            // `start_dump` passes it to pg_dump as `--encoding`.
            encoding_pinned: true,
            standard_conforming_strings: standard_strings.to_string(),
            database_locale: Some(DatabaseLocale::from_catalog(provider, collate, ctype, locale)),
            // Settings are kept one to an element, split on a record separator no setting holds.
            database_settings: settings.split('\u{1e}').filter(|s| !s.is_empty()).map(str::to_string).collect(),
            source_in_recovery: *in_recovery == "t",
            quote_all_identifiers: *quote_all == "on",
            // JSON escapes every control character, so the field holds no separator of the row's. Unreadable, it
            // is left out (and said so): the backup itself does not depend on it.
            database_properties: serde_json::from_str(properties)
                .inspect_err(
                    |e| tracing::warn!(error = %e, "cannot read the database's owner, privileges and role settings"),
                )
                .ok(),
        };
        Ok(ServerFacts { version: version.to_string(), session })
    }

    async fn list_databases(
        &self,
        target: &DatabaseAddress,
        password: &SecretString,
    ) -> Result<Vec<String>, DumpError> {
        // Names may hold any character but NUL: one name per NUL-terminated record.
        let query = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname";
        let args = ["-X", "-w", "-A", "-t", "-0", "-v", "ON_ERROR_STOP=1", "-c", query];
        let out = self.run_to_end("psql", &args, target, password).await?;
        Ok(out
            .split(|b| *b == 0)
            .map(|name| String::from_utf8_lossy(name).trim_end_matches('\n').to_string())
            .filter(|name| !name.is_empty())
            .collect())
    }

    async fn dump_roles(&self, target: &DatabaseAddress, password: &SecretString) -> Result<RolesDump, DumpError> {
        let base = ["--roles-only", "--no-password", "-l", target.database.as_str()];
        match self.run_to_end("pg_dumpall", &base, target, password).await {
            Ok(sql) => Ok(RolesDump { sql: Bytes::from(sql), passwords_included: true }),
            // RDS (and any server where the user may not read pg_authid) refuses password hashes. The refusal's
            // wording depends on the server's language, so any failure gets one retry without them; if that
            // fails too, its error is the one that says why.
            Err(with_passwords) => {
                tracing::info!(error = %with_passwords, "pg_dumpall could not read role passwords; dumping roles without them");
                let mut args = base.to_vec();
                args.push("--no-role-passwords");
                let sql = self.run_to_end("pg_dumpall", &args, target, password).await?;
                Ok(RolesDump { sql: Bytes::from(sql), passwords_included: false })
            }
        }
    }

    async fn start_dump(
        &self,
        target: &DatabaseAddress,
        password: &SecretString,
        encoding: &str,
    ) -> Result<Box<dyn RunningDump>, DumpError> {
        let (mut cmd, passfile) = self.command("pg_dump", target, password)?;
        cmd.arg("--format=plain")
            .arg(format!("--encoding={encoding}"))
            .arg("--no-password")
            .arg(format!("--lock-wait-timeout={LOCK_WAIT_TIMEOUT_MS}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|cause| DumpError::Spawn { program: "pg_dump".into(), cause })?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let stderr_tail = tokio::spawn(read_tail(stderr));
        Ok(Box::new(PgDumpRun { child, stderr_tail, _passfile: passfile, password: password.clone() }))
    }
}

/// Where and as whom a client program connects.
pub(crate) struct Connection<'a> {
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub database: &'a str,
    pub sslmode: &'a str,
    pub sslrootcert: Option<&'a Path>,
}

impl Connection<'_> {
    /// The program with libpq's variables set for this connection and the password in a fresh 0600 passfile
    /// (kept alive by the caller while the program runs). Inherited `PG*` variables are removed first.
    pub(crate) fn command(
        &self,
        program: &Path,
        password: &SecretString,
    ) -> std::io::Result<(Command, tempfile::NamedTempFile)> {
        let passfile = write_passfile(password)?;
        let mut cmd = Command::new(program);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PG") {
                cmd.env_remove(&key);
            }
        }
        cmd.env("PGHOST", self.host)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", self.user)
            .env("PGDATABASE", self.database)
            .env("PGPASSFILE", passfile.path())
            .env("PGSSLMODE", self.sslmode)
            .env("PGAPPNAME", "backstop")
            .env("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT_S.to_string())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(root_cert) = self.sslrootcert {
            cmd.env("PGSSLROOTCERT", root_cert);
        }
        Ok((cmd, passfile))
    }
}

struct PgDumpRun {
    child: Child,
    stderr_tail: JoinHandle<Vec<u8>>,
    /// Deleted when the run is dropped, after pg_dump has read it.
    _passfile: tempfile::NamedTempFile,
    password: SecretString,
}

#[async_trait]
impl RunningDump for PgDumpRun {
    fn take_stdout(&mut self) -> Box<dyn std::io::Read + Send> {
        let stdout = self.child.stdout.take().expect("stdout is taken once");
        // Read on a blocking thread with plain reads: no async hop per chunk on the hot path.
        let fd = stdout.into_owned_fd().expect("a piped stdout has a descriptor");
        widen_pipe(&fd);
        Box::new(std::fs::File::from(fd))
    }

    async fn wait(mut self: Box<Self>) -> DumpExit {
        let status = self.child.wait().await;
        let stderr = (&mut self.stderr_tail).await.unwrap_or_default();
        let stderr_tail = redact(&tail(&stderr), &[&self.password]);
        match status {
            Ok(status) => DumpExit { success: status.success(), status: status.to_string(), stderr_tail },
            Err(e) => DumpExit { success: false, status: format!("unknown ({e})"), stderr_tail },
        }
    }
}

/// Asks for a 1 MiB pipe (Linux's default is 64 KiB): pg_dump writes on while the reader is briefly busy, so
/// neither it nor the server process behind it waits. Best effort: a smaller pipe is only slower.
fn widen_pipe(fd: &std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    // SAFETY: F_SETPIPE_SZ on a descriptor we own; failure is reported by the return value and ignored.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
}

/// Keeps the last `STDERR_TAIL_BYTES` of a stream (the end of pg_dump's stderr says why it stopped).
pub(crate) async fn read_tail(mut stream: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buffer[..n]);
                if kept.len() > 2 * STDERR_TAIL_BYTES {
                    kept.drain(..kept.len() - STDERR_TAIL_BYTES);
                }
            }
        }
    }
    kept
}

pub(crate) fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_TAIL_BYTES);
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}

/// A libpq passfile (`host:port:db:user:password`, wildcards) readable by its owner only.
fn write_passfile(password: &SecretString) -> std::io::Result<tempfile::NamedTempFile> {
    // tempfile creates files with mode 0600, which libpq insists on.
    let mut file = tempfile::Builder::new().prefix("backstop-pgpass-").tempfile()?;
    let escaped = password.expose_secret().replace('\\', "\\\\").replace(':', "\\:");
    writeln!(file, "*:*:*:*:{escaped}")?;
    file.flush()?;
    Ok(file)
}

/// Debian and Ubuntu install server and client programs under `/usr/lib/postgresql/<major>/bin`.
pub fn newest_debian_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("pg_dump").exists())
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, bin)| bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passfile_escapes_separators_and_is_private() {
        let file = write_passfile(&SecretString::from("a:b\\c".to_string())).unwrap();
        assert_eq!(std::fs::read_to_string(file.path()).unwrap(), "*:*:*:*:a\\:b\\\\c\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(file.path()).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
