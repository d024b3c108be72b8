//! Reading a plain-format dump as psql would: where its statements end, and what each one is.

pub mod splitter;
pub mod statement;
pub mod tokens;
