//! Every error prints its cause once. An error either says its cause in its own message or returns it from
//! `source()`, never both: a reporter that walks the chain of sources (tracing's error fields, `anyhow`'s
//! `{:#}`) would otherwise print the same text twice. Backstop's errors say their cause in the message (see
//! `ports`), so a `#[error("…{0}…")]` over a `#[from]`/`#[source]` field, or `{source}` over a field named
//! `source`, is refused here.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("error_style_tests.rs") {
            out.push(path);
        }
    }
}

/// The string literal that starts at or after `text`'s start (escapes kept as written).
fn literal(text: &str) -> Option<&str> {
    let start = text.find('"')? + 1;
    let mut escaped = false;
    for (i, c) in text[start..].char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(&text[start..start + i]),
            _ => escaped = false,
        }
    }
    None
}

/// The fields `item` (a variant or struct, as written after its `#[error]`) hands to `source()`: `0` for a
/// tuple field marked `#[from]`/`#[source]`, the name of a named one, and any field named `source`.
fn source_fields(item: &str) -> Vec<String> {
    let mut fields = Vec::new();
    if item.contains("(#[from]") || item.contains("(#[source]") {
        fields.push("0".to_string());
    }
    for marker in ["#[source]", "#[from]"] {
        for (i, _) in item.match_indices(marker) {
            let after = item[i + marker.len()..].trim_start();
            let after = after.strip_prefix("pub ").unwrap_or(after);
            let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if after[name.len()..].trim_start().starts_with(':') {
                fields.push(name);
            }
        }
    }
    if item.contains(" source:") {
        fields.push("source".to_string());
    }
    fields
}

/// `(item's first line, field)` for each `#[error]` in `text` whose message prints a field it also returns
/// from `source()`.
fn printed_twice(text: &str) -> (usize, Vec<(String, String)>) {
    let mut seen = 0;
    let mut found = Vec::new();
    let attributes: Vec<usize> = text.match_indices("#[error(").map(|(i, _)| i).collect();
    for (n, &at) in attributes.iter().enumerate() {
        let rest = &text[at + "#[error(".len()..];
        if rest.starts_with("transparent") {
            continue;
        }
        seen += 1;
        let Some(message) = literal(rest) else { continue };
        // The item: from the attribute to the next one, or to the end of the enum or struct.
        let end = attributes.get(n + 1).map_or(text.len(), |&next| next) - at;
        let item = &text[at..at + end];
        let item = &item[..item.find("\n}").unwrap_or(item.len())];
        let item = &item[item.find(")]").map_or(0, |i| i + 2)..];
        for field in source_fields(item) {
            if message.contains(&format!("{{{field}}}")) || message.contains(&format!("{{{field}:")) {
                let first_line = item.trim_start().lines().next().unwrap_or_default().trim().to_string();
                found.push((first_line, field));
            }
        }
    }
    (seen, found)
}

#[test]
fn no_error_prints_its_cause_and_returns_it_as_its_source() {
    let mut files = Vec::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    let (mut seen, mut offenders) = (0, Vec::new());
    for file in files {
        let (n, found) = printed_twice(&std::fs::read_to_string(&file).unwrap());
        seen += n;
        offenders.extend(found.into_iter().map(|(item, field)| format!("{}: {item} ({{{field}}})", file.display())));
    }
    assert!(seen > 40, "only {seen} #[error] messages found: is the scan still reading the sources?");
    assert!(offenders.is_empty(), "these errors print a cause that is also their source():\n{}", offenders.join("\n"));
}

#[test]
fn the_scan_finds_a_cause_printed_twice_in_each_form() {
    let tuple = "enum E {\n    #[error(\"reading failed: {0}\")]\n    Read(#[from] io::Error),\n}\n";
    let named = "enum E {\n    #[error(\"{op} failed: {cause:?}\")]\n    Backend {\n        op: String,\n        #[source]\n        cause: Box<dyn Error>,\n    },\n}\n";
    let implicit =
        "#[error(\"{key} failed: {source}\")]\npub struct S {\n    key: String,\n    pub source: BoxError,\n}\n";
    for text in [tuple, named, implicit] {
        assert_eq!(printed_twice(text).1.len(), 1, "{text}");
    }
    let fine = "enum E {\n    #[error(\"reading failed: {0}\")]\n    Read(io::Error),\n    #[error(\"parse\")]\n    Parse(#[source] P),\n    #[error(transparent)]\n    Other(#[from] O),\n}\n";
    assert_eq!(printed_twice(fine), (2, vec![]));
}
