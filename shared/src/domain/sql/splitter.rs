//! Where psql would end each statement of a plain-format dump: a line-fed lexer for the SQL outside COPY data.
//!
//! A plain dump is a psql script. To fingerprint its schema statement by statement, to cut it into frames at
//! statement boundaries, and to restore its pieces over several connections, Backstop must split it exactly
//! where psql does, however hostile the names and bodies in it are: a `;` or a line that looks like a pg_dump
//! comment header inside a string, a quoted identifier, a dollar-quoted function body or a block comment ends
//! nothing. This follows psql's own lexer (`psqlscan.l`): quotes (`'…'`, `E'…'` with backslash escapes,
//! `"…"`, `$tag$…$tag$`), `--` and nested `/* */` comments, parentheses, and the heuristic psql uses to keep
//! `BEGIN ATOMIC … END` bodies of SQL-standard functions whole. psql meta-commands (`\restrict`, `\connect`)
//! are lines of their own between statements.
//!
//! Dumps are in the database's encoding; every server encoding is ASCII-safe (no byte of a multi-byte
//! character is below 0x80), so lexing bytes is exact.

/// What a line completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A whole statement, from its first significant character through its `;`.
    Statement(Vec<u8>),
    /// A psql meta-command line (`\restrict …`), trimmed.
    MetaCommand(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    #[error("a psql meta-command (a backslash) inside a statement, which no pg_dump writes: {excerpt:?}")]
    MetaCommandInStatement { excerpt: String },
    #[error("the SQL ended inside {what}: {excerpt:?}")]
    Unterminated { what: &'static str, excerpt: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Lex {
    Normal,
    /// `'…'`; `escapes` for `E'…'` (or every string while standard_conforming_strings is off).
    Quote {
        escapes: bool,
    },
    DoubleQuote,
    Dollar(Vec<u8>),
    BlockComment(u32),
}

/// Splits SQL fed line by line into statements and meta-commands.
pub struct StatementSplitter {
    lex: Lex,
    /// A statement has begun (its first significant byte was read) and not ended.
    started: bool,
    /// The statement being read, from its first significant byte.
    statement: Vec<u8>,
    paren_depth: u32,
    /// psql's BEGIN ATOMIC tracking: the first identifiers' initials, how many identifiers, the BEGIN depth.
    initials: [u8; 4],
    identifier_count: usize,
    begin_depth: u32,
    standard_strings: bool,
}

impl Default for StatementSplitter {
    fn default() -> Self {
        Self::new()
    }
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_char(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.chars().count() > 120 {
        format!("{}…", text.chars().take(120).collect::<String>())
    } else {
        text.to_string()
    }
}

impl StatementSplitter {
    pub fn new() -> Self {
        StatementSplitter {
            lex: Lex::Normal,
            started: false,
            statement: Vec::new(),
            paren_depth: 0,
            initials: [0; 4],
            identifier_count: 0,
            begin_depth: 0,
            standard_strings: true,
        }
    }

    /// Between statements: nothing half-read, no open quote or comment.
    pub fn at_boundary(&self) -> bool {
        !self.started && matches!(self.lex, Lex::Normal)
    }

    /// Feeds one line, without its newline; what it completed is appended to `out`.
    pub fn line(&mut self, line: &[u8], out: &mut Vec<Piece>) -> Result<(), SqlError> {
        if self.at_boundary() {
            let trimmed = line.trim_ascii();
            if trimmed.first() == Some(&b'\\') {
                out.push(Piece::MetaCommand(trimmed.to_vec()));
                return Ok(());
            }
        }
        let mut i = 0;
        // Where the current statement's text starts on this line (it may have started on an earlier one).
        let mut from = self.started.then_some(0);
        while i < line.len() {
            let b = line[i];
            match &mut self.lex {
                Lex::Quote { escapes } => {
                    if *escapes && b == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b == b'\'' {
                        if line.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        self.lex = Lex::Normal;
                    }
                    i += 1;
                }
                Lex::DoubleQuote => {
                    if b == b'"' {
                        if line.get(i + 1) == Some(&b'"') {
                            i += 2;
                            continue;
                        }
                        self.lex = Lex::Normal;
                    }
                    i += 1;
                }
                Lex::Dollar(tag) => {
                    if b == b'$' && line[i..].starts_with(tag) {
                        i += tag.len();
                        self.lex = Lex::Normal;
                    } else {
                        i += 1;
                    }
                }
                Lex::BlockComment(depth) => {
                    if line[i..].starts_with(b"*/") {
                        *depth -= 1;
                        i += 2;
                        if *depth == 0 {
                            self.lex = Lex::Normal;
                        }
                    } else if line[i..].starts_with(b"/*") {
                        *depth += 1;
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
                Lex::Normal => {
                    if b.is_ascii_whitespace() {
                        i += 1;
                        continue;
                    }
                    if line[i..].starts_with(b"--") {
                        // A comment to the end of the line: part of the statement if one is open, else dropped.
                        break;
                    }
                    if line[i..].starts_with(b"/*") {
                        self.lex = Lex::BlockComment(1);
                        i += 2;
                        continue;
                    }
                    if !self.started {
                        self.started = true;
                        from = Some(i);
                    }
                    match b {
                        b'\'' => {
                            let prefix = if i > 0 { line[i - 1] } else { 0 };
                            let before = if i > 1 { line[i - 2] } else { 0 };
                            let e_string = matches!(prefix, b'E' | b'e') && !is_ident_char(before);
                            self.lex = Lex::Quote { escapes: e_string || !self.standard_strings };
                            i += 1;
                        }
                        b'"' => {
                            self.lex = Lex::DoubleQuote;
                            i += 1;
                        }
                        b'$' => match dollar_tag(&line[i..]) {
                            Some(tag) if i == 0 || !is_ident_char(line[i - 1]) => {
                                i += tag.len();
                                self.lex = Lex::Dollar(tag);
                            }
                            _ => i += 1,
                        },
                        b'(' => {
                            self.paren_depth += 1;
                            i += 1;
                        }
                        b')' => {
                            self.paren_depth = self.paren_depth.saturating_sub(1);
                            i += 1;
                        }
                        b'\\' => {
                            return Err(SqlError::MetaCommandInStatement { excerpt: excerpt(line) });
                        }
                        b';' if self.paren_depth == 0 && self.begin_depth == 0 => {
                            let start = from.take().unwrap_or(0);
                            self.statement.extend_from_slice(&line[start..=i]);
                            let statement = std::mem::take(&mut self.statement);
                            self.started = false;
                            self.after_statement(&statement);
                            out.push(Piece::Statement(statement));
                            i += 1;
                        }
                        _ if is_ident_start(b) => {
                            let end = line[i..].iter().position(|c| !is_ident_char(*c)).map_or(line.len(), |n| i + n);
                            self.identifier(&line[i..end]);
                            i = end;
                        }
                        _ => i += 1,
                    }
                }
            }
        }
        if let Some(start) = from {
            self.statement.extend_from_slice(&line[start..]);
            self.statement.push(b'\n');
        }
        Ok(())
    }

    /// Ends the input: an open statement, quote or comment means the SQL was cut short.
    pub fn finish(&self) -> Result<(), SqlError> {
        let what = match &self.lex {
            Lex::Normal if !self.started => return Ok(()),
            Lex::Normal => "a statement without its `;`",
            Lex::Quote { .. } => "a quoted string",
            Lex::DoubleQuote => "a quoted identifier",
            Lex::Dollar(_) => "a dollar-quoted string",
            Lex::BlockComment(_) => "a block comment",
        };
        Err(SqlError::Unterminated { what, excerpt: excerpt(&self.statement) })
    }

    /// psql's heuristic: in `CREATE [OR REPLACE] {FUNCTION|PROCEDURE}`, `BEGIN` … `END` (and `CASE` … `END`
    /// within it) nest, and semicolons inside do not end the statement.
    fn identifier(&mut self, word: &[u8]) {
        if self.identifier_count == 0 {
            self.initials = [0; 4];
        }
        let lower = |w: &[u8]| w.to_ascii_lowercase();
        let w = lower(word);
        if matches!(w.as_slice(), b"create" | b"function" | b"procedure" | b"or" | b"replace")
            && self.identifier_count < 4
        {
            self.initials[self.identifier_count] = w[0];
        }
        self.identifier_count += 1;
        let i = self.initials;
        let routine = i[0] == b'c'
            && (i[1] == b'f' || i[1] == b'p' || (i[1] == b'o' && i[2] == b'r' && (i[3] == b'f' || i[3] == b'p')));
        if routine && self.paren_depth == 0 {
            match w.as_slice() {
                b"begin" => self.begin_depth += 1,
                b"case" if self.begin_depth >= 1 => self.begin_depth += 1,
                b"end" if self.begin_depth > 0 => self.begin_depth -= 1,
                _ => {}
            }
        }
    }

    fn after_statement(&mut self, statement: &[u8]) {
        self.paren_depth = 0;
        self.identifier_count = 0;
        self.begin_depth = 0;
        // psql lexes later strings by the setting the script sets (pg_dump writes it near the top).
        let text = String::from_utf8_lossy(statement).to_ascii_lowercase();
        let words: Vec<&str> = text
            .trim_end_matches(';')
            .split(|c: char| c.is_whitespace() || c == '=')
            .filter(|w| !w.is_empty())
            .collect();
        if let ["set", "standard_conforming_strings", value] = words.as_slice() {
            self.standard_strings = !matches!(value.trim_matches('\''), "off" | "false" | "0");
        }
    }
}

/// `$tag$` at the start of `text` (tag: empty, or an identifier not starting with a digit).
fn dollar_tag(text: &[u8]) -> Option<Vec<u8>> {
    let rest = &text[1..];
    let end = rest.iter().position(|b| *b == b'$')?;
    let tag = &rest[..end];
    let valid = tag.is_empty() || (is_ident_start(tag[0]) && tag.iter().all(|b| is_ident_char(*b) && *b != b'$'));
    valid.then(|| text[..end + 2].to_vec())
}

/// Splits a whole script; for tests and small texts (user checks).
pub fn split_all(sql: &[u8]) -> Result<Vec<Piece>, SqlError> {
    let mut splitter = StatementSplitter::new();
    let mut out = Vec::new();
    for line in sql.split(|b| *b == b'\n') {
        splitter.line(line, &mut out)?;
    }
    splitter.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statements(sql: &str) -> Vec<String> {
        split_all(sql.as_bytes())
            .unwrap()
            .into_iter()
            .map(|p| match p {
                Piece::Statement(s) => String::from_utf8(s).unwrap(),
                Piece::MetaCommand(m) => format!("META {}", String::from_utf8(m).unwrap()),
            })
            .collect()
    }

    #[test]
    fn plain_statements_comments_and_meta_commands() {
        let sql = "--\n-- PostgreSQL database dump\n--\n\\restrict abc\nSET a = 1; SET b = 2;\n\n-- Name: t; Type: TABLE\nCREATE TABLE t (\n    id integer\n);\n\\unrestrict abc\n";
        assert_eq!(
            statements(sql),
            vec![
                "META \\restrict abc",
                "SET a = 1;",
                "SET b = 2;",
                "CREATE TABLE t (\n    id integer\n);",
                "META \\unrestrict abc"
            ]
        );
    }

    #[test]
    fn semicolons_and_fake_headers_inside_quotes_end_nothing() {
        let sql = "COMMENT ON TABLE t IS 'a; b\n--\n-- Name: x; Type: INDEX\n--\nCREATE INDEX i ON t (a);';\n\
                   CREATE TABLE \"we;ird\"\"\" (\"a;\" int);\n\
                   CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$\nBEGIN\n  RAISE NOTICE 'x;';\n  RETURN 1; -- ;\nEND\n$body$;\n\
                   CREATE FUNCTION g() RETURNS text LANGUAGE sql AS $$ SELECT 'it''s; $x$ fine' $$;\n\
                   SELECT E'it\\'s; \\\\' AS a, 'C:\\' AS b;\n\
                   /* block ; /* nested ; */ still; */ SELECT 1;\n";
        let got = statements(sql);
        assert_eq!(got.len(), 6, "{got:#?}");
        assert!(got[0].starts_with("COMMENT ON TABLE t IS 'a; b\n--\n-- Name: x") && got[0].ends_with("(a);';"));
        assert_eq!(got[1], "CREATE TABLE \"we;ird\"\"\" (\"a;\" int);");
        assert!(got[2].ends_with("END\n$body$;"), "{}", got[2]);
        assert!(got[3].ends_with("fine' $$;"));
        assert_eq!(got[4], "SELECT E'it\\'s; \\\\' AS a, 'C:\\' AS b;");
        assert_eq!(got[5], "SELECT 1;", "a leading block comment is not part of the statement");
    }

    #[test]
    fn begin_atomic_bodies_stay_whole() {
        let sql = "CREATE FUNCTION public.f(a integer) RETURNS integer\n    LANGUAGE sql\n    BEGIN ATOMIC\n SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END;\n SELECT 2;\nEND;\nCREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); END;\nSELECT 3;\n";
        let got = statements(sql);
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(got[0].ends_with("SELECT 2;\nEND;"));
        assert!(got[1].ends_with("VALUES (1); END;"));
        assert_eq!(got[2], "SELECT 3;");
    }

    #[test]
    fn dollars_in_identifiers_and_parameters_are_not_quotes() {
        let got = statements("CREATE TABLE a$b (x int);\nPREPARE q AS SELECT $1;\nSELECT 1;\n");
        assert_eq!(got, vec!["CREATE TABLE a$b (x int);", "PREPARE q AS SELECT $1;", "SELECT 1;"]);
    }

    #[test]
    fn without_standard_strings_every_string_takes_backslash_escapes() {
        let got = statements("SET standard_conforming_strings = off;\nSELECT 'a\\'; b';\nSET standard_conforming_strings = on;\nSELECT 'c\\'; SELECT 2;\n");
        assert_eq!(
            got,
            vec![
                "SET standard_conforming_strings = off;",
                "SELECT 'a\\'; b';",
                "SET standard_conforming_strings = on;",
                "SELECT 'c\\';",
                "SELECT 2;"
            ]
        );
    }

    #[test]
    fn semicolons_in_parentheses_do_not_end_a_statement() {
        assert_eq!(
            statements("CREATE RULE r AS ON INSERT TO t DO ALSO (SELECT 1; SELECT 2);\n"),
            vec!["CREATE RULE r AS ON INSERT TO t DO ALSO (SELECT 1; SELECT 2);"]
        );
    }

    #[test]
    fn cut_short_sql_is_an_error() {
        for sql in ["SELECT 'open", "CREATE TABLE t (a int)", "SELECT $$ x", "/* x"] {
            assert!(matches!(split_all(sql.as_bytes()), Err(SqlError::Unterminated { .. })), "{sql}");
        }
        assert!(matches!(split_all(b"SELECT 1 \\gset\n"), Err(SqlError::MetaCommandInStatement { .. })));
    }
}
