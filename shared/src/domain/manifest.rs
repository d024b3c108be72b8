//! The manifest: a small JSON object stored beside each dump so the bucket describes itself even if the
//! catalog table is lost. It holds everything a restore (or `backstop verify`) needs to check the dump.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::codec::Codec;

use super::backup::{BackupId, ObjectRef};
use super::dump_layout::DumpLayout;
use super::fingerprint::Fingerprint;

/// 2: fingerprint scheme v2, the dump's layout and its session settings (format 1 had neither).
pub const MANIFEST_FORMAT: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// `backstop <version>` that wrote it.
    pub tool: String,
    pub target: ManifestTarget,
    pub backup_id: BackupId,
    /// When pg_dump started: its snapshot is taken within moments of this.
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub server_version: Option<String>,
    pub pg_dump_version: Option<String>,
    pub codec: Codec,
    pub compression_level: i32,
    /// Bytes of SQL pg_dump wrote.
    pub raw_bytes: u64,
    pub dump: ObjectRef,
    pub roles: RolesRef,
    pub fingerprint: Fingerprint,
    /// Where each table's rows sit in the stored object, for a parallel restore (format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<DumpLayout>,
    /// The session settings the dump's text depends on (format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<DumpSession>,
    /// The tablespaces the dump puts objects in (its `SET default_tablespace`): a server restored into needs
    /// them, and a drill makes them on its scratch server. Absent: none (or a manifest from before this).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tablespaces: Vec<String>,
    /// The exact commands that restore this backup with stock tools.
    pub restore_hint: String,
}

/// Settings of pg_dump's session that shape its output and that pg_dump does not set itself: a restored copy is
/// read back under the same ones, or equal data would read differently (timestamps in another zone, `bytea` in
/// another format). pg_dump sets DateStyle, IntervalStyle and extra_float_digits itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpSession {
    pub time_zone: String,
    pub bytea_output: String,
    /// The encoding the dump is written in (its `SET client_encoding`).
    pub client_encoding: String,
    /// pg_dump was told to write in `client_encoding` (`--encoding`), whatever `client_encoding` the database or
    /// role set for sessions; a drill's schema dump of the copy is then told the same. Absent in manifests from
    /// before: their dump is in the session's encoding, and so is the copy's (its database settings applied).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encoding_pinned: bool,
    /// `on` or `off`: pg_dump writes its string literals (and its header's `SET`) by it. Manifests from before
    /// it was recorded say nothing: `on`, the default since PostgreSQL 9.1.
    #[serde(default = "on")]
    pub standard_conforming_strings: String,
    /// The source database's locale; absent in manifests from before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_locale: Option<DatabaseLocale>,
    /// The source database's own settings (`ALTER DATABASE … SET`), as `name=value` the way the catalog keeps
    /// them: pg_dump leaves them out, and what runs on a copy (user checks) expects them (a `search_path`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub database_settings: Vec<String>,
    /// The source was a hot standby (in recovery) when dumped. pg_dump then leaves out the rows of every unlogged
    /// table (a standby has none: they are neither logged nor replicated), so the copy has those tables empty.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub source_in_recovery: bool,
    /// `quote_all_identifiers` was on for pg_dump's session (set for its role or at the server): the server then
    /// quotes every identifier in the definitions it writes (views, functions), so the copy's schema dump is told
    /// the same.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quote_all_identifiers: bool,
    /// The source database's owner, comment, privileges and its roles' settings in it, which the dump leaves
    /// out; absent in manifests from before they were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_properties: Option<super::database_properties::DatabaseProperties>,
}

/// Settings a copy does not take from the source database: they govern who a connection is, what code it
/// loads and how long it may wait (a `role`, an `auto_explain` library the scratch server may lack, a five-second
/// `statement_timeout`), which the copy's checks would otherwise inherit, and not how the data reads.
const NOT_FOR_A_COPY: [&str; 9] = [
    "role",
    "session_authorization",
    "session_preload_libraries",
    "local_preload_libraries",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "idle_session_timeout",
    "transaction_timeout",
];

/// Whether a restored copy takes this one of [`DumpSession::database_settings`] (`name=value`).
pub fn for_a_copy(setting: &str) -> bool {
    !NOT_FOR_A_COPY.contains(&setting_name(setting).as_str())
}

/// The name of a setting as the catalog keeps it (`name=value`), in lower case.
pub fn setting_name(setting: &str) -> String {
    setting.split_once('=').map_or(setting, |(name, _)| name).to_ascii_lowercase()
}

