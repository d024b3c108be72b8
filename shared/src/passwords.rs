//! Resolves a target's [`PasswordSource`] into the password, held as a [`SecretString`] from then on.

use std::path::Path;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use crate::config::{Env, PasswordSource};
use crate::ports::{SecretError, SecretStore};

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password variable {} is not set (or is empty)", shown_variable(.0))]
    EnvMissing(String),
    #[error("cannot read the password file {path}: {cause}")]
    File { path: String, cause: std::io::Error },
    #[error("the password file {0} is empty")]
    FileEmpty(String),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("secret {0:?} is JSON without a string `password` key; store {{\"username\": \"…\", \"password\": \"…\"}} as RDS does")]
    SecretWithoutPassword(String),
}

/// A variable's name as an error shows it: only if it looks like one (letters, digits, underscores). Anything else
/// in `{"env": …}` may be the password itself, written where its variable's name belongs.
fn shown_variable(name: &str) -> String {
    let looks_like_a_name = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if looks_like_a_name {
        name.to_string()
    } else {
        "named in the target's `password.env` (not shown: it is not a variable's name, and may be the password itself)"
            .into()
    }
}

pub struct PasswordResolver {
    secrets: Arc<dyn SecretStore>,
    env: Env,
}

impl PasswordResolver {
    pub fn new(secrets: Arc<dyn SecretStore>, env: Env) -> Self {
        PasswordResolver { secrets, env }
    }

    pub async fn resolve(&self, source: &PasswordSource) -> Result<SecretString, PasswordError> {
        match source {
            PasswordSource::Env(name) => self
                .env
                .get(name)
                .filter(|v| !v.is_empty())
                .map(|v| SecretString::from(v.clone()))
                .ok_or_else(|| PasswordError::EnvMissing(name.clone())),
            PasswordSource::File(path) => read_password_file(path),
            PasswordSource::SecretId(id) => {
                let value = self.secrets.secret_string(id).await?;
                password_from_secret(id, &value)
            }
        }
    }
}

fn read_password_file(path: &Path) -> Result<SecretString, PasswordError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|cause| PasswordError::File { path: shown.clone(), cause })?;
    let password = text.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(PasswordError::FileEmpty(shown));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %shown, "the password file is readable by other users; chmod 600 it");
            }
        }
    }
    Ok(SecretString::from(password.to_string()))
}

/// RDS-managed secrets are JSON (`{"username", "password"}`); a plain string secret is the password itself.
fn password_from_secret(id: &str, value: &SecretString) -> Result<SecretString, PasswordError> {
    let text = value.expose_secret();
    if !text.trim_start().starts_with('{') {
        return Ok(value.clone());
    }
    let parsed: serde_json::Value =
        serde_json::from_str(text).map_err(|_| PasswordError::SecretWithoutPassword(id.to_string()))?;
    parsed
        .get("password")
        .and_then(|p| p.as_str())
        .map(|p| SecretString::from(p.to_string()))
        .ok_or_else(|| PasswordError::SecretWithoutPassword(id.to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_password_written_where_a_variables_name_belongs_is_not_shown() {
        let shown = |name: &str| super::PasswordError::EnvMissing(name.into()).to_string();
        assert_eq!(shown("PROD_DB_PASSWORD"), "the password variable PROD_DB_PASSWORD is not set (or is empty)");
        for password in ["S3cret Pw!", "hunter2-x", "9lives", ""] {
            let message = shown(password);
            assert!(message.contains("not shown") && (password.is_empty() || !message.contains(password)), "{message}");
        }
    }

    use super::*;
    use crate::adapters::memory::MemorySecrets;

    fn resolver(secrets: &[(&str, &str)], env: &[(&str, &str)]) -> PasswordResolver {
        let store = MemorySecrets { secrets: secrets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() };
        PasswordResolver::new(Arc::new(store), env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[tokio::test]
    async fn an_rds_managed_secret_yields_its_password() {
        let r = resolver(&[("arn:db", r#"{"username":"postgres","password":"p@ss{word}"}"#)], &[]);
        let pw = r.resolve(&PasswordSource::SecretId("arn:db".into())).await.unwrap();
        assert_eq!(pw.expose_secret(), "p@ss{word}");
    }

    #[tokio::test]
    async fn a_json_secret_without_password_is_refused_without_showing_it() {
        let r = resolver(&[("s", r#"{"user":"u","pw":"topsecret"}"#)], &[]);
        let err = r.resolve(&PasswordSource::SecretId("s".into())).await.unwrap_err().to_string();
        assert!(err.contains("password") && !err.contains("topsecret"), "{err}");
    }

    #[tokio::test]
    async fn env_and_file_sources_work_and_name_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let r = resolver(&[], &[("PW", "from-env")]);
        assert_eq!(r.resolve(&PasswordSource::Env("PW".into())).await.unwrap().expose_secret(), "from-env");
        assert_eq!(r.resolve(&PasswordSource::File(file)).await.unwrap().expose_secret(), "from-file");
        let err = r.resolve(&PasswordSource::Env("NOPE".into())).await.unwrap_err().to_string();
        assert!(err.contains("NOPE"), "{err}");
    }
}
