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
    /// The tables of a database with more than [`TABLES_LISTED`] that are not listed one by one, together: how
    /// many read back as dumped, and which did not.
    OtherTables,
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
            CheckName::OtherTables => "other_tables".into(),
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

    /// Why this drill says nothing of the backup, when it failed only by its own failure (its scratch server
    /// crashed, ran out of disk, lost the connection; its invocation's time ran out: `domain::scratch_fault`):
    /// every failure is an error marked as such. A mismatch, or any error without a mark, is the backup's, and
    /// the drill's verdict stands.
    pub fn scratch_fault(&self) -> Option<String> {
        use crate::domain::scratch_fault::{marked_fault, of_the_scratch_server};
        let mut why = None;
        for check in self.failures() {
            let CheckOutcome::Error { message } = &check.outcome else { return None };
            let fault = marked_fault(message)?;
            why.get_or_insert_with(|| {
                format!("{} during the {} check", of_the_scratch_server(fault), check.name.label())
            });
        }
        why
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

/// Tables a report lists one by one; the rest are one [`CheckName::OtherTables`] check. The report is stored in
/// one catalog record (DynamoDB's items hold 400 KB): a check per table of a database of thousands would not fit,
/// and the drill could never save its verdict.
pub const TABLES_LISTED: usize = 500;
/// Table names a mismatch names before it only counts the rest.
const NAMES_SHOWN: usize = 20;

/// Compares the fingerprint the backup recorded with the restored copy's: the table set, each table's rows and
/// digest (rows only with [`RowCheck::Counts`]), the schema digest, and (scheme v2) sequences and large objects.
/// With more than [`TABLES_LISTED`] tables, the failed ones are listed first, then the largest of the others;
/// the rest are summed up in one check, failed when any of them is.
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
            expected: format!("missing after restore: {}", some_names(&missing)),
            found: format!("not in the backup: {}", some_names(&extra)),
        }
    };
    out.push(CheckResult { name: CheckName::TableSet, outcome: table_set });
    out.extend(table_checks(expected, restored, rows));
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

/// Each table's check, in the backup's order; past [`TABLES_LISTED`], the failed ones and the largest of the
/// others, then one [`CheckName::OtherTables`] for the rest.
fn table_checks(expected: &Fingerprint, restored: &Fingerprint, rows: RowCheck) -> Vec<CheckResult> {
    // By name: a linear search per table would make a database of 100,000 tables take minutes here.
    let restored_tables: std::collections::HashMap<(&str, &str), &TableFingerprint> =
        restored.tables.iter().map(|t| ((t.schema.as_str(), t.name.as_str()), t)).collect();
    let checks: Vec<(&TableFingerprint, CheckResult)> = expected
        .tables
        .iter()
        .map(|table| {
            let name = CheckName::Table { schema: table.schema.clone(), name: table.name.clone() };
            let outcome = match restored_tables.get(&(table.schema.as_str(), table.name.as_str())) {
                None => {
                    CheckOutcome::Mismatch { expected: format!("{} rows", table.rows), found: "no such table".into() }
                }
                Some(r) if r.rows != table.rows => CheckOutcome::Mismatch {
                    expected: format!("{} rows", table.rows),
                    found: format!("{} rows", r.rows),
                },
                Some(r) if rows == RowCheck::Digests && r.digest != table.digest => CheckOutcome::Mismatch {
                    expected: format!("{} rows, digest {}", table.rows, table.digest),
                    found: format!("{} rows, digest {} (same count, different content)", r.rows, r.digest),
                },
                Some(_) if rows == RowCheck::Digests => CheckOutcome::ok(format!("{} rows, digest equal", table.rows)),
                Some(_) => CheckOutcome::ok(format!("{} rows (counted; contents not compared)", table.rows)),
            };
            (table, CheckResult { name, outcome })
        })
        .collect();
    if checks.len() <= TABLES_LISTED {
        return checks.into_iter().map(|(_, check)| check).collect();
    }
    // Which to list: every failure first (up to the limit), then the others by rows, largest first.
    let mut by_interest: Vec<usize> = (0..checks.len()).collect();
    by_interest.sort_by_key(|&i| (!checks[i].1.outcome.is_failure(), std::cmp::Reverse(checks[i].0.rows)));
    let mut listed = vec![false; checks.len()];
    for &i in by_interest.iter().take(TABLES_LISTED) {
        listed[i] = true;
    }
    let (mut shown, mut others) = (Vec::new(), Vec::new());
    for ((table, check), listed) in checks.into_iter().zip(listed) {
        if listed {
            shown.push(check);
        } else {
            others.push((table, check));
        }
    }
    let rows_in_all: u64 = others.iter().map(|(t, _)| t.rows).sum();
    let failed: Vec<String> =
        others.iter().filter(|(_, c)| c.outcome.is_failure()).map(|(t, _)| t.qualified_name()).collect();
    let how = if rows == RowCheck::Digests { "rows and digests" } else { "rows counted" };
    let outcome = if failed.is_empty() {
        CheckOutcome::ok(format!(
            "{} more tables, not listed one by one, each as dumped ({how}): {rows_in_all} rows in all",
            others.len()
        ))
    } else {
        CheckOutcome::Mismatch {
            expected: format!("{} more tables, not listed one by one, each as dumped ({how})", others.len()),
            found: format!("{} of them differ: {}", failed.len(), some_names(&failed)),
        }
    };
    shown.push(CheckResult { name: CheckName::OtherTables, outcome });
    shown
}