/// `ALTER DATABASE … SET` for one of [`DumpSession::database_settings`] (`name=value`), as pg_dumpall writes it:
/// a list setting's value (`search_path=app, "My Schema"`) is already SQL, any other is quoted as a string.
pub fn alter_database_set(database_sql_name: &str, setting: &str) -> Option<String> {
    Some(format!("ALTER DATABASE {database_sql_name} {}", set_clause(setting)?))
}

/// `SET name = value` for a setting as the catalog keeps it (`name=value`): a list setting's value is already
/// SQL, any other is quoted as a string. `None` when the name is not a setting's.
pub fn set_clause(setting: &str) -> Option<String> {
    let (name, value) = setting.split_once('=')?;
    const LIST_SETTINGS: [&str; 6] = [
        "local_preload_libraries",
        "search_path",
        "session_preload_libraries",
        "shared_preload_libraries",
        "temp_tablespaces",
        "unix_socket_directories",
    ];
    let name_ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if !name_ok {
        return None;
    }
    let value = if LIST_SETTINGS.contains(&name.to_ascii_lowercase().as_str()) {
        if value.is_empty() {
            "''".to_string()
        } else {
            value.to_string()
        }
    } else {
        crate::domain::sql::quote_literal(value)
    };
    Some(format!("SET {name} = {value}"))
}

/// How the source database orders and classifies text (`pg_database`'s locale columns). Its check constraints,
/// partition bounds and indexes hold under it: `'Ärger' < 'b'` in German, not in C, so a copy made under
/// another collation may refuse rows the source holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseLocale {
    /// `libc`, `icu`, or `builtin` (PostgreSQL 17).
    pub provider: String,
    pub collate: String,
    pub ctype: String,
    /// The ICU or builtin provider's own locale (`daticulocale`; `datlocale` from PostgreSQL 17).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
}

impl DatabaseLocale {
    /// From `pg_database`'s `datlocprovider` code (`c`, `i`, `b`; absent before PostgreSQL 15: libc).
    pub fn from_catalog(provider: &str, collate: &str, ctype: &str, locale: &str) -> Self {
        let provider = match provider {
            "i" => "icu",
            "b" => "builtin",
            _ => "libc",
        };
        DatabaseLocale {
            provider: provider.into(),
            collate: collate.into(),
            ctype: ctype.into(),
            locale: (!locale.is_empty()).then(|| locale.into()),
        }
    }
}

/// Whether an encoding's name (as `pg_encoding_to_char` or a dump's `SET client_encoding` spells it) is UTF-8.
pub fn is_utf8(encoding: &str) -> bool {
    matches!(encoding.to_ascii_uppercase().as_str(), "UTF8" | "UTF-8" | "UNICODE")
}

fn on() -> String {
    "on".into()
}

impl Default for DumpSession {
    fn default() -> Self {
        DumpSession {
            time_zone: "UTC".into(),
            bytea_output: "hex".into(),
            client_encoding: "UTF8".into(),
            encoding_pinned: false,
            standard_conforming_strings: on(),
            database_locale: None,
            database_settings: Vec::new(),
            source_in_recovery: false,
            quote_all_identifiers: false,
            database_properties: None,
        }
    }
}

/// Where the database lived (no credentials: those never leave the secret store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestTarget {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub database: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolesRef {
    #[serde(flatten)]
    pub object: ObjectRef,
    /// False where the server forbids reading password hashes (RDS): roles restore without passwords.
    pub passwords_included: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sources_database_settings_are_set_as_pg_dumpall_writes_them() {
        let set = |s: &str| alter_database_set("\"db\"", s);
        assert_eq!(
            set("search_path=app, \"My Schema\"").unwrap(),
            "ALTER DATABASE \"db\" SET search_path = app, \"My Schema\""
        );
        assert_eq!(set("TimeZone=Asia/Kathmandu").unwrap(), "ALTER DATABASE \"db\" SET TimeZone = 'Asia/Kathmandu'");
        assert_eq!(set("app.greeting=it's").unwrap(), "ALTER DATABASE \"db\" SET app.greeting = 'it''s'");
        assert_eq!(set("x; DROP TABLE t=1"), None, "a name that is no setting's is refused");
        assert_eq!(set("no value"), None);
        assert!(for_a_copy("search_path=app") && for_a_copy("TimeZone=UTC"));
        assert!(
            !for_a_copy("statement_timeout=5s")
                && !for_a_copy("ROLE=app")
                && !for_a_copy("session_preload_libraries=auto_explain")
        );
    }
}
