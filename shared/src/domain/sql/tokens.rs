//! The tokens of one SQL statement, with their places in its text: enough to find the relations a statement of
//! a plain dump names (`schema.table`, `'schema.seq'::regclass`) and to rewrite them in place, whatever the
//! names hold. Strings, quoted identifiers, dollar-quoted bodies and comments are single tokens, so a name
//! inside a function body or a comment's text is never mistaken for one the statement acts on.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A bare word: a keyword or an unquoted identifier.
    Word,
    /// `"…"`: an identifier exactly as written.
    Quoted,
    /// `'…'`, `E'…'`, or a dollar-quoted string.
    Str,
    /// One character of punctuation or an operator.
    Punct,
    /// A number or anything else of no interest here.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    pub kind: Kind,
    /// The token as written, quotes included.
    pub text: &'a str,
    /// Byte offset of the token in the statement.
    pub start: usize,
}

impl Token<'_> {
    pub fn end(&self) -> usize {
        self.start + self.text.len()
    }

    /// The identifier this token names (bare words fold to lower case, as the server folds them).
    pub fn ident(&self) -> Option<String> {
        match self.kind {
            Kind::Word => Some(self.text.to_lowercase()),
            Kind::Quoted => Some(self.text[1..self.text.len() - 1].replace("\"\"", "\"")),
            _ => None,
        }
    }

    pub fn is_word(&self, keyword: &str) -> bool {
        self.kind == Kind::Word && self.text.eq_ignore_ascii_case(keyword)
    }

    pub fn is_punct(&self, c: char) -> bool {
        self.kind == Kind::Punct && self.text.starts_with(c)
    }

    /// The value of a standard-conforming string literal (`'…'` with `''` for a quote).
    pub fn string_value(&self) -> Option<String> {
        (self.kind == Kind::Str && self.text.starts_with('\'') && self.text.len() >= 2)
            .then(|| self.text[1..self.text.len() - 1].replace("''", "'"))
    }
}

fn is_word_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || !c.is_ascii()
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || !c.is_ascii()
}

