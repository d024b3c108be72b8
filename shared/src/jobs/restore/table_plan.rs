//! Which statements and rows of a plain dump restore some of its tables (`backstop restore --table`), read
//! off the statements themselves, as `pg_restore -t` reads its table of contents:
//!
//! - a table chosen by a pattern brings its definition, its rows, and what belongs to it: the sequences it
//!   owns (`OWNED BY`, identity columns), its defaults, constraints, indexes, triggers, rules, policies,
//!   statistics objects, comments and grants;
//! - a statement that also names a relation left out (a foreign key to a table not restored, a partition's
//!   attachment to a parent not restored, a policy reading another table) is left out and said so;
//! - everything else of the dump (schemas, types, functions, views, other tables) is left out: the
//!   destination must already have what the table uses;
//! - the dump's own session settings (`SET …`) are kept, first, as psql would have run them.
//!
//! With `--as`, the table and everything it owns get new names, so the copy sits beside the live table:
//! `orders_pkey` of `orders` restored as `orders_restored` becomes `orders_restored_pkey`.
//!
//! The plan is pure: [`plan`] takes the dump's statements in order and returns what to run.

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::fingerprint::quote_ident;
use crate::domain::sql::quote_literal;
use crate::domain::sql::statement::sequence_value;
use crate::domain::sql::tokens::{parse_qualified, qualified_names, tokens, Kind, Token};

/// `(schema, name)` of a relation (or of a constraint, which shares the schema's names with its index).
pub type Relation = (String, String);

/// PostgreSQL's longest identifier, in bytes (NAMEDATALEN − 1).
const MAX_IDENTIFIER: usize = 63;

pub fn display(relation: &Relation) -> String {
    format!("{}.{}", quote_ident(&relation.0), quote_ident(&relation.1))
}

/// A part of the dump, in dump order: statements, or one table's rows (segment `segment` of the layout).
#[derive(Debug, Clone)]
pub enum DumpPart {
    Sql(Vec<String>),
    Rows { segment: usize, table: Relation, statement: String },
}

/// What to run, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Sql(String),
    /// The rows of layout segment `segment`, whose chunks start with `statement`, loaded with `restored_statement`.
    Rows {
        segment: usize,
        table: Relation,
        statement: String,
        restored_statement: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTable {
    pub source: Relation,
    pub restored: Relation,
}

#[derive(Debug, Clone, Default)]
pub struct TablePlan {
    pub tables: Vec<PlannedTable>,
    pub steps: Vec<Step>,
    /// Statements left out because they name relations not restored, each with why.
    pub left_out: Vec<String>,
    /// Relations outside the selection that restored definitions use: the destination must have them.
    pub uses: Vec<String>,
    /// Sequence values set: the name as the backup's fingerprint holds it, and as restored.
    pub sequences: Vec<(String, String)>,
}

/// A `--table` pattern: `schema.name`, `name` (any schema), with `*` and `?`; quoted parts are literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePattern {
    text: String,
    schema: Option<Vec<PatternChar>>,
    name: Vec<PatternChar>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatternChar {
    Literal(char),
    Any,
    One,
}

impl TablePattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts = pattern_parts(text)?;
        let (schema, name) = match parts.as_slice() {
            [name] => (None, name.clone()),
            [schema, name] => (Some(schema.clone()), name.clone()),
            _ => return Err(format!("{text:?} is not SCHEMA.TABLE (quote a name that holds a dot: \"a.b\")")),
        };
        if name.is_empty() || schema.as_ref().is_some_and(Vec::is_empty) {
            return Err(format!("{text:?} has an empty name: write SCHEMA.TABLE"));
        }
        Ok(TablePattern { text: text.to_string(), schema, name })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, relation: &Relation) -> bool {
        self.schema.as_ref().is_none_or(|s| glob(s, &relation.0)) && glob(&self.name, &relation.1)
    }
}

/// A name for `--as`: `schema.name`, no wildcards.
pub fn parse_new_name(text: &str) -> Result<Relation, String> {
    let pattern = TablePattern::parse(text)?;
    let literal = |p: &[PatternChar]| -> Option<String> {
        p.iter().map(|c| if let PatternChar::Literal(c) = c { Some(*c) } else { None }).collect()
    };
    let (Some(schema), Some(name)) = (pattern.schema.as_deref().and_then(literal), literal(&pattern.name)) else {
        return Err(format!(
            "--as {text:?} must name one table as SCHEMA.NAME, without * or ? (quote a name that holds them)"
        ));
    };
    if name.len() > MAX_IDENTIFIER || schema.len() > MAX_IDENTIFIER {
        return Err(format!("--as {text:?}: PostgreSQL names are at most {MAX_IDENTIFIER} bytes"));
    }
    Ok((schema, name))
}

