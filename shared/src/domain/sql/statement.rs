//! What a top-level statement of a plain dump is, read off its text: a COPY that starts table data, another
//! data statement (sequence values, large objects, materialized-view refreshes, statistics), or schema; and,
//! for the statements after the data, whether a restore may run it beside others.
//!
//! Only pg_dump's own statement shapes are recognised; anything else is schema, and, after the data, a
//! barrier that runs alone. Misreading a statement therefore costs speed, never correctness.

/// `schema.table` of a COPY block, and the statement that starts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyTarget {
    pub schema: String,
    pub name: String,
    /// `COPY schema.table (columns) FROM stdin;` as pg_dump wrote it.
    pub statement: String,
}

impl CopyTarget {
    /// The same columns read back out: `COPY schema.table (columns) TO stdout;`.
    pub fn read_back_statement(&self) -> String {
        let head = self.statement.trim_end().strip_suffix("FROM stdin;").unwrap_or(&self.statement);
        format!("{head}TO STDOUT")
    }
}

/// A `COPY … FROM stdin;` statement, which pg_dump follows with the table's rows. In a dump that is not UTF-8
/// (a SQL_ASCII database's names may hold any byte) the names are read as [`text_of`] spells them.
pub fn copy_from_stdin(statement: &[u8]) -> Option<CopyTarget> {
    let text = text_of(statement);
    let text = text.trim();
    let rest = text.strip_prefix("COPY ")?;
    if !text.ends_with(" FROM stdin;") {
        return None;
    }
    let (schema, after) = parse_ident(rest)?;
    let (name, after) = parse_ident(after.strip_prefix('.')?)?;
    after.starts_with(' ').then(|| CopyTarget { schema, name, statement: text.to_string() })
}

/// A statement's text: itself when it is UTF-8; otherwise with each byte that is not part of a UTF-8 character
/// spelled `\xNN`, so that names of such bytes stay apart (a lossy decoding would make them all `�`) and read the
/// same wherever the same bytes are read.
pub fn text_of(statement: &[u8]) -> std::borrow::Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(statement) {
        return text.into();
    }
    let mut text = String::with_capacity(statement.len() + 16);
    for chunk in statement.utf8_chunks() {
        text.push_str(chunk.valid());
        for byte in chunk.invalid() {
            text.push_str(&format!("\\x{byte:02X}"));
        }
    }
    text.into()
}

/// The tablespace of `SET default_tablespace = name;`, which pg_dump writes before each object it puts in one
/// (`''`, the database's default, is none).
pub fn default_tablespace(statement: &[u8]) -> Option<String> {
    let text = text_of(statement);
    let value = text.trim().strip_prefix("SET default_tablespace = ")?.strip_suffix(';')?;
    let (name, rest) = parse_ident(value)?;
    rest.is_empty().then_some(name)
}

/// A statement that carries data rather than schema: `pg_dump --schema-only` leaves it out.
pub fn is_data_statement(statement: &[u8]) -> bool {
    const DATA_PREFIXES: [&str; 8] = [
        "SELECT pg_catalog.setval(",
        "SELECT pg_catalog.lo_create(",
        "SELECT pg_catalog.lo_open(",
        "SELECT pg_catalog.lowrite(",
        "SELECT pg_catalog.lo_close(",
        "REFRESH MATERIALIZED VIEW ",
        // PostgreSQL 18's statistics, which a restored copy cannot reproduce exactly.
        "SELECT * FROM pg_catalog.pg_restore_relation_stats(",
        "SELECT * FROM pg_catalog.pg_restore_attribute_stats(",
    ];
    let text = String::from_utf8_lossy(statement);
    let text = text.trim();
    // pg_dump wraps large objects' contents in a transaction of their own.
    let transaction_control = text == "BEGIN;" || text == "COMMIT;";
    transaction_control
        || DATA_PREFIXES.iter().any(|p| text.starts_with(p))
        || copy_from_stdin(statement).is_some()
        || is_large_object_statement(text)
}

/// Large objects' ownership, grants, comments and labels: dumped with their data, never with `--schema-only`.
fn is_large_object_statement(text: &str) -> bool {
    ["ALTER LARGE OBJECT ", "COMMENT ON LARGE OBJECT ", "SECURITY LABEL ON LARGE OBJECT "]
        .iter()
        .any(|p| text.starts_with(p))
        || ((text.starts_with("GRANT ") || text.starts_with("REVOKE ")) && text.contains(" ON LARGE OBJECT "))
}

