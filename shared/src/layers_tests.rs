//! The crate's layers point down only: domain (plain data and pure decisions) depends on nothing else in the
//! crate; ports on the domain; the pipeline on those; jobs never on adapters or the wiring; adapters never on
//! jobs or the wiring. Test code (a file's `#[cfg(test)]` tail, `*_tests.rs`, a job folder's `tests.rs`) may reach anywhere.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && !is_test_file(&path) {
            out.push(path);
        }
    }
}

/// A file of tests only: `*_tests.rs`, or a job folder's `tests.rs`.
fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy();
    name.ends_with("_tests.rs") || name == "tests.rs" || name == "test_support.rs"
}

/// The top-level modules `path`'s production code names as `crate::…`.
fn uses(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let production = text.split("\n#[cfg(test)]").next().unwrap();
    production
        .match_indices("crate::")
        .map(|(i, _)| production[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect())
        .collect()
}

fn layer(relative: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let path = root.join(relative);
    let mut files = Vec::new();
    if path.is_dir() {
        sources(&path, &mut files);
    } else {
        files.push(path);
    }
    files
}

fn assert_layer(relative: &str, allowed: &[&str]) {
    for file in layer(relative) {
        let reached: Vec<String> = uses(&file).into_iter().filter(|m| !allowed.contains(&m.as_str())).collect();
        assert!(reached.is_empty(), "{} reaches {reached:?}; {relative} may use only {allowed:?}", file.display());
    }
}

#[test]
fn the_domain_depends_on_nothing_else() {
    assert_layer("domain", &["domain"]);
}

#[test]
fn ports_depend_on_the_domain_only() {
    assert_layer("ports.rs", &["domain", "ports"]);
}

#[test]
fn the_pipeline_depends_on_the_domain_and_ports() {
    assert_layer("pipeline", &["domain", "ports", "pipeline"]);
}

#[test]
fn jobs_and_adapters_do_not_reach_each_other_or_the_wiring() {
    for file in layer("jobs") {
        let reached = uses(&file);
        assert!(!reached.contains("adapters") && !reached.contains("app"), "{}: {reached:?}", file.display());
    }
    for file in layer("adapters") {
        let reached = uses(&file);
        assert!(!reached.contains("jobs") && !reached.contains("app"), "{}: {reached:?}", file.display());
    }
}
