//! Reading a plain-format dump as psql would: where its statements end, and what each one is.

pub mod splitter;
pub mod statement;
pub mod tokens;

/// A string as an SQL literal (standard_conforming_strings is on in every supported version).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