/// Splits at unquoted dots; unquoted letters fold to lower case, as the server folds names.
fn pattern_parts(text: &str) -> Result<Vec<Vec<PatternChar>>, String> {
    let mut parts = vec![Vec::new()];
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        let part = parts.last_mut().expect("one part at least");
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                part.push(PatternChar::Literal('"'));
            }
            (_, '"') => quoted = !quoted,
            (true, c) => part.push(PatternChar::Literal(c)),
            (false, '.') => parts.push(Vec::new()),
            (false, '*') => part.push(PatternChar::Any),
            (false, '?') => part.push(PatternChar::One),
            (false, c) => part.extend(c.to_lowercase().map(PatternChar::Literal)),
        }
    }
    if quoted {
        return Err(format!("{text:?} has a quote that is not closed"));
    }
    Ok(parts)
}

fn glob(pattern: &[PatternChar], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    // matched[j]: the pattern so far matches text[..j].
    let mut matched = vec![false; text.len() + 1];
    matched[0] = true;
    for p in pattern {
        let mut next = vec![false; text.len() + 1];
        for j in 0..=text.len() {
            next[j] = match p {
                PatternChar::Any => matched[j] || (j > 0 && next[j - 1]),
                PatternChar::One => j > 0 && matched[j - 1],
                PatternChar::Literal(c) => j > 0 && matched[j - 1] && text[j - 1] == *c,
            };
        }
        matched = next;
    }
    matched[text.len()]
}

/// Where a statement names a relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Site {
    /// `schema.name` at this token (three tokens).
    Qualified(usize),
    /// A string literal at this token holding the name (`'app.s'::regclass`, `setval('app.s', …)`).
    Literal(usize),
    /// A bare name at this token, in the schema of the statement's table (an index's or constraint's).
    Bare(usize),
}

#[derive(Debug, Clone)]
struct Reference {
    relation: Relation,
    site: Site,
    /// Whether naming a relation left out keeps the statement out (a default's sequence does not: the
    /// destination may have it).
    binding: bool,
}

/// What one statement does to relations, read off its tokens.
#[derive(Debug, Default)]
struct Facts {
    /// A statement a table restore may run (table-scoped), as opposed to schema-wide objects.
    scoped: bool,
    session: bool,
    creates_table: Option<Relation>,
    /// Relations it creates other than tables, with the table owning each when the statement says.
    creates: Vec<(Relation, Option<Relation>)>,
    /// `ALTER SEQUENCE s OWNED BY t.c`.
    owned_by: Option<(Relation, Relation)>,
    references: Vec<Reference>,
}