/// Names for a check's text: all of a few, the first [`NAMES_SHOWN`] of many and how many more.
fn some_names(names: &[String]) -> String {
    if names.len() <= NAMES_SHOWN {
        format!("{names:?}")
    } else {
        format!("{:?} and {} more", &names[..NAMES_SHOWN], names.len() - NAMES_SHOWN)
    }
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

    #[test]
    fn a_drill_that_failed_only_because_its_scratch_server_did_is_inconclusive() {
        let lost = CheckOutcome::Error {
            message: crate::domain::scratch_fault::mark(
                "restore failed (error): connection closed (loading t)",
                crate::domain::scratch_fault::CONNECTION_LOST,
            ),
        };
        let mut report = VerificationReport::default();
        report.push(CheckName::ObjectChecksum, CheckOutcome::ok("intact"));
        report.push(CheckName::Restore, lost.clone());
        report.mark_not_run([CheckName::TableSet], "the drill stopped at restore");
        assert_eq!(
            report.scratch_fault().as_deref(),
            Some("the connection to the scratch server was lost during the restore check")
        );

        let mut mismatched = report.clone();
        mismatched.push(CheckName::SchemaDigest, CheckOutcome::Mismatch { expected: "a".into(), found: "b".into() });
        assert_eq!(mismatched.scratch_fault(), None, "a difference found is the backup's, whatever else failed");
        let mut own_error = VerificationReport::default();
        own_error.push(
            CheckName::Restore,
            CheckOutcome::Error {
                message: "ERROR: duplicate key (SQLSTATE 23505); Key (m)=(connection closed) already exists".into(),
            },
        );
        assert_eq!(own_error.scratch_fault(), None, "only a mark says it was the server, not a row's text");
        let mut passed = VerificationReport::default();
        passed.push(CheckName::Restore, CheckOutcome::ok("restored"));
        assert_eq!(passed.scratch_fault(), None, "nothing failed");
    }

    #[test]
    fn a_database_of_thousands_of_tables_lists_its_failures_and_largest_tables_and_sums_up_the_rest() {
        // 10,000 tables with names as long as PostgreSQL allows; 3 differ.
        let long = |i: usize| format!("{:0>63}", i);
        let names: Vec<String> = (0..10_000).map(long).collect();
        let digest = "0123456789abcdef0123456789abcdef";
        let tables: Vec<(&str, u64, &str)> =
            names.iter().enumerate().map(|(i, n)| (n.as_str(), i as u64, digest)).collect();
        let expected = fp(&tables, "s");
        let mut restored = expected.clone();
        for i in [7, 4_000, 9_998] {
            restored.tables[i].digest = "f".repeat(32);
        }
        let checks = compare_fingerprints(&expected, &restored, RowCheck::Digests);
        let listed: Vec<&CheckResult> = checks.iter().filter(|c| matches!(c.name, CheckName::Table { .. })).collect();
        assert_eq!(listed.len(), TABLES_LISTED);
        let failed: Vec<String> = checks.iter().filter(|c| c.outcome.is_failure()).map(|c| c.name.label()).collect();
        assert_eq!(failed, [7, 4_000, 9_998].map(|i| format!("table public.{}", long(i))), "every failure is listed");
        assert!(
            listed.iter().any(|c| c.name.label().ends_with(&long(9_999))),
            "then the largest of the others (rows = index here)"
        );
        let others = checks.iter().find(|c| c.name == CheckName::OtherTables).expect("the rest in one check");
        assert!(
            matches!(&others.outcome, CheckOutcome::Ok { detail } if detail.starts_with("9500 more tables")),
            "{others:?}"
        );

        // Every table differs: the failures past the listed ones fail the summing-up check, which names some.
        restored.tables.iter_mut().for_each(|t| t.digest = "f".repeat(32));
        let checks = compare_fingerprints(&expected, &restored, RowCheck::Digests);
        let others = checks.iter().find(|c| c.name == CheckName::OtherTables).unwrap();
        assert!(
            matches!(&others.outcome, CheckOutcome::Mismatch { found, .. } if found.starts_with("9500 of them differ") && found.ends_with("and 9480 more")),
            "{others:?}"
        );
        // What the drill's record stores stays far under DynamoDB's 400 KB per item.
        let report = VerificationReport { checks, ..Default::default() };
        let stored = serde_json::to_vec(&report).unwrap().len();
        assert!(stored < 250_000, "{stored} bytes");

        // A copy missing thousands of tables names some and counts the rest.
        let checks = compare_fingerprints(&expected, &fp(&[], "s"), RowCheck::Digests);
        let set = checks.iter().find(|c| c.name == CheckName::TableSet).unwrap();
        assert!(
            matches!(&set.outcome, CheckOutcome::Mismatch { expected, .. } if expected.ends_with("and 9980 more")),
            "{set:?}"
        );
    }
}