/// `SELECT pg_catalog.setval('name', value, is_called);` → the sequence (as pg_dump quoted it), its value
/// and whether it was called.
pub fn sequence_value(statement: &[u8]) -> Option<(String, i64, bool)> {
    let text = std::str::from_utf8(statement).ok()?.trim();
    let args = text.strip_prefix("SELECT pg_catalog.setval('")?.strip_suffix(");")?;
    let (name, rest) = args.rsplit_once("', ")?;
    let (value, called) = rest.split_once(", ")?;
    Some((name.replace("''", "'"), value.trim().parse().ok()?, called.trim() == "true"))
}

/// The large object a `lo_create` statement makes (counted, to check the restored copy has them all).
pub fn is_large_object_create(statement: &[u8]) -> bool {
    statement.trim_ascii_start().starts_with(b"SELECT pg_catalog.lo_create(")
}

/// Whether a statement makes or changes an event trigger (`CREATE`, `ALTER`, `COMMENT ON`, `SECURITY LABEL … ON
/// EVENT TRIGGER`).
pub fn is_about_an_event_trigger(statement: &[u8]) -> bool {
    let text = statement.trim_ascii_start();
    [&b"CREATE EVENT TRIGGER "[..], b"ALTER EVENT TRIGGER ", b"COMMENT ON EVENT TRIGGER "]
        .iter()
        .any(|p| text.starts_with(p))
        || (text.starts_with(b"SECURITY LABEL ") && text.windows(18).any(|w| w == b" ON EVENT TRIGGER "))
}

/// The statements after the data with those about event triggers moved to the end, in their order, and whether
/// that moved anything. pg_dump makes event triggers just before it refreshes materialized views, so on a
/// restore each refresh fires them (a trigger that logs DDL writes a row the source never had; one whose
/// function names a table without its schema fails the refresh, pg_dump's search path being empty): on the
/// source they were made after the views were filled.
pub fn event_triggers_last(statements: Vec<Vec<u8>>) -> (Vec<Vec<u8>>, bool) {
    let first = statements.iter().position(|s| is_about_an_event_trigger(s));
    let moved = first.is_some_and(|i| statements[i..].iter().any(|s| !is_about_an_event_trigger(s)));
    let (mut others, event_triggers): (Vec<_>, Vec<_>) =
        statements.into_iter().partition(|s| !is_about_an_event_trigger(s));
    others.extend(event_triggers);
    (others, moved)
}

/// How a statement after the data may run beside others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostDataKind {
    /// An index or a non-foreign-key constraint on one table: builds beside the others (one table at a time).
    Index { table: String },
    /// A foreign key: checks two tables, so it runs beside other foreign keys only, after every index.
    ForeignKey { table: String },
    /// A comment on an index or constraint: needs its object, changes nothing another statement reads.
    Annotation,
    /// Anything else runs alone, in its place.
    Barrier,
}

/// Classifies a statement of the part after the table data.
pub fn post_data_kind(statement: &[u8]) -> PostDataKind {
    let Ok(text) = std::str::from_utf8(statement) else { return PostDataKind::Barrier };
    let text = text.trim();
    if text.starts_with("COMMENT ON INDEX ") || text.starts_with("COMMENT ON CONSTRAINT ") {
        return PostDataKind::Annotation;
    }
    for prefix in ["CREATE INDEX ", "CREATE UNIQUE INDEX "] {
        if let Some(rest) = text.strip_prefix(prefix) {
            // `CREATE INDEX name ON [ONLY] schema.table USING …`
            let Some((_, after_name)) = parse_ident(rest) else { return PostDataKind::Barrier };
            let Some(on) = after_name.strip_prefix(" ON ") else { return PostDataKind::Barrier };
            let on = on.strip_prefix("ONLY ").unwrap_or(on);
            return qualified_name(on).map_or(PostDataKind::Barrier, |table| PostDataKind::Index { table });
        }
    }
    if let Some(AddedConstraint { table, definition, .. }) = added_constraint(text) {
        if definition.starts_with("FOREIGN KEY") {
            return PostDataKind::ForeignKey { table };
        }
        if ["PRIMARY KEY", "UNIQUE", "EXCLUDE", "CHECK"].iter().any(|k| definition.starts_with(k)) {
            return PostDataKind::Index { table };
        }
    }
    PostDataKind::Barrier
}

