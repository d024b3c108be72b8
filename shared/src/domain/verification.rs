//! Verification results as data: each check is a value (ok, or which kind of mismatch with its detail, or an
//! error), gathered into a report stored with the drill and shown by `backstop status --backup ID`.

use serde::{Deserialize, Serialize};

use super::fingerprint::{Fingerprint, TableFingerprint};

/// What a check looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum CheckName {
    /// The key's current version is the one the backup recorded (not overwritten since).
    ObjectVersion,
    /// The object is encrypted with SSE-KMS under the expected key.
    ObjectEncryption,
    /// The bytes read have the recorded size and SHA-256.
    ObjectChecksum,
    /// The roles script ran.
    Roles,
    /// psql restored the dump without an error.
    Restore,
    /// The restored database has exactly the backed-up tables.
    TableSet,
    /// One table's row count and content digest.
    Table { schema: String, name: String },
    /// Everything outside table data (DDL, grants; sequences too under fingerprint scheme v1).
    SchemaDigest,
    /// Every sequence's value and `is_called` (scheme v2).
    Sequences,
    /// How many large objects there are (scheme v2).
    LargeObjects,
    /// amcheck's page-level checks of the restored copy (heaps and B-tree indexes), when configured.
    Physical,
    /// A check from the configuration.
    User { name: String },
}

