//! Random databases for the differential test: from a seed, a SQL script that builds schemas, types, tables,
//! views, functions, indexes and comments whose names are random Unicode (any code point a name may hold:
//! newlines, tabs, quotes, backslashes, `\.`, combining marks, astral planes; 1 to 63 bytes), with columns of
//! random types from a wide list and rows of random values (NULLs, COPY's escapes, text shaped like SQL or
//! like pg_dump's own lines). The same seed gives the same script, so a failure is reproduced by its seed.
//!
//! The script is meant for `psql -f` into an empty UTF-8 database; everything is owned by the superuser.

use std::collections::BTreeSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// PostgreSQL's limit on a name (NAMEDATALEN - 1).
const NAME_BYTES: usize = 63;

/// Column names PostgreSQL reserves for system columns.
const SYSTEM_COLUMNS: [&str; 6] = ["ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"];

/// Text fragments that trip line-based readers of a dump.
const TRICKY: [&str; 14] = [
    "\\.",
    "\\N",
    "\n\\.\n",
    "COPY public.t (a) FROM stdin;",
    "-- PostgreSQL database dump complete",
    "--\n-- Name: x; Type: TABLE; Schema: public; Owner: -\n--",
    "\\restrict abc",
    "$$",
    "$a$",
    "/*",
    "*/",
    ";",
    "\r\n",
    "\t",
];

/// A column type, with what the generator can do with it.
struct ColumnType {
    sql: String,
    /// A B-tree operator class exists: an index and a primary key may use it.
    indexable: bool,
    kind: ValueKind,
}

#[derive(Clone)]
enum ValueKind {
    Int(i64, i64),
    Numeric,
    /// `real` (true) or `double precision`.
    Float(bool),
    Bool,
    Text,
    Bytea,
    Date,
    Timestamp,
    TimestampTz,
    Time,
    Interval,
    Uuid,
    Json,
    Inet,
    Point,
    Range,
    TsVector,
    TextArray,
    IntArray,
    Bits,
    Enum(Vec<String>),
}

pub struct Generator {
    rng: StdRng,
    /// Every name used in a schema (relations, types, functions share one pool: simple and always valid).
    used: BTreeSet<(String, String)>,
}

