//! Fingerprint scheme v2 on real dumps: `pg_dump --schema-only` reproduces a full dump's schema digest (the
//! cheap schema check of a restored copy rests on it), on the seeded databases and on SQL built to confuse a
//! line-based reader (function bodies holding COPY lines and pg_dump's completion line, SQL-standard bodies,
//! materialized views, sequences, large objects).

use std::process::Command;

use backstop::domain::dump_parser::fingerprint_of;
use backstop_tests::pg::{bin_dir, PgCluster};

const TRICKY: &str = r#"
CREATE SCHEMA tricky;
CREATE TABLE tricky.t (id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text);
INSERT INTO tricky.t (v) VALUES ('a;b'), (E'line\nbreak'), ('-- PostgreSQL database dump complete');
CREATE FUNCTION tricky.f() RETURNS void LANGUAGE plpgsql AS $body$
BEGIN
COPY tricky.t (id, v) FROM stdin;
-- PostgreSQL database dump complete
END
$body$;
CREATE FUNCTION tricky.g(a integer) RETURNS integer LANGUAGE sql
BEGIN ATOMIC
 SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END;
END;
CREATE SEQUENCE tricky.s START 5;
SELECT nextval('tricky.s'), nextval('tricky.s');
CREATE MATERIALIZED VIEW tricky.mv AS SELECT count(*) AS n FROM tricky.t;
COMMENT ON TABLE tricky.t IS 'semi; colons
--
-- Name: x; Type: INDEX; Schema: tricky; Owner: -
--';
SELECT lo_from_bytea(0, '\x0102');
"#;

fn dump(cluster: &PgCluster, db: &str, extra: &[&str]) -> Vec<u8> {
    let out = Command::new(bin_dir().join("pg_dump"))
        .args(["-h", "127.0.0.1", "-U", "postgres", "-p", &cluster.port.to_string(), "-d", db])
        .args(extra)
        .env("PGPASSWORD", backstop_tests::pg::SUPERUSER_PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn a_schema_only_dump_reproduces_the_full_dumps_schema_digest() {
    let cluster = PgCluster::start();
    cluster.seed_sample("sample");
    cluster.psql("postgres", "CREATE DATABASE hostile");
    cluster.psql_file("hostile", &backstop_tests::repo_root().join("infra/seed/hostile.sql"));
    cluster.psql("postgres", "CREATE DATABASE tricky");
    cluster.psql("tricky", TRICKY);
    for db in ["sample", "hostile", "tricky"] {
        let full = fingerprint_of(&dump(&cluster, db, &[])).unwrap().fingerprint;
        let schema_only = fingerprint_of(&dump(&cluster, db, &["--schema-only"])).unwrap().fingerprint;
        assert_eq!(schema_only.schema_digest, full.schema_digest, "{db}");
        assert!(schema_only.tables.is_empty() && !full.tables.is_empty(), "{db}");
        if db == "tricky" {
            let t = full.table("tricky", "t").unwrap();
            assert_eq!(t.rows, 3, "the COPY line in the function body started nothing");
            assert!(
                full.sequences.iter().any(|s| s.name == "tricky.s" && s.value == 6 && s.is_called),
                "{:?}",
                full.sequences
            );
            assert_eq!(full.large_objects, 1);
        }
    }
}