impl CheckName {
    pub fn label(&self) -> String {
        match self {
            CheckName::ObjectVersion => "object_version".into(),
            CheckName::ObjectEncryption => "object_encryption".into(),
            CheckName::ObjectChecksum => "object_checksum".into(),
            CheckName::Roles => "roles".into(),
            CheckName::Restore => "restore".into(),
            CheckName::TableSet => "table_set".into(),
            CheckName::Table { schema, name } => format!("table {schema}.{name}"),
            CheckName::SchemaDigest => "schema_digest".into(),
            CheckName::Sequences => "sequences".into(),
            CheckName::LargeObjects => "large_objects".into(),
            CheckName::Physical => "physical (amcheck)".into(),
            CheckName::User { name } => format!("user check {name}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CheckOutcome {
    Ok {
        detail: String,
    },
    /// Worth knowing, not a failure (e.g. a role the scratch server already had).
    Warning {
        detail: String,
    },
    Mismatch {
        expected: String,
        found: String,
    },
    Error {
        message: String,
    },
    /// The check could not run (an earlier step failed, or what it reads was never read whole): nothing is
    /// known either way. Not a failure of its own, but a drill with a check not run is not a verified backup.
    NotRun {
        reason: String,
    },
}

impl CheckOutcome {
    pub fn ok(detail: impl Into<String>) -> Self {
        CheckOutcome::Ok { detail: detail.into() }
    }

    pub fn is_failure(&self) -> bool {
        matches!(self, CheckOutcome::Mismatch { .. } | CheckOutcome::Error { .. })
    }

    pub fn not_run(reason: impl Into<String>) -> Self {
        CheckOutcome::NotRun { reason: reason.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    #[serde(flatten)]
    pub name: CheckName,
    #[serde(flatten)]
    pub outcome: CheckOutcome,
}

/// Timings of a drill, in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DrillTimings {
    pub provision_seconds: Option<f64>,
    pub restore_seconds: Option<f64>,
    pub check_seconds: Option<f64>,
    /// Recovery time: restore start to checks done (provisioning is reported beside it).
    pub rto_seconds: Option<f64>,
    /// Recovery point: the backup's age (its snapshot) when the drill started.
    pub rpo_seconds: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerificationReport {
    pub checks: Vec<CheckResult>,
    #[serde(default)]
    pub timings: DrillTimings,
    /// Budgets exceeded (RTO, RPO), as sentences; they alert but do not fail the backup's verification.
    #[serde(default)]
    pub budget_warnings: Vec<String>,
}

impl VerificationReport {
    pub fn push(&mut self, name: CheckName, outcome: CheckOutcome) {
        self.checks.push(CheckResult { name, outcome });
    }

    pub fn failures(&self) -> Vec<&CheckResult> {
        self.checks.iter().filter(|c| c.outcome.is_failure()).collect()
    }

    /// Checks that could not run, with why.
    pub fn not_run(&self) -> Vec<&CheckResult> {
        self.checks.iter().filter(|c| matches!(c.outcome, CheckOutcome::NotRun { .. })).collect()
    }

    /// Verified: the restore ran, nothing failed, and every check ran (a check that could not run proves
    /// nothing, so it withholds the verdict without being named as failed).
    pub fn passed(&self) -> bool {
        self.failures().is_empty()
            && self.not_run().is_empty()
            && self.checks.iter().any(|c| c.name == CheckName::Restore)
    }

    /// Marks every check in `names` that has no result yet as not run, for `reason`.
    pub fn mark_not_run(&mut self, names: impl IntoIterator<Item = CheckName>, reason: &str) {
        for name in names {
            if !self.checks.iter().any(|c| c.name == name) {
                self.push(name, CheckOutcome::not_run(reason));
            }
        }
    }

    /// Forgets the checks of a phase being run again (a resumed drill).
    pub fn forget(&mut self, which: impl Fn(&CheckName) -> bool) {
        self.checks.retain(|c| !which(&c.name));
    }
}

/// How thoroughly a drill compares rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RowCheck {
    /// Every row read back and digested: a changed value is found.
    #[default]
    Digests,
    /// Rows counted only: faster; finds lost or extra rows, not changed ones.
    Counts,
}

/// Compares the fingerprint the backup recorded with the restored copy's: the table set, each table's rows and
/// digest (rows only with [`RowCheck::Counts`]), the schema digest, and (scheme v2) sequences and large objects.
pub fn compare_fingerprints(expected: &Fingerprint, restored: &Fingerprint, rows: RowCheck) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let key = |t: &TableFingerprint| (t.schema.clone(), t.name.clone());
    let expected_keys: std::collections::BTreeSet<_> = expected.tables.iter().map(key).collect();
    let restored_keys: std::collections::BTreeSet<_> = restored.tables.iter().map(key).collect();
    let missing: Vec<String> = expected_keys.difference(&restored_keys).map(|(s, n)| format!("{s}.{n}")).collect();
    let extra: Vec<String> = restored_keys.difference(&expected_keys).map(|(s, n)| format!("{s}.{n}")).collect();
    let table_set = if missing.is_empty() && extra.is_empty() {
        CheckOutcome::ok(format!("{} tables", expected.tables.len()))
    } else {
        CheckOutcome::Mismatch {
            expected: format!("missing after restore: {missing:?}"),
            found: format!("not in the backup: {extra:?}"),
        }
    };
    out.push(CheckResult { name: CheckName::TableSet, outcome: table_set });
    for table in &expected.tables {
        let name = CheckName::Table { schema: table.schema.clone(), name: table.name.clone() };
        let outcome = match restored.table(&table.schema, &table.name) {
            None => CheckOutcome::Mismatch { expected: format!("{} rows", table.rows), found: "no such table".into() },
            Some(r) if r.rows != table.rows => {
                CheckOutcome::Mismatch { expected: format!("{} rows", table.rows), found: format!("{} rows", r.rows) }
            }
            Some(r) if rows == RowCheck::Digests && r.digest != table.digest => CheckOutcome::Mismatch {
                expected: format!("{} rows, digest {}", table.rows, table.digest),
                found: format!("{} rows, digest {} (same count, different content)", r.rows, r.digest),
            },
            Some(_) if rows == RowCheck::Digests => CheckOutcome::ok(format!("{} rows, digest equal", table.rows)),
            Some(_) => CheckOutcome::ok(format!("{} rows (counted; contents not compared)", table.rows)),
        };
        out.push(CheckResult { name, outcome });
    }
    let schema = if expected.schema_digest == restored.schema_digest {
        CheckOutcome::ok("equal")
    } else {
        CheckOutcome::Mismatch { expected: expected.schema_digest.clone(), found: restored.schema_digest.clone() }
    };
    out.push(CheckResult { name: CheckName::SchemaDigest, outcome: schema });
    if expected.algorithm == crate::domain::dump_parser::FINGERPRINT_V2 {
        let sequences = if expected.sequences == restored.sequences {
            CheckOutcome::ok(format!("{} sequences", expected.sequences.len()))
        } else {
            let differ: Vec<String> = expected
                .sequences
                .iter()
                .filter(|s| !restored.sequences.contains(s))
                .take(10)
                .map(|s| match restored.sequences.iter().find(|r| r.name == s.name) {
                    Some(r) => format!(
                        "{} is {} (called: {}), expected {} (called: {})",
                        s.name, r.value, r.is_called, s.value, s.is_called
                    ),
                    None => format!("{} is missing", s.name),
                })
                .collect();
            CheckOutcome::Mismatch {
                expected: format!("{} sequences as dumped", expected.sequences.len()),
                found: differ.join("; "),
            }
        };
        out.push(CheckResult { name: CheckName::Sequences, outcome: sequences });
        let large_objects = if expected.large_objects == restored.large_objects {
            CheckOutcome::ok(format!("{} large objects", expected.large_objects))
        } else {
            CheckOutcome::Mismatch {
                expected: format!("{} large objects", expected.large_objects),
                found: format!("{} large objects", restored.large_objects),
            }
        };
        out.push(CheckResult { name: CheckName::LargeObjects, outcome: large_objects });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(tables: &[(&str, u64, &str)], schema: &str) -> Fingerprint {
        Fingerprint {
            algorithm: "a".into(),
            schema_digest: schema.into(),
            tables: tables
                .iter()
                .map(|(n, r, d)| TableFingerprint {
                    schema: "public".into(),
                    name: (*n).into(),
                    rows: *r,
                    digest: (*d).into(),
                })
                .collect(),
            sequences: Vec::new(),
            large_objects: 0,
        }
    }

    #[test]
    fn equal_fingerprints_pass_every_check() {
        let a = fp(&[("t", 2, "x"), ("u", 0, "0")], "s");
        let checks = compare_fingerprints(&a, &a, RowCheck::Digests);
        assert_eq!(checks.len(), 4, "table set, two tables, schema");
        assert!(checks.iter().all(|c| !c.outcome.is_failure()));
    }

    #[test]
    fn each_kind_of_difference_names_its_check() {
        let a = fp(&[("t", 2, "x"), ("u", 1, "y")], "s");
        let b = fp(&[("t", 2, "CHANGED"), ("v", 1, "y")], "s2");
        let failed: Vec<String> = compare_fingerprints(&a, &b, RowCheck::Digests)
            .iter()
            .filter(|c| c.outcome.is_failure())
            .map(|c| c.name.label())
            .collect();
        assert_eq!(failed, vec!["table_set", "table public.t", "table public.u", "schema_digest"]);
    }

    #[test]
    fn a_check_that_could_not_run_is_not_failed_and_withholds_the_verdict() {
        let mut report = VerificationReport::default();
        report.push(CheckName::ObjectChecksum, CheckOutcome::ok("intact"));
        report.push(CheckName::Restore, CheckOutcome::Error { message: "psql failed".into() });
        report.mark_not_run(
            [CheckName::ObjectChecksum, CheckName::TableSet, CheckName::SchemaDigest],
            "the drill stopped at restore",
        );
        let failed: Vec<String> = report.failures().iter().map(|c| c.name.label()).collect();
        assert_eq!(failed, vec!["restore"], "only the check that failed is named as failed");
        let not_run: Vec<String> = report.not_run().iter().map(|c| c.name.label()).collect();
        assert_eq!(not_run, vec!["table_set", "schema_digest"], "a check with a result keeps it");
        assert!(!report.passed());

        let mut unproven = VerificationReport::default();
        unproven.push(CheckName::Restore, CheckOutcome::ok("restored"));
        unproven.push(CheckName::ObjectChecksum, CheckOutcome::not_run("the dump could not be read whole"));
        assert!(unproven.failures().is_empty());
        assert!(!unproven.passed(), "nothing unproven counts as verified");
    }
}