/// Whether a statement of a dump brings in code that a later statement of the restore could run and that
/// could write rows into a table already loaded: a volatile function (a `CHECK` constraint or a domain runs
/// one for every row loaded after it, `REFRESH MATERIALIZED VIEW` runs its view's, an event trigger its own
/// on the DDL after it), a function in C (nothing holds it to its volatility), or any extension but plpgsql
/// (`dblink_exec` writes). Not flagged: a trigger function, which runs only on rows written while its trigger
/// exists (pg_dump creates triggers after every row); a function declared `IMMUTABLE` or `STABLE` in any
/// other language, which PostgreSQL runs read-only; a procedure, which only a function could call. A table
/// may be read back before the restore ends only when no statement of its dump is flagged
/// (`adapters::framed_restore`). Anything not recognised is flagged: that costs speed only.
pub fn may_bring_code_that_writes(statement: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(statement) else { return true };
    let text = text.trim();
    let function = text.strip_prefix("CREATE FUNCTION ").or_else(|| text.strip_prefix("CREATE OR REPLACE FUNCTION "));
    if let Some(rest) = function {
        return !function_header(rest).is_some_and(|h| h.cannot_write());
    }
    if let Some(rest) = text.strip_prefix("CREATE EXTENSION ") {
        let rest = rest.strip_prefix("IF NOT EXISTS ").unwrap_or(rest);
        return !matches!(parse_ident(rest), Some((name, after)) if name == "plpgsql" && (after.is_empty() || after.starts_with([' ', ';'])));
    }
    false
}

/// What pg_dump's `CREATE FUNCTION` header says between the argument list and the body.
struct FunctionHeader {
    /// `RETURNS trigger`.
    trigger: bool,
    /// `IMMUTABLE` or `STABLE` (pg_dump leaves the default, `VOLATILE`, out).
    read_only: bool,
    /// The word after `LANGUAGE`, as written.
    language: Option<String>,
}

impl FunctionHeader {
    fn cannot_write(&self) -> bool {
        self.trigger
            || (self.read_only
                && self.language.as_deref().is_some_and(|l| !["c", "internal"].contains(&l) && !l.starts_with('"')))
    }
}

/// Reads `schema.name(arguments) RETURNS type LANGUAGE … [IMMUTABLE|STABLE] … AS …`: the header's words
/// outside quoted names, string literals and parentheses, up to the body (`AS`, or `RETURN`/`BEGIN` for a
/// body in SQL). `None` when it is not in that shape.
fn function_header(text: &str) -> Option<FunctionHeader> {
    let (_, rest) = parse_qualified(text)?;
    let rest = rest.strip_prefix('(')?;
    let (mut depth, mut quote, mut words, mut word) = (1usize, None::<char>, Vec::<String>::new(), String::new());
    for c in rest.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                word.push(c);
            }
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                word.push(c);
            }
            (None, '(') => depth += 1,
            (None, ')') => depth = depth.checked_sub(1)?,
            (None, _) if depth > 0 => {}
            (None, c) if c.is_whitespace() => {
                if ["AS", "RETURN", "BEGIN"].contains(&word.as_str()) {
                    break;
                }
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            (None, c) => word.push(c),
        }
    }
    let after = |key: &str| words.iter().position(|w| w == key).and_then(|i| words.get(i + 1));
    Some(FunctionHeader {
        trigger: after("RETURNS").is_some_and(|t| t == "trigger"),
        read_only: words.iter().any(|w| w == "IMMUTABLE" || w == "STABLE"),
        language: after("LANGUAGE").cloned(),
    })
}

/// `ALTER TABLE [ONLY] schema.table ADD CONSTRAINT name definition`, as pg_dump writes a constraint.
struct AddedConstraint<'a> {
    /// Whether `ONLY` is there: without it the constraint recurses into partitions or children.
    only: bool,
    /// The table, as one key (see [`table_key`]).
    table: String,
    /// What follows the constraint's name: `FOREIGN KEY (…) REFERENCES …`, `PRIMARY KEY (…)`, ….
    definition: &'a str,
}

fn added_constraint(text: &str) -> Option<AddedConstraint<'_>> {
    let rest = text.strip_prefix("ALTER TABLE ")?;
    let (only, rest) = match rest.strip_prefix("ONLY ") {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let ((schema, name), after) = parse_qualified(rest)?;
    let (_, definition) = parse_ident(after.trim_start().strip_prefix("ADD CONSTRAINT ")?)?;
    Some(AddedConstraint { only, table: table_key(&schema, &name), definition: definition.trim_start() })
}

