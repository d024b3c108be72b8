//! Servers as targets: a configured target with `databases` patterns stands for every database on its server
//! that matches them, found at run time, each backed up, drilled, purged and watched as a target of its own
//! (named `<server>.<database>`). Pure: which databases a server's list selects, what each unit is called, and how
//! the inventory the catalog keeps of a server changes when a new list arrives.
//!
//! The inventory is what every job reads (the backup fan-out writes it): a database added to the server is
//! backed up from the next scheduled run without a deploy; one that disappears is no longer backed up, its
//! backups stay under retention, and the run that sees it go says so once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The separator between a server's name and a database's in a unit's name. Configured names cannot hold it,
/// so a unit's name never collides with a configured target's.
pub const UNIT_SEPARATOR: char = '.';

/// Databases no pattern selects: templates and those that refuse connections are filtered by the query;
/// `rdsadmin` is RDS's own, which no customer role may read.
const NEVER_SELECTED: &[&str] = &["rdsadmin"];

/// Which of a server's databases a target stands for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DatabaseSelection {
    /// Glob patterns (`*` any run of characters, `?` one character), matched against the whole name.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl DatabaseSelection {
    pub fn selects(&self, database: &str) -> bool {
        !NEVER_SELECTED.contains(&database)
            && self.include.iter().any(|p| glob_matches(p, database))
            && !self.exclude.iter().any(|p| glob_matches(p, database))
    }
}

