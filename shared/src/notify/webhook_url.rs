//! Where the Slack webhook URL comes from, and the URL itself, kept secret.
//!
//! A webhook URL is a credential: anyone holding it can post to the channel. It lives in Secrets Manager
//! (`BACKSTOP_SLACK_WEBHOOK_SECRET_ID`: the URL itself, or JSON `{"webhook_url": "…"}`) or in an SSM
//! SecureString parameter (`BACKSTOP_SLACK_WEBHOOK_PARAMETER`), is read on the first message after a cold
//! start and kept for the container's life, and is never printed: not by `Debug`, not in errors, not in logs.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;

use crate::config::Env;
use crate::ports::{SecretError, SecretStore};

pub const SECRET_ID_VAR: &str = "BACKSTOP_SLACK_WEBHOOK_SECRET_ID";
pub const PARAMETER_VAR: &str = "BACKSTOP_SLACK_WEBHOOK_PARAMETER";

/// Where to read the URL from: exactly one of the two variables is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookSource {
    SecretsManager { secret_id: String },
    SsmParameter { name: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookSourceError {
    #[error(
        "no Slack webhook is configured: set {SECRET_ID_VAR} to a Secrets Manager secret (id or ARN) holding the webhook URL \
         or {{\"webhook_url\": \"…\"}}, or set {PARAMETER_VAR} to the name of an SSM SecureString parameter holding it"
    )]
    Missing,
    #[error("both {SECRET_ID_VAR} and {PARAMETER_VAR} are set: set only one, so that which webhook is used is never a guess")]
    Both,
}

impl WebhookSource {
    /// Reads the two variables; empty or blank counts as unset.
    pub fn from_env(env: &Env) -> Result<Self, WebhookSourceError> {
        let get = |name: &str| env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()).map(str::to_string);
        match (get(SECRET_ID_VAR), get(PARAMETER_VAR)) {
            (Some(secret_id), None) => Ok(WebhookSource::SecretsManager { secret_id }),
            (None, Some(name)) => Ok(WebhookSource::SsmParameter { name }),
            (Some(_), Some(_)) => Err(WebhookSourceError::Both),
            (None, None) => Err(WebhookSourceError::Missing),
        }
    }

    /// The secret id or parameter name to ask the store for.
    pub fn id(&self) -> &str {
        match self {
            WebhookSource::SecretsManager { secret_id } => secret_id,
            WebhookSource::SsmParameter { name } => name,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            WebhookSource::SecretsManager { secret_id } => {
                format!("Secrets Manager secret {secret_id:?} ({SECRET_ID_VAR})")
            }
            WebhookSource::SsmParameter { name } => format!("SSM parameter {name:?} ({PARAMETER_VAR})"),
        }
    }
}

/// A webhook URL checked to be `https://` (or `http://` to the loopback interface, for tests and local
/// stubs: a secret must not cross a network in clear text). `Debug` shows nothing of it.
#[derive(Clone)]
pub struct WebhookUrl(SecretString);

impl std::fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookUrl([REDACTED])")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookUrlError {
    #[error("cannot read the Slack webhook URL: {0}")]
    Read(SecretError),
    /// `reason` never contains the value.
    #[error("the Slack webhook URL in {source_name} is not usable: {reason}")]
    Invalid { source_name: String, reason: String },
}

impl WebhookUrl {
    /// The stored value: the URL, or JSON with a `webhook_url` key. Errors describe the value, never quote it.
    pub fn parse(stored: &SecretString) -> Result<Self, String> {
        let text = stored.expose_secret().trim();
        let url = if text.starts_with('{') {
            let json: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| format!("it looks like JSON but does not parse ({})", json_error_kind(&e)))?;
            match json.get("webhook_url") {
                Some(serde_json::Value::String(url)) => url.trim().to_string(),
                Some(_) => return Err("its `webhook_url` key is not a string".into()),
                None => return Err("it is JSON without a `webhook_url` key".into()),
            }
        } else {
            text.to_string()
        };
        let uri: hyper::Uri =
            url.parse().map_err(|_| "it is not a URL (expected https://hooks.slack.com/services/…)".to_string())?;
        let host = match (uri.scheme_str(), uri.host()) {
            (Some(_), Some(host)) => host,
            _ => return Err("it is not an absolute URL (expected https://hooks.slack.com/services/…)".into()),
        };
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1") => {}
            Some("http") => return Err("it is an http:// URL: a webhook URL is a secret and must use https://".into()),
            _ => return Err("it is not an https:// URL".into()),
        }
        Ok(WebhookUrl(SecretString::from(url)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// `text` with the URL, and its secret path on its own, replaced by `[REDACTED]`.
    pub fn redact(&self, text: &str) -> String {
        let url = self.expose();
        let mut out = text.replace(url, crate::domain::redact::REDACTED);
        if let Ok(uri) = url.parse::<hyper::Uri>() {
            if let Some(path) = uri.path_and_query().map(|p| p.as_str()).filter(|p| p.len() > 8) {
                out = out.replace(path, crate::domain::redact::REDACTED);
            }
        }
        out
    }
}

/// serde_json's message can quote the input; only its category is safe to show.
fn json_error_kind(error: &serde_json::Error) -> &'static str {
    match error.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Eof => "it ends early",
    }
}

/// The URL, read from its store on first use and kept. A failed read is not kept: the next message tries again.
pub struct WebhookUrlCache {
    source: WebhookSource,
    store: Arc<dyn SecretStore>,
    url: OnceCell<WebhookUrl>,
}