/// A foreign key pg_dump adds to one table alone (`ALTER TABLE ONLY t ADD CONSTRAINT c FOREIGN KEY (cols)
/// REFERENCES s.r(cols)…`): its table and the table it references, as [`PostDataKind`] names tables. `None` for
/// anything else, a foreign key without `ONLY` (it recurses into partitions or children) included.
pub fn foreign_key_tables(statement: &[u8]) -> Option<(String, String)> {
    let added = added_constraint(std::str::from_utf8(statement).ok()?.trim())?;
    if !added.only {
        return None;
    }
    let mut columns = added.definition.strip_prefix("FOREIGN KEY (")?;
    loop {
        let (_, after) = parse_ident(columns)?;
        match after.strip_prefix(", ") {
            Some(next) => columns = next,
            None => {
                columns = after.strip_prefix(')')?;
                break;
            }
        }
    }
    let referenced = qualified_name(columns.strip_prefix(" REFERENCES ")?)?;
    Some((added.table, referenced))
}

/// `schema.table` at the start of `text`, as one key (`"My Schema".t` and `"My Schema"."t"` are the same).
fn qualified_name(text: &str) -> Option<String> {
    let ((schema, name), _) = parse_qualified(text)?;
    Some(table_key(&schema, &name))
}

/// A table as one key: its schema and name apart by a unit separator (U+001F).
fn table_key(schema: &str, name: &str) -> String {
    format!("{schema}\u{1f}{name}")
}

fn parse_qualified(text: &str) -> Option<((String, String), &str)> {
    let (schema, rest) = parse_ident(text)?;
    let (name, rest) = parse_ident(rest.strip_prefix('.')?)?;
    Some(((schema, name), rest))
}

