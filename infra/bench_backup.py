"""Quick backup benchmark on the local stack: `backstop backup` against raw `pg_dump > /dev/null` and the plain
`pg_dump | gzip -6 > file` pipeline, alternating A B C A B C on the same database in the same run, so the
ratios hold on a shared, noisy machine. Prints medians, ratios and stored sizes; writes them as JSON.

    infra/local-stack.sh up && .venv/bin/python infra/bench_backup.py [--database sample|mix] [--runs 5]

`mix` (~500 MB of SQL: json, numeric, timestamps, bytea, wide text and narrow integer rows) is created in the
local cluster on first use. Needs the release CLI: cargo build --release -p backstop-cli.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCAL = os.path.join(REPO, ".local")

MIX_SQL = """
CREATE TABLE events AS SELECT g AS id, timestamptz '2026-01-01' - (g || ' seconds')::interval AS at, md5(g::text) AS k,
  jsonb_build_object('a', g % 97, 'b', md5((g * 3)::text), 'c', array[g, g * 2]) AS payload,
  (g % 1000)::numeric / 7 AS amount FROM generate_series(1, 1500000) g;
CREATE TABLE docs AS SELECT g AS id, repeat(md5(g::text) || ' lorem ipsum dolor sit amet ', 12) AS body,
  decode(md5(g::text), 'hex') AS blob FROM generate_series(1, 300000) g;
CREATE TABLE small AS SELECT g AS id, g % 10 AS bucket FROM generate_series(1, 2000000) g;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO backstop;
"""


def stack_environment():
    """The local stack's state, the environment that points at its emulator, and a superuser libpq one."""
    state = json.load(open(os.path.join(LOCAL, "state.json")))
    stack_env = dict(os.environ)
    with open(os.path.join(LOCAL, "env")) as f:  # the AWS_* settings that point at the emulator
        for line in f:
            if line.startswith("export ") and "=" in line:
                key, value = line[len("export "):].strip().split("=", 1)
                stack_env[key] = value.strip("'\"")
    pg_env = dict(stack_env, PGHOST="127.0.0.1", PGPORT=str(state["pg_port"]), PGUSER="postgres",
                  PGPASSWORD=open(os.path.join(LOCAL, "secrets", "postgres-password")).read().strip())
    return state, stack_env, pg_env


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default="mix")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(LOCAL, "bench-backup.json"))
    args = parser.parse_args()

    state, stack_env, pg_env = stack_environment()
    bindir = state["pg_bin_dir"]
    psql = [os.path.join(bindir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    exists = subprocess.run(psql + ["-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{args.database}'"],
                            env=pg_env, capture_output=True, text=True, check=True).stdout.strip()
    if not exists:
        if args.database != "mix":
            sys.exit(f"database {args.database} does not exist")
        print("creating the mix database (~500 MB of SQL)…", flush=True)
        subprocess.run(psql + ["-d", "postgres", "-c", "CREATE DATABASE mix OWNER app_owner"], env=pg_env, check=True)
        subprocess.run(psql + ["-d", "mix", "-c", MIX_SQL], env=pg_env, check=True)

    config = os.path.join(LOCAL, f"bench-{args.database}.toml")
    with open(os.path.join(LOCAL, "backstop.toml")) as f:
        text = f.read()
    with open(config, "w") as f:
        f.write(text.replace('name = "sample"', f'name = "bench-{args.database}"').replace('database = "sample"', f'database = "{args.database}"'))
    cli = os.path.join(REPO, "target", "release", "backstop")
    if not os.path.exists(cli):
        sys.exit("build the release CLI first: cargo build --release -p backstop-cli")
    pg_dump = os.path.join(bindir, "pg_dump")
    gz = os.path.join(LOCAL, "bench.sql.gz")
    cases = {
        "pg_dump > /dev/null": f"'{pg_dump}' -d {args.database} > /dev/null",
        "pg_dump | gzip -6 > file": f"'{pg_dump}' -d {args.database} | gzip -6 > '{gz}'",
        "backstop backup (zstd 1)": f"BACKSTOP_CONFIG='{config}' BACKSTOP_CODEC=zstd '{cli}' backup",
        "backstop backup (gzip 6)": f"BACKSTOP_CONFIG='{config}' BACKSTOP_CODEC=gzip '{cli}' backup",
    }
    times = {name: [] for name in cases}
    for run in range(args.runs):
        for name, command in cases.items():
            start = time.monotonic()
            subprocess.run(["bash", "-o", "pipefail", "-c", command], env=pg_env, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.monotonic() - start)
        print(f"run {run + 1}/{args.runs}: " + ", ".join(f"{n} {t[-1]:.2f}s" for n, t in times.items()), flush=True)

    status = json.loads(subprocess.run([cli, "status", "--json", "--limit", "2"], env=dict(stack_env, BACKSTOP_CONFIG=config),
                                       capture_output=True, text=True, check=True).stdout)
    stored = {b["codec"]: b["dump"]["size"] for b in status[0]["backups"] if b.get("dump")}
    raw_bytes = status[0]["backups"][0]["raw_bytes"]
    base = statistics.median(times["pg_dump > /dev/null"])
    result = {
        "database": args.database, "runs": args.runs, "sql_bytes": raw_bytes,
        "median_seconds": {n: round(statistics.median(t), 3) for n, t in times.items()},
        "ratio_to_raw_pg_dump": {n: round(statistics.median(t) / base, 3) for n, t in times.items()},
        "stored_bytes": {"gzip -6 (plain pipeline)": os.path.getsize(gz), **{f"backstop {c}": s for c, s in stored.items()}},
    }
    print(json.dumps(result, indent=2))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
