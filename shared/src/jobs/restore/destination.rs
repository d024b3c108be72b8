//! What a restore asks of the server it writes into before it writes: is this the backup's own source
//! database, does the database exist and hold anything, which of the backup's roles the server lacks. Each
//! question is one read-only query through the restorer's `check` (true or not).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::config::TargetConfig;
use crate::domain::sql::quote_literal as literal;
use crate::domain::Manifest;
use crate::ports::{Restorer, ScratchEndpoint};

/// Each question is small; a server that cannot answer it in this long is not one to restore into.
const QUESTION_TIMEOUT: Duration = Duration::from_secs(30);

/// The destination database, before the restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseState {
    Missing,
    /// Exists, with no table, view, sequence, function, type or schema of its own (extensions beyond plpgsql
    /// count as something).
    Empty,
    /// Exists and holds something: what, in words.
    Holds(String),
}

async fn ask(restorer: &dyn Restorer, server: &ScratchEndpoint, database: &str, sql: &str) -> Result<bool, String> {
    restorer.check(server, database, sql, QUESTION_TIMEOUT).await.map_err(|e| e.to_string())
}

pub async fn database_state(
    restorer: &dyn Restorer,
    server: &ScratchEndpoint,
    database: &str,
) -> Result<DatabaseState, String> {
    let exists = format!("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = {})", literal(database));
    if !ask(restorer, server, &server.maintenance_db, &exists).await? {
        return Ok(DatabaseState::Missing);
    }
    // What the dump would create, outside the catalogs: user schemas hold relations, routines and types.
    let user_schema = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' \
                       AND n.nspname NOT LIKE 'pg\\_temp\\_%'";
    let questions = [
        (
            "tables, views or sequences",
            format!("SELECT NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {user_schema})"),
        ),
        (
            "functions",
            format!("SELECT NOT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {user_schema} \
                     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e'))"),
        ),
        (
            "schemas other than public",
            "SELECT NOT EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname NOT IN ('public', 'pg_catalog', 'information_schema') \
             AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%')"
                .to_string(),
        ),
        ("extensions other than plpgsql", "SELECT NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname <> 'plpgsql')".into()),
    ];
    let mut held = Vec::new();
    for (what, sql) in questions {
        if !ask(restorer, server, database, &sql).await? {
            held.push(what);
        }
    }
    Ok(if held.is_empty() { DatabaseState::Empty } else { DatabaseState::Holds(held.join(", ")) })
}

/// The roles a `pg_dumpall --roles-only` script creates, in its order.
pub fn role_names(script: &str) -> Vec<String> {
    script
        .lines()
        .filter_map(|line| line.strip_prefix("CREATE ROLE "))
        .filter_map(|rest| rest.trim_end().strip_suffix(';'))
        .map(unquote_identifier)
        .collect()
}

/// The statements of a roles script (`pg_dumpall --roles-only`) about the roles in `new` only: their
/// `CREATE ROLE`, `ALTER ROLE` (attributes, password, settings), comments and labels, and the memberships
/// granted to them. Nothing in it alters a role of the server that is not in `new`.
pub fn roles_script_for(script: &str, new: &[String]) -> String {
    use crate::domain::sql::splitter::{split_all, Piece};
    use crate::domain::sql::tokens::tokens;
    let Ok(pieces) = split_all(script.as_bytes()) else {
        // A script psql could not split is not one to run piecemeal: nothing of it runs.
        return String::new();
    };
    let mut kept = Vec::new();
    for piece in pieces {
        let Piece::Statement(statement) = piece else { continue };
        let text = String::from_utf8_lossy(&statement).into_owned();
        let toks = tokens(&text);
        let word = |i: usize| toks.get(i).map(|t| t.text.to_ascii_uppercase()).unwrap_or_default();
        let ident = |i: usize| toks.get(i).and_then(|t| t.ident());
        let subject = match (word(0).as_str(), word(1).as_str()) {
            ("SET", _) => {
                kept.push(text);
                continue;
            }
            ("CREATE" | "ALTER", "ROLE" | "USER") => ident(2),
            ("COMMENT", "ON") if word(2) == "ROLE" => ident(3),
            ("SECURITY", "LABEL") => toks.iter().position(|t| t.is_word("ROLE")).and_then(|i| ident(i + 1)),
            // GRANT role TO member: the member is the role it changes.
            ("GRANT", _) => toks.iter().position(|t| t.is_word("TO")).and_then(|i| ident(i + 1)),
            _ => None,
        };
        if subject.is_some_and(|s| new.contains(&s)) {
            kept.push(text);
        }
    }
    kept.join("\n") + "\n"
}

/// `name` or `"Quoted ""Name"""` as the name itself.
fn unquote_identifier(text: &str) -> String {
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => text.to_string(),
    }
}

/// Those of `roles` the server does not have.
pub async fn missing_roles(
    restorer: &dyn Restorer,
    server: &ScratchEndpoint,
    roles: &[String],
) -> Result<Vec<String>, String> {
    let mut missing = Vec::new();
    for role in roles {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {})", literal(role));
        if !ask(restorer, server, &server.maintenance_db, &sql).await? {
            missing.push(role.clone());
        }
    }
    Ok(missing)
}

/// Is `database` on `server` the database the backup was taken from (as the manifest and the target's
/// configuration name it)? Host names are compared by the addresses they resolve to, so `localhost` is
/// `127.0.0.1` and an RDS endpoint is its address.
pub async fn is_source(target: &TargetConfig, manifest: &Manifest, server: &ScratchEndpoint, database: &str) -> bool {
    let sources = [
        (manifest.target.host.as_str(), manifest.target.port, manifest.target.database.as_str()),
        (target.host.as_str(), target.port, target.database.as_str()),
    ];
    for (host, port, source_db) in sources {
        if port == server.port && source_db == database && same_host(host, &server.host, port).await {
            return true;
        }
    }
    false
}

async fn same_host(a: &str, b: &str, port: u16) -> bool {
    let normal = |h: &str| h.trim_end_matches('.').to_ascii_lowercase();
    if normal(a) == normal(b) {
        return true;
    }
    let addresses = |h: String| async move {
        tokio::net::lookup_host((h.as_str(), port))
            .await
            .map(|found| found.map(|a| a.ip()).collect::<BTreeSet<_>>())
            .unwrap_or_default()
    };
    let (left, right) = (addresses(normal(a)).await, addresses(normal(b)).await);
    !left.is_disjoint(&right)
}
