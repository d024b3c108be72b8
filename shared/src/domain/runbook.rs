//! Where an alert's reader goes next: the runbook section (in `docs/operations.md`) that says what to do.
//!
//! Alerts carry a [`Runbook`] instead of writing the link into their text, so the one place that sends them
//! (the alert adapters) turns it into `Runbook: <base>docs/operations.md#section`: a clickable address when the
//! deployment sets `runbook_url` (e.g. the repository's `https://github.com/ORG/backstop/blob/main/`), a path
//! in the repository otherwise. Every section named here exists: a test reads the document's headings.

/// A section of the operations guide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runbook {
    /// The document, relative to the repository root.
    pub doc: &'static str,
    /// The GitHub heading anchor of the section.
    pub anchor: &'static str,
}

const OPERATIONS: &str = "docs/operations.md";

pub const BACKUP_FAILED: Runbook = Runbook { doc: OPERATIONS, anchor: "a-backup-failed" };
pub const BACKUP_WARNED: Runbook = Runbook { doc: OPERATIONS, anchor: "a-backup-completed-with-a-warning" };
pub const PURGE_FAILED: Runbook = Runbook { doc: OPERATIONS, anchor: "a-purge-failed" };
pub const BACKUPS_LOST: Runbook = Runbook { doc: OPERATIONS, anchor: "backups-lost-from-the-bucket" };
pub const DRILL_FAILED: Runbook = Runbook { doc: OPERATIONS, anchor: "a-restore-drill-failed" };
pub const DRILL_INCONCLUSIVE: Runbook = Runbook { doc: OPERATIONS, anchor: "an-inconclusive-drill" };
pub const BACKUPS_TOO_OLD: Runbook = Runbook { doc: OPERATIONS, anchor: "backups-are-too-old" };
pub const VERIFICATION_TOO_OLD: Runbook = Runbook { doc: OPERATIONS, anchor: "verification-is-too-old-or-failed" };
pub const BACKUPS_KEEP_FAILING: Runbook = Runbook { doc: OPERATIONS, anchor: "backups-keep-failing" };
pub const DUMP_SHRANK: Runbook = Runbook { doc: OPERATIONS, anchor: "the-dump-shrank" };
pub const TABLE_LOST_ROWS: Runbook = Runbook { doc: OPERATIONS, anchor: "a-table-lost-rows" };
pub const SERVER_DATABASES: Runbook = Runbook { doc: OPERATIONS, anchor: "a-servers-databases-changed" };

/// Every section an alert can link to (the test checks each against the document).
pub const ALL: [Runbook; 12] = [
    BACKUP_FAILED,
    BACKUP_WARNED,
    PURGE_FAILED,
    BACKUPS_LOST,
    DRILL_FAILED,
    DRILL_INCONCLUSIVE,
    BACKUPS_TOO_OLD,
    VERIFICATION_TOO_OLD,
    BACKUPS_KEEP_FAILING,
    DUMP_SHRANK,
    TABLE_LOST_ROWS,
    SERVER_DATABASES,
];

impl Runbook {
    /// The link under `base` (empty: the path in the repository). A base without a trailing `/` gets one.
    pub fn link(&self, base: &str) -> String {
        let base = base.trim();
        let separator = if base.is_empty() || base.ends_with('/') { "" } else { "/" };
        format!("{base}{separator}{}#{}", self.doc, self.anchor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's heading anchors: lower case, punctuation other than `-` and `_` dropped, spaces to `-`.
    fn anchor(heading: &str) -> String {
        heading
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect()
    }

    #[test]
    fn every_runbook_link_has_its_section() {
        let doc = include_str!("../../../docs/operations.md");
        let anchors: Vec<String> = doc
            .lines()
            .filter_map(|l| l.trim_start_matches('#').strip_prefix(' ').filter(|_| l.starts_with('#')))
            .map(anchor)
            .collect();
        for runbook in ALL {
            assert_eq!(runbook.doc, OPERATIONS);
            assert!(
                anchors.iter().any(|a| a == runbook.anchor),
                "docs/operations.md has no section #{}",
                runbook.anchor
            );
        }
    }

    #[test]
    fn links_are_relative_or_under_the_configured_base() {
        assert_eq!(BACKUP_FAILED.link(""), "docs/operations.md#a-backup-failed");
        assert_eq!(
            BACKUP_FAILED.link("https://github.com/o/backstop/blob/main/"),
            "https://github.com/o/backstop/blob/main/docs/operations.md#a-backup-failed"
        );
        assert_eq!(
            BACKUP_FAILED.link("https://docs.example/b"),
            "https://docs.example/b/docs/operations.md#a-backup-failed"
        );
    }
}
