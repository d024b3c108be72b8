//! The table plan on a real pg_dump of a schema with every kind of object a table can own (fixtures/tables.sql:
//! PostgreSQL 15's pg_dump of serial and identity columns, unique and expression indexes, a foreign key chain,
//! a trigger, a policy, statistics, comments, column grants, a partitioned table, a quoted schema).

use super::table_plan::{parse_new_name, plan, statements, DumpPart, Step, TablePattern, TablePlan};

const DUMP: &str = include_str!("fixtures/tables.sql");

/// A dump cut as the backup's framer cuts it: segments of SQL, and one table's rows each.
pub(super) fn parts_of(dump: &[u8]) -> Vec<DumpPart> {
    use crate::domain::dump_layout::SegmentKind;
    use crate::pipeline::framer::{Collect, Framer};
    let mut frames = Collect::default();
    let mut framer = Framer::new(&mut frames);
    framer.feed(dump).unwrap();
    framer.finish().unwrap();
    let mut segments: Vec<(SegmentKind, Vec<u8>)> = Vec::new();
    for frame in frames.0 {
        if let Some(kind) = frame.starts {
            segments.push((kind, Vec::new()));
        }
        segments.last_mut().unwrap().1.extend_from_slice(&frame.sql);
    }
    segments
        .into_iter()
        .enumerate()
        .map(|(i, (kind, sql))| match kind {
            SegmentKind::Sql => DumpPart::Sql(statements(&sql).unwrap()),
            SegmentKind::Copy { schema, name, statement, .. } => {
                DumpPart::Rows { segment: i, table: (schema, name), statement }
            }
        })
        .collect()
}

fn parts() -> Vec<DumpPart> {
    parts_of(DUMP.as_bytes())
}

fn pick(patterns: &[&str], rename: Option<&str>) -> Result<TablePlan, String> {
    let patterns: Vec<TablePattern> = patterns.iter().map(|p| TablePattern::parse(p).unwrap()).collect();
    let rename = rename.map(|r| parse_new_name(r).unwrap());
    plan(&parts(), &patterns, rename.as_ref())
}

