//! The source database's own properties that a dump without `--create` leaves out: its owner, its comment, who
//! may connect to it or make schemas and temporary tables in it (`GRANT … ON DATABASE`), and the settings its
//! roles take in it (`ALTER ROLE … IN DATABASE … SET`). The backup reads them from the catalog beside the dump
//! (`adapters::postgres`) and keeps them in the manifest, so that a restore after the source server is gone can
//! still make the database as it was: `backstop restore` applies them to a database it makes, after its checks
//! (they may take the right to connect from the restoring user), and the runbook shows the statements for a
//! restore by hand. A drill does not: its scratch copy needs none of them, and a revoked `CONNECT` would lock its
//! own checks out on a server where the drill's user is not a superuser.

use serde::{Deserialize, Serialize};

use super::manifest::{set_clause, setting_name};
use super::sql::quote_literal;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseProperties {
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Every privilege granted on the database; `None` when they are PostgreSQL's defaults (everyone may connect
    /// and make temporary tables), which a new database has already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<Vec<DatabaseGrant>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub role_settings: Vec<RoleSetting>,
}

/// One privilege on the database (`CONNECT`, `CREATE`, `TEMPORARY`) for a role, or for everyone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseGrant {
    /// `None`: `PUBLIC`.
    pub grantee: Option<String>,
    pub privilege: String,
    #[serde(default)]
    pub grantable: bool,
}

/// A role's setting in this database, `name=value` as the catalog keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleSetting {
    pub role: String,
    pub setting: String,
}

impl DatabaseProperties {
    /// The statements that give the database `database_sql_name` (an identifier, quoted as needed) these
    /// properties: what each is for, and the SQL. The privileges start from none (`REVOKE ALL … FROM PUBLIC`)
    /// so that what was revoked on the source stays revoked. The owner comes last: a restoring user that is not
    /// a superuser may grant and comment only while it still owns the database.
    pub fn statements(&self, database_sql_name: &str) -> Vec<(String, String)> {
        let db = database_sql_name;
        let mut out = Vec::new();
        if let Some(comment) = &self.comment {
            out.push(("comment".into(), format!("COMMENT ON DATABASE {db} IS {}", quote_literal(comment))));
        }
        if let Some(grants) = &self.grants {
            out.push(("privileges of PUBLIC revoked".into(), format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC")));
            for grant in grants {
                // The privilege names are the catalog's own (`aclexplode`); anything else is not SQL to run.
                if !["CONNECT", "CREATE", "TEMPORARY"].contains(&grant.privilege.as_str()) {
                    continue;
                }
                let grantee = grant.grantee.as_deref().map_or_else(|| "PUBLIC".to_string(), role);
                out.push((
                    format!("{} to {}", grant.privilege, grant.grantee.as_deref().unwrap_or("PUBLIC")),
                    format!(
                        "GRANT {} ON DATABASE {db} TO {grantee}{}",
                        grant.privilege,
                        if grant.grantable { " WITH GRANT OPTION" } else { "" }
                    ),
                ));
            }
        }
        for s in self.role_settings.iter().filter(|s| !loads_a_library(&s.setting)) {
            if let Some(set) = set_clause(&s.setting) {
                out.push((
                    format!("{} for {}", s.setting, s.role),
                    format!("ALTER ROLE {} IN DATABASE {db} {set}", role(&s.role)),
                ));
            }
        }
        out.push((format!("owner {}", self.owner), format!("ALTER DATABASE {db} OWNER TO {}", role(&self.owner))));
        out
    }

    /// The role settings [`DatabaseProperties::statements`] leaves out: those that load a library at connection
    /// time, which a server without that library would refuse every connection of the role for. They are for a
    /// person to apply once the server has the library.
    pub fn left_out(&self) -> Vec<String> {
        let skipped = self.role_settings.iter().filter(|s| loads_a_library(&s.setting));
        skipped.map(|s| format!("{} for {}", s.setting, s.role)).collect()
    }
}

fn loads_a_library(setting: &str) -> bool {
    ["session_preload_libraries", "local_preload_libraries", "shared_preload_libraries"]
        .contains(&setting_name(setting).as_str())
}

/// A role's name, always quoted: `user` or `Admin` unquoted would be a keyword or another name.
fn role(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statements_make_the_database_as_the_source_had_it() {
        let properties = DatabaseProperties {
            owner: "app owner".into(),
            comment: Some("orders' home".into()),
            grants: Some(vec![
                DatabaseGrant { grantee: Some("app_reader".into()), privilege: "CONNECT".into(), grantable: false },
                DatabaseGrant { grantee: None, privilege: "TEMPORARY".into(), grantable: false },
                DatabaseGrant { grantee: Some("user".into()), privilege: "CREATE".into(), grantable: true },
                DatabaseGrant { grantee: Some("x".into()), privilege: "DROP TABLE y; --".into(), grantable: false },
            ]),
            role_settings: vec![
                RoleSetting { role: "app_reader".into(), setting: "search_path=sales, public".into() },
                RoleSetting { role: "app_reader".into(), setting: "statement_timeout=5s".into() },
                RoleSetting { role: "app_reader".into(), setting: "session_preload_libraries=auto_explain".into() },
            ],
        };
        let sql: Vec<String> = properties.statements("\"Orders\"").into_iter().map(|(_, sql)| sql).collect();
        assert_eq!(
            sql,
            [
                "COMMENT ON DATABASE \"Orders\" IS 'orders'' home'",
                "REVOKE ALL ON DATABASE \"Orders\" FROM PUBLIC",
                "GRANT CONNECT ON DATABASE \"Orders\" TO \"app_reader\"",
                "GRANT TEMPORARY ON DATABASE \"Orders\" TO PUBLIC",
                "GRANT CREATE ON DATABASE \"Orders\" TO \"user\" WITH GRANT OPTION",
                "ALTER ROLE \"app_reader\" IN DATABASE \"Orders\" SET search_path = sales, public",
                "ALTER ROLE \"app_reader\" IN DATABASE \"Orders\" SET statement_timeout = '5s'",
                "ALTER DATABASE \"Orders\" OWNER TO \"app owner\"",
            ]
        );
        assert_eq!(properties.left_out(), ["session_preload_libraries=auto_explain for app_reader"]);
    }

    #[test]
    fn default_privileges_are_left_as_a_new_database_has_them() {
        let properties = DatabaseProperties { owner: "o".into(), comment: None, grants: None, role_settings: vec![] };
        assert_eq!(properties.statements("d").len(), 1, "the owner only");
    }
}