fn word(tokens: &[Token<'_>], i: usize) -> String {
    tokens.get(i).filter(|t| t.kind == Kind::Word).map(|t| t.text.to_ascii_uppercase()).unwrap_or_default()
}

fn analyse(statement: &str) -> Facts {
    let mut facts = Facts::default();
    let trimmed = statement.trim_start();
    if trimmed.starts_with("SET ") || trimmed.starts_with("SELECT pg_catalog.set_config(") {
        facts.session = true;
        return facts;
    }
    let toks = tokens(statement);
    let names = qualified_names(&toks);
    let first = names.first().map(|q| (q.schema.clone(), q.name.clone()));
    let w = |i: usize| word(&toks, i);
    for q in &names {
        facts.references.push(Reference {
            relation: (q.schema.clone(), q.name.clone()),
            site: Site::Qualified(q.token),
            binding: true,
        });
    }
    // Regclass literals: `'app.s'::regclass`.
    for (i, t) in toks.iter().enumerate() {
        let cast = toks.get(i + 1).is_some_and(|t| t.is_punct(':'))
            && toks.get(i + 2).is_some_and(|t| t.is_punct(':'))
            && toks.get(i + 3).is_some_and(|t| t.is_word("regclass"));
        if let (true, Some(relation)) = (cast, t.string_value().as_deref().and_then(parse_qualified)) {
            facts.references.push(Reference { relation, site: Site::Literal(i), binding: false });
        }
    }
    let bare = |facts: &mut Facts, i: usize, creates: bool| {
        if let (Some(table), Some(name)) = (&first, toks.get(i).and_then(Token::ident)) {
            let relation = (table.0.clone(), name);
            facts.references.push(Reference { relation: relation.clone(), site: Site::Bare(i), binding: true });
            if creates {
                facts.creates.push((relation, Some(table.clone())));
            }
        }
    };
    match (w(0).as_str(), w(1).as_str()) {
        ("CREATE", _) => {
            let mut i = 1;
            let mut foreign = false;
            while matches!(
                w(i).as_str(),
                "UNLOGGED" | "UNIQUE" | "OR" | "REPLACE" | "MATERIALIZED" | "FOREIGN" | "CONSTRAINT" | "RECURSIVE"
            ) {
                foreign |= w(i) == "FOREIGN";
                i += 1;
            }
            match w(i).as_str() {
                "TABLE" if !foreign => {
                    facts.scoped = true;
                    facts.creates_table = first.clone();
                }
                "TABLE" | "VIEW" => facts.creates.extend(first.clone().map(|r| (r, None))),
                "SEQUENCE" => {
                    facts.scoped = true;
                    facts.creates.extend(first.clone().map(|r| (r, None)));
                }
                "INDEX" => {
                    facts.scoped = true;
                    let mut at = i + 1;
                    while matches!(w(at).as_str(), "CONCURRENTLY" | "IF" | "NOT" | "EXISTS") {
                        at += 1;
                    }
                    if toks.get(at + 1).is_some_and(|t| t.is_word("ON")) {
                        bare(&mut facts, at, true);
                    }
                }
                "STATISTICS" => {
                    facts.scoped = true;
                    let table = names.last().map(|q| (q.schema.clone(), q.name.clone()));
                    facts.creates.extend(first.clone().map(|r| (r, table)));
                }
                "TRIGGER" | "RULE" | "POLICY" => facts.scoped = true,
                _ => {}
            }
        }
        ("ALTER", "TABLE") => {
            facts.scoped = true;
            for i in 0..toks.len() {
                if toks[i].is_word("ADD") && toks.get(i + 1).is_some_and(|t| t.is_word("CONSTRAINT")) {
                    bare(&mut facts, i + 2, true);
                }
                if toks[i].is_word("SEQUENCE") && toks.get(i + 1).is_some_and(|t| t.is_word("NAME")) {
                    if let Some(q) = names.iter().find(|q| q.token == i + 2) {
                        facts.creates.push(((q.schema.clone(), q.name.clone()), first.clone()));
                    }
                }
            }
        }
        ("ALTER", "SEQUENCE") => {
            facts.scoped = true;
            let owned = toks.windows(2).any(|p| p[0].is_word("OWNED") && p[1].is_word("BY"));
            if let (true, [sequence, table, ..]) = (owned, names.as_slice()) {
                facts.owned_by = Some((
                    (sequence.schema.clone(), sequence.name.clone()),
                    (table.schema.clone(), table.name.clone()),
                ));
            }
        }
        ("ALTER", "INDEX" | "STATISTICS") => facts.scoped = true,
        ("COMMENT", "ON") => {
            facts.scoped = matches!(
                w(2).as_str(),
                "TABLE" | "COLUMN" | "INDEX" | "SEQUENCE" | "CONSTRAINT" | "TRIGGER" | "RULE" | "POLICY" | "STATISTICS"
            );
            if w(2) == "CONSTRAINT" && w(5) != "DOMAIN" {
                bare(&mut facts, 3, false);
            }
        }
        ("SECURITY", "LABEL") => {
            let on = toks.iter().position(|t| t.is_word("ON")).unwrap_or(toks.len());
            facts.scoped = matches!(w(on + 1).as_str(), "TABLE" | "COLUMN" | "SEQUENCE");
        }
        ("GRANT" | "REVOKE", _) => {
            let on = toks.iter().position(|t| t.is_word("ON")).unwrap_or(toks.len());
            facts.scoped = matches!(w(on + 1).as_str(), "TABLE" | "SEQUENCE");
        }
        ("SELECT", _) if trimmed.starts_with("SELECT pg_catalog.setval(") => {
            facts.scoped = true;
            if let Some((i, relation)) = toks
                .iter()
                .enumerate()
                .find_map(|(i, t)| t.string_value().as_deref().and_then(parse_qualified).map(|r| (i, r)))
            {
                facts.references.push(Reference { relation, site: Site::Literal(i), binding: true });
            }
        }
        _ => {}
    }
    facts
}

/// The statements of a run of SQL, as psql would split them; pg_dump's `\restrict` guards are dropped, and
/// any other psql command is refused (no pg_dump writes one).
pub fn statements(sql: &[u8]) -> Result<Vec<String>, String> {
    use crate::domain::sql::splitter::{split_all, Piece};
    let mut out = Vec::new();
    for piece in split_all(sql).map_err(|e| e.to_string())? {
        match piece {
            Piece::Statement(s) => out.push(String::from_utf8_lossy(&s).into_owned()),
            Piece::MetaCommand(m) if m.starts_with(b"\\restrict") || m.starts_with(b"\\unrestrict") => {}
            Piece::MetaCommand(m) => {
                return Err(format!("the dump holds a psql command: {}", String::from_utf8_lossy(&m)))
            }
        }
    }
    Ok(out)
}

/// The name an object of `old_table` takes when the table is restored as `new_table`: the table's name
/// at its start replaced (`orders_pkey` → `orders_restored_pkey`), or the new name put before it; cut to
/// PostgreSQL's 63 bytes with a hash of the whole, so two long names stay apart. A table moved to another schema
/// under its own name keeps its objects' names.
fn derived_name(object: &str, old_table: &str, new_table: &str) -> String {
    if old_table == new_table {
        // Only the schema changes: the names are free there as they are.
        return object.to_string();
    }
    let name = match object.strip_prefix(old_table) {
        Some(rest) => format!("{new_table}{rest}"),
        None => format!("{new_table}_{object}"),
    };
    if name.len() <= MAX_IDENTIFIER {
        return name;
    }
    let hash = format!("{:08x}", xxhash_rust::xxh3::xxh3_64(name.as_bytes()) as u32);
    let mut cut = MAX_IDENTIFIER - hash.len() - 1;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{hash}", &name[..cut])
}

fn excerpt(statement: &str) -> String {
    let one_line: String = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 120 {
        format!("{}…", one_line.chars().take(120).collect::<String>())
    } else {
        one_line
    }
}

/// Rewrites the names `renames` maps, in place.
fn rewrite(statement: &str, facts: &Facts, renames: &BTreeMap<Relation, Relation>) -> String {
    if renames.is_empty() {
        return statement.to_string();
    }
    let toks = tokens(statement);
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for r in &facts.references {
        let Some(new) = renames.get(&r.relation) else { continue };
        let edit = match r.site {
            Site::Qualified(i) => (toks[i].start, toks[i + 2].end(), display(new)),
            Site::Literal(i) => (toks[i].start, toks[i].end(), quote_literal(&display(new))),
            Site::Bare(i) => (toks[i].start, toks[i].end(), quote_ident(&new.1)),
        };
        edits.push(edit);
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    edits.dedup_by_key(|e| e.0);
    let mut out = statement.to_string();
    for (start, end, text) in edits {
        out.replace_range(start..end, &text);
    }
    out
}

/// The statements and rows that restore the tables `patterns` choose, renamed to `rename` when given (one
/// table only). Errors say what was asked that the dump cannot give.
pub fn plan(parts: &[DumpPart], patterns: &[TablePattern], rename: Option<&Relation>) -> Result<TablePlan, String> {
    let facts: Vec<Vec<Facts>> = parts
        .iter()
        .map(|p| match p {
            DumpPart::Sql(statements) => statements.iter().map(|s| analyse(s)).collect(),
            DumpPart::Rows { .. } => Vec::new(),
        })
        .collect();
    let all = || facts.iter().flatten();

    // Every relation the dump makes, and the table owning each that has one. Tables first, so a constraint
    // that happens to share a table's name never takes it over.
    let tables: Vec<Relation> = all().filter_map(|f| f.creates_table.clone()).collect();
    let mut owner: BTreeMap<Relation, Option<Relation>> = tables.iter().map(|t| (t.clone(), None)).collect();
    for f in all() {
        for (relation, table) in &f.creates {
            let entry = owner.entry(relation.clone()).or_insert(None);
            if entry.is_none() && !tables.contains(relation) {
                *entry = table.clone();
            }
        }
    }
    for (sequence, table) in all().filter_map(|f| f.owned_by.clone()) {
        owner.insert(sequence, Some(table));
    }

    let mut chosen: Vec<Relation> = Vec::new();
    for pattern in patterns {
        let matched: Vec<&Relation> = tables.iter().filter(|t| pattern.matches(t)).collect();
        if matched.is_empty() {
            let some: Vec<String> = tables.iter().take(8).map(display).collect();
            return Err(format!(
                "no table of the backup matches {:?}; it has {} tables{}",
                pattern.text(),
                tables.len(),
                if some.is_empty() { String::new() } else { format!(", among them {}", some.join(", ")) }
            ));
        }
        chosen.extend(matched.into_iter().cloned());
    }
    let chosen: Vec<Relation> = tables.iter().filter(|t| chosen.contains(t)).cloned().collect();
    let mut renames = BTreeMap::new();
    if let Some(new) = rename {
        let [table] = chosen.as_slice() else {
            return Err(format!(
                "--as names one table, and the patterns chose {}: {}",
                chosen.len(),
                chosen.iter().map(display).collect::<Vec<_>>().join(", ")
            ));
        };
        renames.insert(table.clone(), new.clone());
        for (object, owning) in &owner {
            if owning.as_ref() == Some(table) {
                renames.insert(object.clone(), (new.0.clone(), derived_name(&object.1, &table.1, &new.1)));
            }
        }
    }
    let included: BTreeSet<Relation> = owner
        .iter()
        .filter(|(relation, owning)| chosen.contains(relation) || owning.as_ref().is_some_and(|t| chosen.contains(t)))
        .map(|(relation, _)| relation.clone())
        .collect();

    let mut out = TablePlan {
        tables: chosen
            .iter()
            .map(|t| PlannedTable { source: t.clone(), restored: renames.get(t).cloned().unwrap_or_else(|| t.clone()) })
            .collect(),
        ..TablePlan::default()
    };
    for (part, facts) in parts.iter().zip(&facts) {
        match part {
            DumpPart::Rows { segment, table, statement } if chosen.contains(table) => {
                let restored_statement = rewrite(statement, &analyse(statement), &renames);
                out.steps.push(Step::Rows {
                    segment: *segment,
                    table: table.clone(),
                    statement: statement.clone(),
                    restored_statement,
                });
            }
            DumpPart::Rows { .. } => {}
            DumpPart::Sql(statements) => {
                for (statement, f) in statements.iter().zip(facts) {
                    if f.session {
                        out.steps.push(Step::Sql(statement.clone()));
                        continue;
                    }
                    if !f.scoped {
                        continue;
                    }
                    let named: Vec<&Relation> = f
                        .references
                        .iter()
                        .filter(|r| r.binding && owner.contains_key(&r.relation))
                        .map(|r| &r.relation)
                        .collect();
                    if !named.iter().any(|r| included.contains(*r)) {
                        continue;
                    }
                    // Relations outside, by the table each belongs to (a constraint's or index's table).
                    let outside: BTreeSet<String> = named
                        .iter()
                        .filter(|r| !included.contains(**r))
                        .map(|r| display(owner.get(*r).cloned().flatten().as_ref().unwrap_or(r)))
                        .collect();
                    let defines_chosen = f.creates_table.as_ref().is_some_and(|t| chosen.contains(t));
                    // What a statement makes for a table left out (that table's foreign key to a chosen one)
                    // is that table's business: skipped without a word.
                    let makes_for_other =
                        f.creates.iter().any(|(_, table)| table.as_ref().is_some_and(|t| !included.contains(t)));
                    if makes_for_other {
                        continue;
                    }
                    if !outside.is_empty() && !defines_chosen {
                        out.left_out.push(format!(
                            "{} (it names {}, not restored)",
                            excerpt(statement),
                            outside.into_iter().collect::<Vec<_>>().join(", ")
                        ));
                        continue;
                    }
                    if defines_chosen {
                        out.uses.extend(outside);
                    }
                    if let Some((name, _, _)) = statement
                        .trim_start()
                        .starts_with("SELECT pg_catalog.setval(")
                        .then(|| sequence_value(statement.as_bytes()))
                        .flatten()
                    {
                        let restored = parse_qualified(&name).map(|r| display(renames.get(&r).unwrap_or(&r)));
                        out.sequences.push((name.clone(), restored.unwrap_or(name)));
                    }
                    out.steps.push(Step::Sql(rewrite(statement, f, &renames)));
                }
            }
        }
    }
    out.uses.sort();
    out.uses.dedup();
    Ok(out)
}