fn sql(plan: &TablePlan) -> Vec<String> {
    plan.steps
        .iter()
        .filter_map(|s| match s {
            Step::Sql(s) if !s.starts_with("SET ") && !s.starts_with("SELECT pg_catalog.set_config") => {
                Some(s.split_whitespace().collect::<Vec<_>>().join(" "))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn one_table_brings_what_it_owns_and_leaves_out_what_names_others() {
    let plan = pick(&["app.orders"], None).unwrap();
    let sql = sql(&plan);
    let has = |prefix: &str| sql.iter().any(|s| s.starts_with(prefix));
    for own in [
        "CREATE TABLE app.orders (",
        "ALTER TABLE app.orders OWNER TO postgres;",
        "COMMENT ON TABLE app.orders IS 'the orders; app.customers';",
        "COMMENT ON COLUMN app.orders.note",
        "ALTER TABLE app.orders ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY ( SEQUENCE NAME app.orders_id_seq",
        "SELECT pg_catalog.setval('app.orders_id_seq', 20, true);",
        "ALTER TABLE ONLY app.orders ADD CONSTRAINT orders_pkey PRIMARY KEY (id);",
        "COMMENT ON CONSTRAINT orders_pkey ON app.orders",
        "CREATE INDEX \"Orders Note\" ON app.orders",
        "CREATE INDEX orders_customer_idx ON app.orders",
        "COMMENT ON INDEX app.orders_customer_idx",
        "CREATE STATISTICS app.orders_stats",
        "ALTER STATISTICS app.orders_stats OWNER",
        "CREATE TRIGGER orders_touch BEFORE INSERT ON app.orders",
        "CREATE POLICY mine ON app.orders",
        "ALTER TABLE app.orders ENABLE ROW LEVEL SECURITY;",
        "GRANT SELECT ON TABLE app.orders TO reader;",
    ] {
        assert!(has(own), "missing {own:?} in {sql:#?}");
    }
    for other in [
        "CREATE TABLE app.customers",
        "CREATE VIEW",
        "CREATE FUNCTION",
        "CREATE TYPE",
        "CREATE SCHEMA",
        "ALTER TABLE app.order_view",
    ] {
        assert!(!has(other), "{other:?} is not the table's: {sql:#?}");
    }
    assert!(!sql.iter().any(|s| s.contains("customer_id_fkey") || s.contains("items_order_id_fkey")), "{sql:#?}");
    assert_eq!(plan.left_out.len(), 1, "its own foreign key names a table left out: {:#?}", plan.left_out);
    assert!(
        plan.left_out[0].contains("orders_customer_id_fkey")
            && plan.left_out[0].ends_with("(it names app.customers, not restored)")
    );
    assert_eq!(plan.sequences, [("app.orders_id_seq".to_string(), "app.orders_id_seq".to_string())]);
    let rows: Vec<_> = plan.steps.iter().filter(|s| matches!(s, Step::Rows { .. })).collect();
    assert_eq!(rows.len(), 1);
    let first_rows = plan.steps.iter().position(|s| matches!(s, Step::Rows { .. })).unwrap();
    let pkey =
        plan.steps.iter().position(|s| matches!(s, Step::Sql(s) if s.contains("orders_pkey PRIMARY KEY"))).unwrap();
    assert!(first_rows < pkey, "rows load before the indexes build, as in the dump");
    assert!(matches!(&plan.steps[0], Step::Sql(s) if s.starts_with("SET ")), "the dump's settings come first");
}

#[test]
fn tables_restored_together_keep_the_keys_between_them() {
    let plan = pick(&["app.orders", "app.items", "app.customers"], None).unwrap();
    let sql = sql(&plan);
    assert!(sql.iter().any(|s| s.contains("ADD CONSTRAINT items_order_id_fkey")), "{sql:#?}");
    assert!(sql.iter().any(|s| s.contains("ADD CONSTRAINT orders_customer_id_fkey")));
    assert!(sql.iter().any(|s| s.starts_with("ALTER SEQUENCE app.customers_id_seq OWNED BY app.customers.id")));
    assert!(sql.iter().any(|s| s.starts_with("CREATE SEQUENCE app.customers_id_seq")));
    assert!(sql.iter().any(|s| s.contains("GRANT SELECT(email) ON TABLE app.customers TO reader")));
    assert!(!sql.iter().any(|s| s.contains("shared_seq")), "a sequence no chosen table owns stays out");
    assert!(plan.left_out.is_empty(), "{:#?}", plan.left_out);
    assert_eq!(plan.tables.len(), 3);
}

#[test]
fn as_renames_the_table_and_everything_it_owns() {
    let plan = pick(&["app.customers"], Some("app.customers_back")).unwrap();
    let sql = sql(&plan).join("\n");
    for renamed in [
        "CREATE TABLE app.customers_back (",
        "CREATE SEQUENCE app.customers_back_id_seq",
        "ALTER SEQUENCE app.customers_back_id_seq OWNED BY app.customers_back.id;",
        "SET DEFAULT nextval('app.customers_back_id_seq'::regclass);",
        "SELECT pg_catalog.setval('app.customers_back_id_seq', 5, true);",
        "ADD CONSTRAINT customers_back_pkey PRIMARY KEY (id);",
        "ADD CONSTRAINT customers_back_email_key UNIQUE (email);",
        "GRANT SELECT(email) ON TABLE app.customers_back TO reader;",
        "mood app.mood DEFAULT 'ok'::app.mood",
    ] {
        assert!(sql.contains(renamed), "missing {renamed:?} in\n{sql}");
    }
    assert!(!sql.contains("app.customers ") && !sql.contains("customers_pkey"), "{sql}");
    let Some(Step::Rows { restored_statement, statement, .. }) =
        plan.steps.iter().find(|s| matches!(s, Step::Rows { .. }))
    else {
        panic!("no rows")
    };
    assert_eq!(statement, "COPY app.customers (id, email, mood) FROM stdin;");
    assert_eq!(restored_statement, "COPY app.customers_back (id, email, mood) FROM stdin;");
    assert_eq!(plan.sequences, [("app.customers_id_seq".to_string(), "app.customers_back_id_seq".to_string())]);
    assert_eq!(plan.tables[0].restored, ("app".to_string(), "customers_back".to_string()));
}

#[test]
fn as_into_another_schema_keeps_the_names_and_quotes_odd_ones() {
    let plan = pick(&["app.orders"], Some("\"Restore Here\".orders")).unwrap();
    let sql = sql(&plan).join("\n");
    assert!(sql.contains("CREATE TABLE \"Restore Here\".orders ("), "{sql}");
    assert!(sql.contains("CREATE INDEX \"Orders Note\" ON \"Restore Here\".orders"), "{sql}");
    assert!(sql.contains("SEQUENCE NAME \"Restore Here\".orders_id_seq"), "{sql}");
    assert!(sql.contains("COMMENT ON INDEX \"Restore Here\".orders_customer_idx"), "{sql}");
    assert!(sql.contains("CREATE STATISTICS \"Restore Here\".orders_stats"), "{sql}");
    assert!(sql.contains("EXECUTE FUNCTION app.touch()"), "the trigger's function is the live one: {sql}");
}

#[test]
fn patterns_choose_by_glob_quote_and_case() {
    let plan = pick(&["app.events*"], None).unwrap();
    let names: Vec<_> = plan.tables.iter().map(|t| t.source.1.clone()).collect();
    assert_eq!(names, ["events", "events_2026"]);
    let sql = sql(&plan);
    assert!(sql.iter().any(|s| s.contains("ATTACH PARTITION app.events_2026")), "{sql:#?}");
    assert!(sql.iter().any(|s| s.starts_with("ALTER INDEX app.events_at ATTACH PARTITION app.events_2026_at_idx")));

    let partition = pick(&["app.events_2026"], None).unwrap();
    assert!(partition.left_out.iter().any(|l| l.contains("ATTACH PARTITION")), "{:#?}", partition.left_out);
    assert!(pick(&["\"Mixed Case\".\"T\""], None).unwrap().tables.len() == 1);
    assert!(pick(&["\"Mixed Case\".t"], None).is_err(), "unquoted folds to lower case");
    assert_eq!(pick(&["ORDERS"], None).unwrap().tables.len(), 1, "no schema: any schema");
    let err = pick(&["app.nope"], None).unwrap_err();
    assert!(err.contains("no table of the backup matches \"app.nope\""), "{err}");
    let err = pick(&["app.*"], Some("app.x")).unwrap_err();
    assert!(err.contains("--as names one table"), "{err}");
}

#[test]
fn new_names_are_whole_names() {
    assert!(parse_new_name("app.x*").is_err());
    assert!(parse_new_name("x").is_err());
    assert!(parse_new_name(&format!("app.{}", "x".repeat(64))).is_err());
    assert_eq!(parse_new_name("App.\"X.y\"").unwrap(), ("app".to_string(), "X.y".to_string()));
}

#[test]
fn long_derived_names_stay_within_63_bytes_and_apart() {
    let long = format!("app.{}", "t".repeat(60));
    let plan = pick(&["app.customers"], Some(&long)).unwrap();
    let sql = sql(&plan).join("\n");
    let names: Vec<&str> =
        sql.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| w.starts_with("ttt")).collect();
    assert!(names.iter().all(|n| n.len() <= 63), "{names:?}");
    let distinct: std::collections::BTreeSet<_> = names.iter().collect();
    assert!(distinct.len() >= 4, "table, sequence, two constraints stay apart: {distinct:?}");
}

/// Every table of the hostile seed's dump (names with quotes, dots, newlines, semicolons, non-Latin letters;
/// bodies holding `COPY` lines) plans with its definition and its rows, renamed or not.
#[test]
fn every_table_of_a_hostile_dump_plans_whole() {
    let parts = parts_of(include_bytes!("fixtures/hostile.sql"));
    let tables: Vec<_> = parts
        .iter()
        .filter_map(|p| match p {
            DumpPart::Rows { table, .. } => Some(table.clone()),
            DumpPart::Sql(_) => None,
        })
        .collect();
    assert!(tables.len() >= 11, "{tables:?}");
    for table in &tables {
        let pattern = format!("\"{}\".\"{}\"", table.0.replace('"', "\"\""), table.1.replace('"', "\"\""));
        for rename in [None, Some(("public".to_string(), "zz_copy".to_string()))] {
            let plan = plan(&parts, &[TablePattern::parse(&pattern).unwrap()], rename.as_ref())
                .unwrap_or_else(|e| panic!("{pattern}: {e}"));
            assert_eq!(plan.tables.len(), 1, "{pattern} chose {:?}", plan.tables);
            let creates =
                plan.steps.iter().filter(|s| matches!(s, Step::Sql(s) if s.starts_with("CREATE TABLE"))).count();
            let rows: Vec<_> = plan
                .steps
                .iter()
                .filter_map(|s| match s {
                    Step::Rows { restored_statement, .. } => Some(restored_statement),
                    _ => None,
                })
                .collect();
            assert_eq!((creates, rows.len()), (1, 1), "{pattern}: {:#?}", plan.steps);
            if rename.is_some() {
                assert!(rows[0].starts_with("COPY public.zz_copy "), "{pattern}: {}", rows[0]);
            }
        }
    }
}
