//! Redaction: removes secrets from text that leaves the process (records, alerts, logs, errors).
//!
//! Applied to anything a subprocess printed (pg_dump's stderr can echo a connection string) before it is
//! stored or sent. Exact secrets are replaced wherever they appear; `password=…` pairs are masked even when the
//! value is not a secret we know of.

use secrecy::{ExposeSecret, SecretString};

pub const REDACTED: &str = "[REDACTED]";

pub fn redact(text: &str, secrets: &[&SecretString]) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        let s = secret.expose_secret();
        // Very short "secrets" would shred ordinary text; such a password is a finding of its own.
        if s.len() >= 4 {
            out = out.replace(s, REDACTED);
        }
    }
    mask_password_pairs(&out)
}

/// `password=hunter2` / `password = 'x y'` → `password=[REDACTED]`, case-insensitively.
fn mask_password_pairs(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(found) = lower[i..].find("password") {
        let key_end = i + found + "password".len();
        out.push_str(&text[i..key_end]);
        let rest = &text[key_end..];
        let after_spaces = rest.trim_start_matches(' ');
        if let Some(value) = after_spaces.strip_prefix('=') {
            let value = value.trim_start_matches(' ');
            let skipped = rest.len() - value.len();
            let value_len = if let Some(quoted) = value.strip_prefix('\'') {
                quoted.find('\'').map(|e| e + 2).unwrap_or(value.len())
            } else {
                value.find(|c: char| c.is_whitespace() || c == '"' || c == '&').unwrap_or(value.len())
            };
            out.push('=');
            out.push_str(REDACTED);
            i = key_end + skipped + value_len;
        } else {
            i = key_end;
        }
    }
    out.push_str(&text[i..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_secrets_are_removed_wherever_they_appear() {
        let pw = SecretString::from("s3cr3t-Pa55".to_string());
        let text = "FATAL: password authentication failed; tried s3cr3t-Pa55 twice (s3cr3t-Pa55)";
        let out = redact(text, &[&pw]);
        assert!(!out.contains("s3cr3t-Pa55"), "{out}");
        assert_eq!(out.matches(REDACTED).count(), 2);
    }

    #[test]
    fn password_pairs_are_masked_even_for_unknown_values() {
        let out = redact("connection to \"host=db password=hunter2 user=x\" failed; PASSWORD = 'a b' ok", &[]);
        assert!(!out.contains("hunter2") && !out.contains("'a b'"), "{out}");
        assert!(out.contains("user=x") && out.ends_with(" ok"), "{out}");
    }

    #[test]
    fn ordinary_text_is_untouched() {
        let text = "pg_dump: error: query failed: server closed the connection unexpectedly";
        assert_eq!(redact(text, &[]), text);
        assert_eq!(
            redact("password authentication failed for user \"backstop\"", &[]),
            "password authentication failed for user \"backstop\""
        );
    }
}
