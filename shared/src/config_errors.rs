//! Parse errors of the configuration that say where and what was wrong, never what was written there.
//!
//! serde and toml quote the value they could not take (``unknown variant `hunter2` ``, `invalid type: string
//! "hunter2"`), and toml prints the whole line it stopped on. A value in the wrong place may be a password
//! written where its source belongs (`"password": "hunter2"` instead of `{"env": "PGPASSWORD"}`), and these
//! errors go to logs, the Lambda's answer and the CLI's output: every string value of the document is taken out
//! of the message, and toml's line is replaced by its line and column.

/// What replaces a value of the document in an error message.
const HIDDEN: &str = "…";

/// A `serde_json` error from reading `json`, without the document's values. Syntax errors quote nothing of the
/// input (`expected value at line 1 column 9`), so they stay as they are.
pub(crate) fn json_error(json: &str, error: &serde_json::Error) -> String {
    let message = error.to_string();
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(document) => {
            let mut values = Vec::new();
            json_strings(&document, &mut values);
            without_values(&message, &values)
        }
        Err(_) => message,
    }
}

/// A `toml` error from reading `text`: its message without the document's values, and where it is.
pub(crate) fn toml_error(text: &str, error: &toml::de::Error) -> String {
    let mut values = Vec::new();
    if let Ok(document) = toml::from_str::<toml::Table>(text) {
        for value in document.values() {
            toml_strings(value, &mut values);
        }
    }
    let message = without_values(error.message().trim_end(), &values);
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

fn json_strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Number(n) => out.push(n.to_string()),
        serde_json::Value::Bool(b) => out.push(b.to_string()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| json_strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| json_strings(v, out)),
        _ => {}
    }
}

fn toml_strings(value: &toml::Value, out: &mut Vec<String>) {
    match value {
        toml::Value::String(s) => out.push(s.clone()),
        toml::Value::Integer(n) => out.push(n.to_string()),
        toml::Value::Float(f) => out.push(f.to_string()),
        toml::Value::Boolean(b) => out.push(b.to_string()),
        toml::Value::Array(items) => items.iter().for_each(|v| toml_strings(v, out)),
        toml::Value::Table(table) => table.values().for_each(|v| toml_strings(v, out)),
        _ => {}
    }
}

/// `message` with each of `values` (strings, numbers, booleans) hidden where it is quoted: in backticks (how
/// serde shows an unexpected number), or in double quotes as Rust's `{:?}` writes it (an unexpected string).
/// Longest first, so a value inside another goes too.
fn without_values(message: &str, values: &[String]) -> String {
    let mut values: Vec<&String> = values.iter().filter(|v| !v.is_empty()).collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    let mut out = message.to_string();
    for value in values {
        out = out.replace(&format!("`{value}`"), &format!("`{HIDDEN}`"));
        out = out.replace(&format!("{value:?}"), &format!("\"{HIDDEN}\""));
        out = out.replace(&format!("\"{value}\""), &format!("\"{HIDDEN}\""));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "S3cret \"Pw\"!";

    #[test]
    fn a_password_written_where_its_source_belongs_is_not_in_the_json_error() {
        let json = format!(
            r#"[{{"name": "a", "host": "h", "database": "d", "user": "u", "password": {}}}]"#,
            serde_json::to_string(PASSWORD).unwrap()
        );
        let error = serde_json::from_str::<Vec<crate::config::TargetConfig>>(&json).unwrap_err();
        assert!(error.to_string().contains("S3cret"), "the raw error quotes it: {error}");
        let message = json_error(&json, &error);
        assert!(!message.contains("S3cret"), "{message}");
        assert!(message.contains("unknown variant `…`, expected one of"), "{message}");
    }

    #[test]
    fn a_value_of_the_wrong_type_is_not_in_the_json_error() {
        let json = r#"[{"name": "a", "host": "h", "database": "d", "user": "u", "port": "hunter2-port", "password": {"env": "X"}}]"#;
        let error = serde_json::from_str::<Vec<crate::config::TargetConfig>>(json).unwrap_err();
        let message = json_error(json, &error);
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("invalid type: string \"…\", expected u16"), "{message}");
    }

    #[test]
    fn a_password_written_as_a_number_is_not_in_the_error() {
        let json = r#"[{"name": "a", "host": "h", "database": "d", "user": "u", "password": 84736251}]"#;
        let error = serde_json::from_str::<Vec<crate::config::TargetConfig>>(json).unwrap_err();
        let message = json_error(json, &error);
        assert!(!message.contains("84736251"), "{message}");
        let text = "[[targets]]\nname = \"a\"\nhost = \"h\"\ndatabase = \"d\"\nuser = \"u\"\npassword = 84736251\n";
        let error = toml::from_str::<crate::config::FileConfig>(text).unwrap_err();
        let message = toml_error(text, &error);
        assert!(!message.contains("84736251"), "{message}");
    }

    #[test]
    fn a_json_syntax_error_keeps_its_place() {
        let json = r#"[{"name": "a", "password": {"env": "X"]"#;
        let error = serde_json::from_str::<Vec<crate::config::TargetConfig>>(json).unwrap_err();
        assert_eq!(json_error(json, &error), error.to_string());
        assert!(json_error(json, &error).contains("line 1 column"));
    }

    #[test]
    fn the_toml_error_names_the_line_not_its_text() {
        let text = format!(
            "bucket = \"b\"\n\n[[targets]]\nname = \"a\"\nhost = \"h\"\ndatabase = \"d\"\nuser = \"u\"\npassword = {}\n",
            serde_json::to_string(PASSWORD).unwrap()
        );
        let error = toml::from_str::<crate::config::FileConfig>(&text).unwrap_err();
        assert!(error.to_string().contains("S3cret"), "the raw error shows the line: {error}");
        let message = toml_error(&text, &error);
        assert!(!message.contains("S3cret"), "{message}");
        assert!(message.starts_with("line 8, column 12: "), "{message}");
        assert!(message.contains("unknown variant `…`"), "{message}");
    }

    #[test]
    fn a_toml_syntax_error_says_where_without_the_line() {
        let text = "bucket = \"b\"\npassword = \"hunter2\n";
        let error = toml::from_str::<crate::config::FileConfig>(text).unwrap_err();
        let message = toml_error(text, &error);
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.starts_with("line 2, column "), "{message}");
    }

    #[test]
    fn field_names_and_expected_variants_stay() {
        let message = "missing field `host`; unknown variant `x`, expected one of `secret_id`, `env`, `file`";
        assert_eq!(
            without_values(message, &["x".into(), "h".into()]),
            "missing field `host`; unknown variant `…`, expected one of `secret_id`, `env`, `file`"
        );
    }
}