/// Splits `sql` (one statement) into tokens; whitespace and comments are dropped. Unterminated quotes run to
/// the end (the statement splitter has already refused those).
pub fn tokens(sql: &str) -> Vec<Token<'_>> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let token = |kind, start: usize, end: usize| Token { kind, text: &sql[start..end], start };
    while i < sql.len() {
        let c = sql[i..].chars().next().expect("in bounds");
        let start = i;
        if c.is_whitespace() {
            i += c.len_utf8();
        } else if sql[i..].starts_with("--") {
            i = sql[i..].find('\n').map_or(sql.len(), |n| i + n + 1);
        } else if sql[i..].starts_with("/*") {
            let mut depth = 0;
            while i < sql.len() {
                if sql[i..].starts_with("/*") {
                    depth += 1;
                    i += 2;
                } else if sql[i..].starts_with("*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '\'' {
            i = end_of_string(bytes, i + 1, false);
            out.push(token(Kind::Str, start, i));
        } else if (c == 'E' || c == 'e') && bytes.get(i + 1) == Some(&b'\'') {
            i = end_of_string(bytes, i + 2, true);
            out.push(token(Kind::Str, start, i));
        } else if c == '"' {
            i += 1;
            loop {
                match sql[i..].find('"') {
                    Some(n) if bytes.get(i + n + 1) == Some(&b'"') => i += n + 2,
                    Some(n) => {
                        i += n + 1;
                        break;
                    }
                    None => {
                        i = sql.len();
                        break;
                    }
                }
            }
            out.push(token(Kind::Quoted, start, i));
        } else if c == '$' {
            let tag_end = sql[i + 1..].find(|c: char| !is_word_char(c) || c == '$').map(|n| i + 1 + n);
            match tag_end.filter(|e| bytes.get(*e) == Some(&b'$')) {
                Some(e) if !sql[i + 1..e].starts_with(|c: char| c.is_ascii_digit()) => {
                    let tag = &sql[i..=e];
                    i = sql[e + 1..].find(tag).map_or(sql.len(), |n| e + 1 + n + tag.len());
                    out.push(token(Kind::Str, start, i));
                }
                _ => {
                    i += 1;
                    out.push(token(Kind::Other, start, i));
                }
            }
        } else if is_word_start(c) {
            i += sql[i..].find(|c: char| !is_word_char(c)).unwrap_or(sql.len() - i);
            out.push(token(Kind::Word, start, i));
        } else if c.is_ascii_digit() {
            i += sql[i..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(sql.len() - i);
            out.push(token(Kind::Other, start, i));
        } else {
            i += c.len_utf8();
            out.push(token(Kind::Punct, start, i));
        }
    }
    out
}

/// The end (exclusive) of a string literal whose body starts at `i`.
fn end_of_string(bytes: &[u8], mut i: usize, backslashes: bool) -> usize {
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if backslashes => i += 2,
            b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// A `schema.name` pair of identifiers in a statement, and where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualifiedName {
    pub schema: String,
    pub name: String,
    /// Index of its first token; it spans three (name, `.`, name).
    pub token: usize,
}

/// Every `schema.name` written in the statement's tokens (a third part, `schema.table.column`, is left off).
pub fn qualified_names(tokens: &[Token<'_>]) -> Vec<QualifiedName> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 < tokens.len() {
        let after_dot = i > 0 && tokens[i - 1].is_punct('.');
        match (tokens[i].ident(), tokens[i + 1].is_punct('.'), tokens[i + 2].ident()) {
            (Some(schema), true, Some(name)) if !after_dot => {
                out.push(QualifiedName { schema, name, token: i });
                i += 3;
            }
            _ => i += 1,
        }
    }
    out
}

/// `schema.name` read from the text of a regclass literal (`'app."My Seq"'`), as the server would read it.
pub fn parse_qualified(text: &str) -> Option<(String, String)> {
    let words = tokens(text);
    match words.as_slice() {
        [schema, dot, name] if dot.is_punct('.') => Some((schema.ident()?, name.ident()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_inside_strings_bodies_and_comments_are_not_names() {
        let sql = "CREATE FUNCTION app.f() RETURNS int AS $b$ SELECT 1 FROM app.t $b$ LANGUAGE sql; -- app.u\n\
                   COMMENT ON TABLE app.v IS 'app.w'; /* app.x /* nested */ app.y */ SELECT E'it\\'s app.z'";
        let toks = tokens(sql);
        let names: Vec<String> = qualified_names(&toks).iter().map(|q| format!("{}.{}", q.schema, q.name)).collect();
        assert_eq!(names, ["app.f", "app.v"]);
        assert!(toks.iter().any(|t| t.text == "E'it\\'s app.z'"), "{toks:?}");
    }

    #[test]
    fn quoted_names_keep_case_quotes_and_dots() {
        let sql = r#"ALTER TABLE ONLY "My ""Odd"" Schema"."a.b" ADD CONSTRAINT "Pk" PRIMARY KEY (id);"#;
        let toks = tokens(sql);
        let q = &qualified_names(&toks)[0];
        assert_eq!((q.schema.as_str(), q.name.as_str()), ("My \"Odd\" Schema", "a.b"));
        let first = toks[q.token];
        assert_eq!(&sql[first.start..toks[q.token + 2].end()], r#""My ""Odd"" Schema"."a.b""#);
        assert_eq!(toks.iter().find(|t| t.kind == Kind::Quoted && t.text == "\"Pk\"").unwrap().ident().unwrap(), "Pk");
    }

    #[test]
    fn a_column_after_a_table_is_not_a_second_name() {
        let toks = tokens("ALTER SEQUENCE app.s OWNED BY app.t.id;");
        let names: Vec<_> = qualified_names(&toks).into_iter().map(|q| q.name).collect();
        assert_eq!(names, ["s", "t"]);
    }

    #[test]
    fn regclass_literals_read_as_names() {
        assert_eq!(parse_qualified("app.s"), Some(("app".into(), "s".into())));
        assert_eq!(parse_qualified(r#""My Schema"."S""#), Some(("My Schema".into(), "S".into())));
        assert_eq!(parse_qualified("s"), None);
    }
}