/// `"name"` with quotes doubled.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A standard-conforming string literal.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        let used = [("", "public"), ("", "pg_catalog"), ("", "information_schema")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Generator { rng: StdRng::seed_from_u64(seed), used }
    }

    /// One code point a name may hold (anything but NUL), weighted towards the troublesome ones.
    fn code_point(&mut self) -> char {
        loop {
            let c = match self.rng.random_range(0..100) {
                0..=29 => char::from(self.rng.random_range(b'a'..=b'z')),
                30..=44 => {
                    const PUNCTUATION: &[u8] = b" \"'\\.;$-*/(),\t\n\r:%[]{}|&";
                    char::from(PUNCTUATION[self.rng.random_range(0..PUNCTUATION.len())])
                }
                45..=49 => char::from(self.rng.random_range(1u8..0x20)),
                50..=59 => char::from_u32(self.rng.random_range(0x80..0x800)).unwrap_or('é'),
                60..=79 => match char::from_u32(self.rng.random_range(0x800..0x10000)) {
                    Some(c) => c,
                    None => continue, // a surrogate
                },
                80..=89 => char::from_u32(self.rng.random_range(0x10000..=0x10FFFF)).unwrap_or('🎉'),
                _ => char::from(self.rng.random_range(b'A'..=b'Z')),
            };
            return c;
        }
    }

    /// A random name of 1 to 63 bytes, new in `schema`'s pool.
    fn name(&mut self, schema: &str) -> String {
        loop {
            let budget = if self.rng.random_bool(0.2) { NAME_BYTES } else { self.rng.random_range(1..=20) };
            let mut name = String::new();
            loop {
                let c = self.code_point();
                if name.len() + c.len_utf8() > budget {
                    break;
                }
                name.push(c);
                if self.rng.random_bool(0.08) {
                    break;
                }
            }
            if self.rng.random_bool(0.1) {
                // Whole tricky fragments, when they fit.
                let fragment = TRICKY[self.rng.random_range(0..TRICKY.len())];
                if name.len() + fragment.len() <= NAME_BYTES {
                    name.push_str(fragment);
                }
            }
            // `pg_` starts only system schemas' names.
            let reserved = schema.is_empty() && name.starts_with("pg_");
            if name.is_empty() || reserved || SYSTEM_COLUMNS.contains(&name.as_str()) {
                continue;
            }
            if self.used.insert((schema.to_string(), name.clone())) {
                return name;
            }
        }
    }

    /// Random text for values and comments: any character but NUL, tricky fragments, 0 to `max` pieces.
    fn text(&mut self, max: usize) -> String {
        let mut out = String::new();
        for _ in 0..self.rng.random_range(0..=max) {
            if self.rng.random_bool(0.2) {
                out.push_str(TRICKY[self.rng.random_range(0..TRICKY.len())]);
            } else {
                out.push(self.code_point());
            }
        }
        out
    }

    fn column_type(&mut self, schema: &str, preamble: &mut String) -> ColumnType {
        let plain = |sql: &str, indexable: bool, kind: ValueKind| ColumnType { sql: sql.to_string(), indexable, kind };
        match self.rng.random_range(0..26) {
            0 => plain("integer", true, ValueKind::Int(i32::MIN as i64, i32::MAX as i64)),
            1 => plain("bigint", true, ValueKind::Int(i64::MIN, i64::MAX)),
            2 => plain("smallint", true, ValueKind::Int(i16::MIN as i64, i16::MAX as i64)),
            3 => plain("numeric", true, ValueKind::Numeric),
            4 => plain("double precision", true, ValueKind::Float(false)),
            5 => plain("real", true, ValueKind::Float(true)),
            6 => plain("boolean", true, ValueKind::Bool),
            7..=9 => plain("text", true, ValueKind::Text),
            10 => plain("character varying", true, ValueKind::Text),
            11 => plain("bytea", true, ValueKind::Bytea),
            12 => plain("date", true, ValueKind::Date),
            13 => plain("timestamp without time zone", true, ValueKind::Timestamp),
            14 => plain("timestamp with time zone", true, ValueKind::TimestampTz),
            15 => plain("time without time zone", true, ValueKind::Time),
            16 => plain("interval", true, ValueKind::Interval),
            17 => plain("uuid", true, ValueKind::Uuid),
            18 => plain(if self.rng.random_bool(0.5) { "jsonb" } else { "json" }, false, ValueKind::Json),
            19 => plain("inet", true, ValueKind::Inet),
            20 => plain("point", false, ValueKind::Point),
            21 => plain("int4range", true, ValueKind::Range),
            22 => plain("tsvector", false, ValueKind::TsVector),
            23 => plain(if self.rng.random_bool(0.5) { "text[]" } else { "integer[]" }, true, ValueKind::TextArray)
                .with_int_array(),
            24 => plain("bit varying(16)", true, ValueKind::Bits),
            _ => {
                // An enum of random labels (a label may hold anything a name may, up to 63 bytes).
                let name = self.name(schema);
                let labels: Vec<String> =
                    (0..self.rng.random_range(1..5)).map(|_| self.name(&format!("{schema}\u{0}enum {name}"))).collect();
                preamble.push_str(&format!(
                    "CREATE TYPE {}.{} AS ENUM ({});\n",
                    ident(schema),
                    ident(&name),
                    labels.iter().map(|l| literal(l)).collect::<Vec<_>>().join(", ")
                ));
                ColumnType {
                    sql: format!("{}.{}", ident(schema), ident(&name)),
                    indexable: true,
                    kind: ValueKind::Enum(labels),
                }
            }
        }
    }

    fn value(&mut self, kind: &ValueKind) -> String {
        if self.rng.random_bool(0.15) {
            return "NULL".into();
        }
        let r = &mut self.rng;
        match kind {
            ValueKind::Int(lo, hi) => {
                if r.random_bool(0.2) {
                    [*lo, *hi, 0, -1][r.random_range(0..4)].to_string()
                } else {
                    r.random_range(*lo..=*hi).to_string()
                }
            }
            ValueKind::Numeric => ["'NaN'", "0", "-0.000001", "123456789012345678901234567890.123456789"]
                .get(r.random_range(0..6))
                .map(|s| s.to_string())
                .unwrap_or_else(|| {
                    format!("{}.{:04}", r.random_range(-1_000_000i64..1_000_000), r.random_range(0..10000))
                }),
            ValueKind::Float(real) => [
                "'NaN'",
                "'Infinity'",
                "'-Infinity'",
                "'-0'",
                if *real { "3.4e38" } else { "1e300" },
                if *real { "1.5e-38" } else { "1.5e-300" },
            ]
            .get(r.random_range(0..9))
            .map(|s| s.to_string())
            .unwrap_or_else(|| format!("{}", r.random::<f64>() * 1e6 - 5e5)),
            ValueKind::Bool => r.random_bool(0.5).to_string(),
            ValueKind::Text => literal(&self.text(30)),
            ValueKind::Bytea => {
                let bytes: Vec<u8> = (0..r.random_range(0..24)).map(|_| r.random()).collect();
                format!("'\\x{}'::bytea", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
            }
            ValueKind::Date => ["'infinity'", "'-infinity'", "'0044-03-15 BC'"]
                .get(r.random_range(0..8))
                .map(|s| s.to_string())
                .unwrap_or_else(|| {
                    format!(
                        "'{:04}-{:02}-{:02}'",
                        r.random_range(1..9999),
                        r.random_range(1..13),
                        r.random_range(1..29)
                    )
                }),
            ValueKind::Timestamp => format!(
                "'{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}'",
                r.random_range(1..9999),
                r.random_range(1..13),
                r.random_range(1..29),
                r.random_range(0..24),
                r.random_range(0..60),
                r.random_range(0..60),
                r.random_range(0..1_000_000)
            ),
            ValueKind::TimestampTz => format!(
                "'{:04}-{:02}-{:02} {:02}:{:02}:{:02}{:+03}'",
                r.random_range(1900..2100),
                r.random_range(1..13),
                r.random_range(1..29),
                r.random_range(0..24),
                r.random_range(0..60),
                r.random_range(0..60),
                r.random_range(-12..13)
            ),
            ValueKind::Time => format!(
                "'{:02}:{:02}:{:02}.{:03}'",
                r.random_range(0..24),
                r.random_range(0..60),
                r.random_range(0..60),
                r.random_range(0..1000)
            ),
            ValueKind::Interval => format!(
                "'{} years {} days {} seconds'",
                r.random_range(-100..100),
                r.random_range(-400..400),
                r.random_range(-100_000..100_000)
            ),
            ValueKind::Uuid => format!("'{:032x}'", r.random::<u128>()),
            ValueKind::Json => {
                let key = self.text(6);
                let value = self.text(10);
                let json = serde_json::json!({ key: [value, 1.5, null, true, {"nested\n": "\\."}] });
                literal(&json.to_string())
            }
            ValueKind::Inet => {
                if r.random_bool(0.5) {
                    format!(
                        "'{}.{}.{}.{}/{}'",
                        r.random_range(0..256),
                        r.random_range(0..256),
                        r.random_range(0..256),
                        r.random_range(0..256),
                        32
                    )
                } else {
                    format!(
                        "'{:x}::{:x}:{:x}'",
                        r.random_range(1..0xffff),
                        r.random_range(0..0xffff),
                        r.random_range(0..0xffff)
                    )
                }
            }
            ValueKind::Point => {
                format!("'({},{})'", r.random_range(-1000..1000) as f64 / 8.0, r.random_range(-1000..1000))
            }
            ValueKind::Range => {
                let a = r.random_range(-1000..1000);
                format!("'[{a},{})'", a + r.random_range(1..100))
            }
            ValueKind::TsVector => {
                let words: Vec<String> =
                    (0..r.random_range(0..4)).map(|_| literal(&format!("w{}", r.random_range(0..50)))).collect();
                format!("to_tsvector('simple', {})", literal(&words.join(" ")))
            }
            ValueKind::TextArray => {
                let items: Vec<String> = (0..self.rng.random_range(0..4))
                    .map(|_| if self.rng.random_bool(0.2) { "NULL".into() } else { literal(&self.text(8)) })
                    .collect();
                format!("ARRAY[{}]::text[]", items.join(", "))
            }
            ValueKind::IntArray => {
                let items: Vec<String> =
                    (0..r.random_range(0..5)).map(|_| r.random_range(-100..100).to_string()).collect();
                format!("ARRAY[{}]::integer[]", items.join(", "))
            }
            ValueKind::Bits => format!(
                "B'{}'",
                (0..r.random_range(0..16)).map(|_| if r.random_bool(0.5) { '1' } else { '0' }).collect::<String>()
            ),
            ValueKind::Enum(labels) => literal(&labels[r.random_range(0..labels.len())]),
        }
    }

    /// The whole script: schemas, types, tables with rows, indexes, views, functions, comments.
    pub fn script(&mut self) -> String {
        let mut sql =
            String::from("SET client_min_messages = warning;\nSET standard_conforming_strings = on;\nBEGIN;\n");
        let schemas: Vec<String> = (0..self.rng.random_range(1..=3))
            .map(|i| if i == 0 && self.rng.random_bool(0.3) { "public".to_string() } else { self.name("") })
            .collect();
        for schema in &schemas {
            if schema != "public" {
                sql.push_str(&format!("CREATE SCHEMA {};\n", ident(schema)));
                let comment = self.text(20);
                sql.push_str(&format!("COMMENT ON SCHEMA {} IS {};\n", ident(schema), literal(&comment)));
            }
        }
        for schema in &schemas {
            for _ in 0..self.rng.random_range(1..=4) {
                self.table(schema, &mut sql);
            }
        }
        sql.push_str("COMMIT;\n");
        sql
    }

    fn table(&mut self, schema: &str, sql: &mut String) {
        let table = self.name(schema);
        let qualified = format!("{}.{}", ident(schema), ident(&table));
        let mut columns: Vec<(String, ColumnType)> = Vec::new();
        let mut column_names = BTreeSet::new();
        let mut preamble = String::new();
        for _ in 0..self.rng.random_range(1..=6) {
            let column_type = self.column_type(schema, &mut preamble);
            let name = loop {
                let name = self.name(&format!("{schema}\u{0}columns of {table}"));
                if column_names.insert(name.clone()) {
                    break name;
                }
            };
            columns.push((name, column_type));
        }
        sql.push_str(&preamble);
        let mut definitions: Vec<String> =
            columns.iter().map(|(name, t)| format!("    {} {}", ident(name), t.sql)).collect();
        if self.rng.random_bool(0.5) {
            // A default holding tricky text on a text column.
            if let Some(i) = columns.iter().position(|(_, t)| matches!(t.kind, ValueKind::Text)) {
                let default = self.text(12);
                definitions[i].push_str(&format!(" DEFAULT {}", literal(&default)));
            }
        }
        sql.push_str(&format!("CREATE TABLE {qualified} (\n{}\n);\n", definitions.join(",\n")));
        let comment = self.text(30);
        sql.push_str(&format!("COMMENT ON TABLE {qualified} IS {};\n", literal(&comment)));
        let (first_column, _) = &columns[0];
        let comment = self.text(10);
        sql.push_str(&format!("COMMENT ON COLUMN {qualified}.{} IS {};\n", ident(first_column), literal(&comment)));

        let rows = if self.rng.random_bool(0.15) { 0 } else { self.rng.random_range(1..=25) };
        for _ in 0..rows {
            let values: Vec<String> =
                columns.iter().map(|(_, t)| t.kind.clone()).collect::<Vec<_>>().iter().map(|k| self.value(k)).collect();
            sql.push_str(&format!("INSERT INTO {qualified} VALUES ({});\n", values.join(", ")));
        }
        if let Some((column, _)) = columns.iter().find(|(_, t)| t.indexable) {
            let index = self.name(schema);
            sql.push_str(&format!("CREATE INDEX {} ON {qualified} ({});\n", ident(&index), ident(column)));
        }
        if self.rng.random_bool(0.5) {
            let view = self.name(schema);
            let alias = self.text(8).replace('\0', "");
            let alias = if alias.is_empty() || alias.len() > NAME_BYTES { "alias".to_string() } else { alias };
            sql.push_str(&format!(
                "CREATE VIEW {}.{} AS SELECT {} AS {}, {} AS \"literal\" FROM {qualified};\n",
                ident(schema),
                ident(&view),
                ident(first_column),
                ident(&alias),
                literal(&self.text(10))
            ));
        }
        if self.rng.random_bool(0.4) {
            let function = self.name(schema);
            let body = self.text(20);
            // Dollar quoting with a tag the body cannot contain.
            let tag = format!("b{}", self.rng.random::<u32>());
            sql.push_str(&format!(
                "CREATE FUNCTION {}.{}() RETURNS text LANGUAGE sql IMMUTABLE AS ${tag}$\nSELECT {}::text\n${tag}$;\n",
                ident(schema),
                ident(&function),
                literal(&body)
            ));
        }
        if self.rng.random_bool(0.3) {
            let sequence = self.name(schema);
            let start = self.rng.random_range(1..1_000_000);
            sql.push_str(&format!(
                "CREATE SEQUENCE {}.{} START {start};\nSELECT nextval({});\n",
                ident(schema),
                ident(&sequence),
                literal(&format!("{}.{}", ident(schema), ident(&sequence)))
            ));
        }
    }
}

trait IntArray {
    fn with_int_array(self) -> Self;
}

impl IntArray for ColumnType {
    /// `integer[]` columns get integer values.
    fn with_int_array(mut self) -> Self {
        if self.sql == "integer[]" {
            self.kind = ValueKind::IntArray;
        }
        self
    }
}

/// The script for `seed`.
pub fn script(seed: u64) -> String {
    Generator::new(seed).script()
}