impl WebhookUrlCache {
    pub fn new(source: WebhookSource, store: Arc<dyn SecretStore>) -> Self {
        WebhookUrlCache { source, store, url: OnceCell::new() }
    }

    pub fn source(&self) -> &WebhookSource {
        &self.source
    }

    pub async fn get(&self) -> Result<&WebhookUrl, WebhookUrlError> {
        self.url
            .get_or_try_init(|| async {
                let stored = self.store.secret_string(self.source.id()).await.map_err(WebhookUrlError::Read)?;
                WebhookUrl::parse(&stored)
                    .map_err(|reason| WebhookUrlError::Invalid { source_name: self.source.describe(), reason })
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn exactly_one_source_must_be_set() {
        assert_eq!(
            WebhookSource::from_env(&env(&[(SECRET_ID_VAR, "backstop/slack")])),
            Ok(WebhookSource::SecretsManager { secret_id: "backstop/slack".into() })
        );
        assert_eq!(
            WebhookSource::from_env(&env(&[(PARAMETER_VAR, "/backstop/slack")])),
            Ok(WebhookSource::SsmParameter { name: "/backstop/slack".into() })
        );
        let missing = WebhookSource::from_env(&env(&[(SECRET_ID_VAR, "  ")])).unwrap_err();
        assert_eq!(missing, WebhookSourceError::Missing);
        assert!(
            missing.to_string().contains(SECRET_ID_VAR) && missing.to_string().contains(PARAMETER_VAR),
            "{missing}"
        );
        assert_eq!(
            WebhookSource::from_env(&env(&[(SECRET_ID_VAR, "a"), (PARAMETER_VAR, "b")])),
            Err(WebhookSourceError::Both)
        );
    }

    #[test]
    fn the_url_is_read_plain_or_from_json() {
        let plain = WebhookUrl::parse(&SecretString::from(" https://hooks.slack.com/services/T0/B0/abc\n")).unwrap();
        assert_eq!(plain.expose(), "https://hooks.slack.com/services/T0/B0/abc");
        let json = WebhookUrl::parse(&SecretString::from(
            r##"{"webhook_url": "https://hooks.slack.com/services/T0/B0/xyz", "channel": "#ops"}"##,
        ))
        .unwrap();
        assert_eq!(json.expose(), "https://hooks.slack.com/services/T0/B0/xyz");
        assert_eq!(format!("{json:?}"), "WebhookUrl([REDACTED])");
        assert!(WebhookUrl::parse(&SecretString::from("http://127.0.0.1:8080/hook")).is_ok());
    }

    #[test]
    fn an_unusable_value_is_described_without_being_quoted() {
        for (value, expected) in [
            ("http://hooks.slack.com/services/T0/B0/SECRETPART", "https://"),
            (r#"{"url": "https://hooks.slack.com/services/T0/B0/SECRETPART"}"#, "without a `webhook_url`"),
            (r#"{"webhook_url": "SECRETPART"#, "does not parse"),
            ("SECRETPART", "not an absolute URL"),
            ("ftp://x/SECRETPART", "not an https:// URL"),
        ] {
            let reason = WebhookUrl::parse(&SecretString::from(value)).unwrap_err();
            assert!(reason.contains(expected), "{value}: {reason}");
            assert!(!reason.contains("SECRETPART"), "{reason}");
        }
    }

    #[test]
    fn redaction_removes_the_url_and_its_path() {
        let url = WebhookUrl::parse(&SecretString::from("https://hooks.slack.com/services/T0/B0/abcdef")).unwrap();
        let text = "POST https://hooks.slack.com/services/T0/B0/abcdef failed; path /services/T0/B0/abcdef";
        assert_eq!(url.redact(text), "POST [REDACTED] failed; path [REDACTED]");
    }

    struct CountingStore {
        reads: AtomicUsize,
        value: Option<&'static str>,
    }

    #[async_trait]
    impl SecretStore for CountingStore {
        async fn secret_string(&self, secret_id: &str) -> Result<SecretString, SecretError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.value.map(SecretString::from).ok_or_else(|| SecretError {
                secret_id: secret_id.into(),
                message: "AccessDenied".into(),
                transient: false,
            })
        }
    }

    #[tokio::test]
    async fn the_url_is_read_once_and_a_failed_read_is_tried_again() {
        // GIVEN a store holding the URL WHEN the URL is asked for three times THEN the store is read once
        let store = Arc::new(CountingStore {
            reads: AtomicUsize::new(0),
            value: Some("https://hooks.slack.com/services/T0/B0/abc"),
        });
        let cache = WebhookUrlCache::new(WebhookSource::SecretsManager { secret_id: "s".into() }, store.clone());
        for _ in 0..3 {
            cache.get().await.unwrap();
        }
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);
        // GIVEN a store that refuses WHEN asked twice THEN both ask the store, and the error names the secret
        let failing = Arc::new(CountingStore { reads: AtomicUsize::new(0), value: None });
        let cache = WebhookUrlCache::new(WebhookSource::SsmParameter { name: "/p".into() }, failing.clone());
        let error = cache.get().await.unwrap_err().to_string();
        assert!(error.contains("\"/p\"") && error.contains("AccessDenied"), "{error}");
        cache.get().await.unwrap_err();
        assert_eq!(failing.reads.load(Ordering::SeqCst), 2);
    }
}