/// Whether `name` matches `pattern` as a whole: `*` matches any run of characters (none too), `?` exactly one,
/// everything else itself (case-sensitive, as PostgreSQL's database names are).
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    // The classic two-pointer match with one backtrack point: linear in practice, never exponential.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((star_p, star_n)) = star {
            p = star_p + 1;
            n = star_n + 1;
            star = Some((star_p, star_n + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// Target names become S3 key segments and DynamoDB keys: keep them short and plain.
pub fn valid_target_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 63 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The unit name of `database` on `server`, or `None` when the database's name cannot be part of S3 keys and
/// catalog keys as it is (spaces, non-ASCII, more than 63 characters): such a database is configured as a target
/// of its own, with a plain name.
pub fn unit_name(server: &str, database: &str) -> Option<String> {
    valid_target_name(database).then(|| format!("{server}{UNIT_SEPARATOR}{database}"))
}

/// A name a request may use: a configured target's, or a discovered unit's (`<server>.<database>`).
pub fn valid_unit_name(name: &str) -> bool {
    match name.split_once(UNIT_SEPARATOR) {
        None => valid_target_name(name),
        Some((server, database)) => valid_target_name(server) && valid_target_name(database),
    }
}

/// What the catalog keeps of one server: every database the selection has chosen since it was first seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInventory {
    /// The configured target's name.
    pub server: String,
    /// When the server's list was last read successfully.
    pub discovered_at: DateTime<Utc>,
    pub databases: Vec<KnownDatabase>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownDatabase {
    pub name: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

impl ServerInventory {
    /// The databases the last successful read found (and the selection chose).
    pub fn present(&self) -> impl Iterator<Item = &KnownDatabase> {
        self.databases.iter().filter(|d| d.last_seen == self.discovered_at)
    }

    /// The databases once found that the last read did not: no longer backed up, their backups kept.
    pub fn gone(&self) -> impl Iterator<Item = &KnownDatabase> {
        self.databases.iter().filter(|d| d.last_seen != self.discovered_at)
    }
}

/// What a new list of a server's databases changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InventoryChanges {
    /// Selected and seen for the first time (or again after being gone).
    pub added: Vec<String>,
    /// Present at the last read, missing (or no longer selected) now.
    pub gone: Vec<String>,
    /// Selected, but their names cannot be unit names: not backed up until configured as targets of their own.
    pub unnameable: Vec<String>,
}

/// The server's inventory after reading `listed` (every database that accepts connections) at `now`, from the
/// `previous` one, and what changed. A database not selected any more counts as gone, like a dropped one: its
/// backups stay, it is not backed up.
pub fn merge_inventory(
    server: &str,
    previous: Option<&ServerInventory>,
    listed: &[String],
    selection: &DatabaseSelection,
    now: DateTime<Utc>,
) -> (ServerInventory, InventoryChanges) {
    let mut changes = InventoryChanges::default();
    let was_present = |name: &str| previous.is_some_and(|p| p.present().any(|d| d.name == name));
    let mut databases: Vec<KnownDatabase> = Vec::new();
    let mut selected: Vec<&String> = listed.iter().filter(|name| selection.selects(name)).collect();
    selected.sort();
    selected.dedup();
    for name in selected {
        if unit_name(server, name).is_none() {
            changes.unnameable.push(name.clone());
            continue;
        }
        let first_seen =
            previous.and_then(|p| p.databases.iter().find(|d| &d.name == name)).map_or(now, |d| d.first_seen);
        if !was_present(name) {
            changes.added.push(name.clone());
        }
        databases.push(KnownDatabase { name: name.clone(), first_seen, last_seen: now });
    }
    for old in previous.map(|p| p.databases.as_slice()).unwrap_or_default() {
        if databases.iter().any(|d| d.name == old.name) {
            continue;
        }
        if was_present(&old.name) {
            changes.gone.push(old.name.clone());
        }
        databases.push(old.clone());
    }
    databases.sort_by(|a, b| a.name.cmp(&b.name));
    (ServerInventory { server: server.to_string(), discovered_at: now, databases }, changes)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn selection(include: &[&str], exclude: &[&str]) -> DatabaseSelection {
        DatabaseSelection {
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, d, 3, 0, 0).unwrap()
    }

    #[test]
    fn globs_match_whole_names() {
        let table = [
            ("*", "", true),
            ("*", "orders", true),
            ("orders", "orders", true),
            ("orders", "orders2", false),
            ("order?", "orders", true),
            ("order?", "order", false),
            ("app_*", "app_billing", true),
            ("app_*", "xapp_billing", false),
            ("*_prod", "eu_prod", true),
            ("*_prod", "eu_prod_old", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("*a*", "banana", true),
            ("**", "x", true),
            ("Orders", "orders", false),
            ("é*", "été", true),
        ];
        for (pattern, name, expected) in table {
            assert_eq!(glob_matches(pattern, name), expected, "{pattern:?} against {name:?}");
        }
    }

    #[test]
    fn a_long_pattern_of_stars_is_quick() {
        let pattern = "*a".repeat(30);
        assert!(!glob_matches(&pattern, &"a".repeat(29)));
        assert!(glob_matches(&pattern, &"a".repeat(40)));
    }

    #[test]
    fn selection_takes_includes_minus_excludes_and_never_rdsadmin() {
        let s = selection(&["*"], &["*_scratch", "postgres"]);
        assert!(s.selects("orders"));
        assert!(!s.selects("orders_scratch"));
        assert!(!s.selects("postgres"));
        assert!(!s.selects("rdsadmin"));
        assert!(!selection(&[], &[]).selects("orders"));
    }

    #[test]
    fn unit_names_join_server_and_database_and_refuse_what_keys_cannot_hold() {
        assert_eq!(unit_name("prod", "orders").as_deref(), Some("prod.orders"));
        assert_eq!(unit_name("prod", "my db"), None);
        assert_eq!(unit_name("prod", "café"), None);
        assert_eq!(unit_name("prod", &"x".repeat(64)), None);
        assert!(valid_unit_name("prod.orders") && valid_unit_name("orders"));
        for bad in ["prod.", ".orders", "prod.a.b", "prod/orders", "", "prod.my db"] {
            assert!(!valid_unit_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_first_read_adds_every_selected_database() {
        let (inventory, changes) = merge_inventory(
            "prod",
            None,
            &names(&["b", "a", "template1x", "my db"]),
            &selection(&["*"], &["t*"]),
            day(1),
        );
        assert_eq!(changes.added, names(&["a", "b"]));
        assert_eq!(changes.unnameable, names(&["my db"]));
        assert!(changes.gone.is_empty());
        assert_eq!(inventory.present().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(inventory.gone().count(), 0);
    }

    #[test]
    fn a_new_database_is_added_a_dropped_one_is_gone_once_and_kept() {
        let s = selection(&["*"], &[]);
        let (first, _) = merge_inventory("prod", None, &names(&["a", "b"]), &s, day(1));
        let (second, changes) = merge_inventory("prod", Some(&first), &names(&["a", "c"]), &s, day(2));
        assert_eq!((changes.added, changes.gone), (names(&["c"]), names(&["b"])));
        assert_eq!(second.present().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(second.gone().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["b"]);
        let a = second.databases.iter().find(|d| d.name == "a").unwrap();
        assert_eq!((a.first_seen, a.last_seen), (day(1), day(2)));
        // The next read says nothing new about `b`: it was gone already.
        let (third, changes) = merge_inventory("prod", Some(&second), &names(&["a", "c"]), &s, day(3));
        assert_eq!(changes, InventoryChanges::default());
        let b = third.databases.iter().find(|d| d.name == "b").unwrap();
        assert_eq!(b.last_seen, day(1));
        // It comes back: added again, first seen as before.
        let (fourth, changes) = merge_inventory("prod", Some(&third), &names(&["a", "b", "c"]), &s, day(4));
        assert_eq!(changes.added, names(&["b"]));
        let b = fourth.databases.iter().find(|d| d.name == "b").unwrap();
        assert_eq!((b.first_seen, b.last_seen), (day(1), day(4)));
    }

    #[test]
    fn a_database_excluded_later_counts_as_gone() {
        let (first, _) = merge_inventory("prod", None, &names(&["a", "b"]), &selection(&["*"], &[]), day(1));
        let (_, changes) =
            merge_inventory("prod", Some(&first), &names(&["a", "b"]), &selection(&["*"], &["b"]), day(2));
        assert_eq!(changes.gone, names(&["b"]));
    }

    #[test]
    fn an_empty_list_makes_every_database_gone() {
        let s = selection(&["*"], &[]);
        let (first, _) = merge_inventory("prod", None, &names(&["a"]), &s, day(1));
        let (second, changes) = merge_inventory("prod", Some(&first), &[], &s, day(2));
        assert_eq!(changes.gone, names(&["a"]));
        assert_eq!(second.present().count(), 0);
    }
}