/// One identifier, quoted (`"a""b"`) or bare, and what follows it.
pub fn parse_ident(text: &str) -> Option<(String, &str)> {
    if let Some(quoted) = text.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if quoted[i + 1..].starts_with('"') {
                    name.push('"');
                    chars.next();
                } else {
                    return Some((name, &quoted[i + 1..]));
                }
            } else {
                name.push(c);
            }
        }
        None
    } else {
        let end = text.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$')).unwrap_or(text.len());
        (end > 0).then(|| (text[..end].to_string(), &text[end..]))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_triggers_go_after_the_refreshes_the_rest_keeps_its_order() {
        let statements: Vec<Vec<u8>> = [
            "CREATE INDEX a ON s.t USING btree (x);",
            "CREATE EVENT TRIGGER log_ddl ON ddl_command_end\n   EXECUTE FUNCTION s.log_ddl();",
            "ALTER EVENT TRIGGER log_ddl OWNER TO admin;",
            "COMMENT ON EVENT TRIGGER log_ddl IS 'audit';",
            "REFRESH MATERIALIZED VIEW s.mv;",
            "REFRESH MATERIALIZED VIEW s.mv2;",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        let (reordered, moved) = event_triggers_last(statements.clone());
        assert!(moved);
        let order: Vec<String> = reordered.iter().map(|s| String::from_utf8_lossy(&s[..12]).into_owned()).collect();
        assert_eq!(
            order,
            ["CREATE INDEX", "REFRESH MATE", "REFRESH MATE", "CREATE EVENT", "ALTER EVENT ", "COMMENT ON E"]
        );
        let (unchanged, moved) = event_triggers_last(statements[..4].to_vec());
        assert!(!moved && unchanged == statements[..4], "already last, with what is about them");
        assert!(is_about_an_event_trigger(b"SECURITY LABEL FOR dummy ON EVENT TRIGGER log_ddl IS 'x';"));
        assert!(!is_about_an_event_trigger(b"COMMENT ON TRIGGER t ON s.x IS 'CREATE EVENT TRIGGER';"));
    }

    use super::*;

    #[test]
    fn only_code_a_later_statement_could_run_to_write_rows_is_flagged() {
        for flagged in [
            "CREATE FUNCTION public.add_audit(integer) RETURNS boolean\n    LANGUAGE plpgsql\n    AS $$BEGIN INSERT INTO public.a VALUES ($1); RETURN true; END$$;",
            "CREATE OR REPLACE FUNCTION public.f() RETURNS integer\n    LANGUAGE sql\n    AS $$SELECT 1$$;",
            "CREATE FUNCTION \"we\"\"ird\".\"f(\"\"x)\"(a text DEFAULT ')'::text) RETURNS event_trigger\n    LANGUAGE plpgsql\n    AS $$BEGIN END$$;",
            "CREATE FUNCTION public.g(a numeric(10,2)) RETURNS triggers_table\n    LANGUAGE sql\n    AS $$SELECT NULL$$;",
            "CREATE FUNCTION public.h(a integer) RETURNS integer\n    LANGUAGE c IMMUTABLE STRICT\n    AS '$libdir/h', 'h';",
            "CREATE FUNCTION public.t() RETURNS TABLE(\"IMMUTABLE\" integer, stable text)\n    LANGUAGE sql\n    AS $$SELECT 1, 'STABLE'$$;",
            "CREATE FUNCTION public.s() RETURNS integer\n    LANGUAGE sql\n    SET search_path TO 'IMMUTABLE'\n    AS $$SELECT 1$$;",
            "CREATE FUNCTION public.b() RETURNS integer\n    LANGUAGE sql\n    BEGIN ATOMIC\n SELECT 1 AS \"STABLE\";\nEND;",
            "CREATE EXTENSION IF NOT EXISTS dblink WITH SCHEMA public;",
            "CREATE EXTENSION plpgsql_check;",
        ] {
            assert!(may_bring_code_that_writes(flagged.as_bytes()), "{flagged}");
        }
        for safe in [
            "CREATE FUNCTION public.touch() RETURNS trigger\n    LANGUAGE plpgsql\n    AS $$BEGIN NEW.at = now(); RETURN NEW; END$$;",
            "CREATE FUNCTION \"My\".\"t) RETURNS integer\"(a text DEFAULT '(x'::text, b integer[]) RETURNS trigger\n    LANGUAGE plpgsql\n    AS $$BEGIN RETURN NULL; END$$;",
            "CREATE FUNCTION public.seed_hash(key text) RETURNS bigint\n    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE\n    AS $$ SELECT 1 $$;",
            "CREATE FUNCTION sales.order_total(p_order_id bigint) RETURNS numeric\n    LANGUAGE sql STABLE\n    AS $$ SELECT 0 $$;",
            "CREATE FUNCTION public.r(a integer) RETURNS integer\n    LANGUAGE sql IMMUTABLE\n    RETURN (a + 1);",
            "CREATE PROCEDURE public.p()\n    LANGUAGE sql\n    AS $$INSERT INTO public.a VALUES (1)$$;",
            "CREATE EXTENSION IF NOT EXISTS plpgsql WITH SCHEMA pg_catalog;",
            "CREATE TABLE public.functions (a integer);",
            "COMMENT ON FUNCTION public.f() IS 'CREATE FUNCTION';",
        ] {
            assert!(!may_bring_code_that_writes(safe.as_bytes()), "{safe}");
        }
    }

    #[test]
    fn copy_statements_name_their_table_and_read_back_the_same_columns() {
        let copy = copy_from_stdin(b"COPY \"My Schema\".\"with \"\"quotes\"\"\" (\"from\", b) FROM stdin;").unwrap();
        assert_eq!((copy.schema.as_str(), copy.name.as_str()), ("My Schema", "with \"quotes\""));
        assert_eq!(copy.read_back_statement(), "COPY \"My Schema\".\"with \"\"quotes\"\"\" (\"from\", b) TO STDOUT");
        assert!(copy_from_stdin(b"COPY public.t (a) TO stdout;").is_none());
        assert!(copy_from_stdin(b"CREATE TABLE t (a int);").is_none());
    }

    #[test]
    fn a_dump_names_the_tablespaces_it_puts_objects_in() {
        assert_eq!(default_tablespace(b"SET default_tablespace = fast;").as_deref(), Some("fast"));
        assert_eq!(default_tablespace(b"SET default_tablespace = \"My \"\"Space\";").as_deref(), Some("My \"Space"));
        assert_eq!(default_tablespace(b"SET default_tablespace = '';"), None);
        assert_eq!(default_tablespace(b"SET default_table_access_method = heap;"), None);
    }

    #[test]
    fn copy_statements_of_a_dump_that_is_not_utf8_name_their_table_byte_for_byte() {
        let copy = copy_from_stdin(b"COPY public.\"caf\xe9\xff\" (id, v) FROM stdin;").unwrap();
        assert_eq!(copy.name, "caf\\xE9\\xFF");
        let other = copy_from_stdin(b"COPY public.\"caf\xe9\xfe\" (id, v) FROM stdin;").unwrap();
        assert_ne!(copy.name, other.name, "different bytes, different names");
        assert_eq!(text_of("café".as_bytes()), "café");
    }

    #[test]
    fn data_statements_are_those_a_schema_only_dump_leaves_out() {
        for data in [
            "SELECT pg_catalog.setval('public.s', 42, true);",
            "COPY public.t (a) FROM stdin;",
            "SELECT pg_catalog.lo_create('16385');",
            "ALTER LARGE OBJECT 16385 OWNER TO app;",
            "GRANT SELECT ON LARGE OBJECT 16385 TO app;",
            "REFRESH MATERIALIZED VIEW public.mv;",
            "BEGIN;",
        ] {
            assert!(is_data_statement(data.as_bytes()), "{data}");
        }
        for schema in [
            "CREATE TABLE public.t (a int);",
            "GRANT SELECT ON TABLE public.t TO app;",
            "SELECT pg_catalog.set_config('search_path', '', false);",
        ] {
            assert!(!is_data_statement(schema.as_bytes()), "{schema}");
        }
    }

    #[test]
    fn sequence_values_are_read_back_from_setval() {
        assert_eq!(
            sequence_value(b"SELECT pg_catalog.setval('public.s', 42, true);"),
            Some(("public.s".into(), 42, true))
        );
        assert_eq!(
            sequence_value(b"SELECT pg_catalog.setval('\"we''ird\".\"s, 1\"', -7, false);"),
            Some(("\"we'ird\".\"s, 1\"".into(), -7, false))
        );
    }

    #[test]
    fn post_data_statements_are_grouped_by_what_they_may_run_beside() {
        let index = |t: &str| PostDataKind::Index { table: t.replace('.', "\u{1f}") };
        assert_eq!(post_data_kind(b"CREATE INDEX i ON public.t USING btree (a);"), index("public.t"));
        assert_eq!(
            post_data_kind(b"CREATE UNIQUE INDEX \"odd; name\" ON ONLY public.t USING btree (a);"),
            index("public.t")
        );
        assert_eq!(
            post_data_kind(b"ALTER TABLE ONLY public.t\n    ADD CONSTRAINT t_pkey PRIMARY KEY (id);"),
            index("public.t")
        );
        assert_eq!(
            post_data_kind(
                b"ALTER TABLE ONLY \"S\".\"T\"\n    ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES public.p(id);"
            ),
            PostDataKind::ForeignKey { table: "S\u{1f}T".into() }
        );
        assert_eq!(post_data_kind(b"COMMENT ON INDEX public.i IS 'x';"), PostDataKind::Annotation);
        for barrier in [
            "CREATE TRIGGER tr AFTER INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION f();",
            "ALTER TABLE public.t OWNER TO app;",
            "GRANT ALL ON TABLE public.t TO app;",
        ] {
            assert_eq!(post_data_kind(barrier.as_bytes()), PostDataKind::Barrier, "{barrier}");
        }
    }

    #[test]
    fn a_foreign_key_names_its_table_and_the_one_it_references() {
        let key = |s: &str| s.replace('.', "\u{1f}");
        assert_eq!(
            foreign_key_tables(
                b"ALTER TABLE ONLY app.lines\n    ADD CONSTRAINT f FOREIGN KEY (o) REFERENCES app.orders(id);"
            ),
            Some((key("app.lines"), key("app.orders")))
        );
        assert_eq!(
            foreign_key_tables(
                "ALTER TABLE ONLY \"a.b\".\"T\"\" 1\" ADD CONSTRAINT \"x, y\" FOREIGN KEY (\"a)b\", c) REFERENCES \"R\".r(\"x\", y) ON DELETE CASCADE;"
                    .as_bytes()
            ),
            Some(("a.b\u{1f}T\" 1".to_string(), "R\u{1f}r".to_string()))
        );
        for other in [
            "ALTER TABLE app.lines ADD CONSTRAINT f FOREIGN KEY (o) REFERENCES app.orders(id);",
            "ALTER TABLE ONLY app.lines ADD CONSTRAINT k PRIMARY KEY (id);",
            "ALTER TABLE ONLY app.lines ADD CONSTRAINT f FOREIGN KEY (o) REFERENCES orders(id);",
            "CREATE INDEX i ON app.lines USING btree (o);",
        ] {
            assert_eq!(foreign_key_tables(other.as_bytes()), None, "{other}");
        }
    }
}
