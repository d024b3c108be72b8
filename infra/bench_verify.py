"""Restore benchmark on the local stack: `backstop verify` (fetch from the S3 emulator + SHA-256 + decompress +
restore into a fresh scratch cluster + fingerprint re-read + checks + cleanup) against the plain restores of
the same data, `gunzip -c dump.sql.gz | psql -1` and `pg_restore -j2` of a directory-format dump, alternating
in one run. Prints medians and ratios; writes JSON.

    infra/local-stack.sh up && .venv/bin/python infra/bench_backup.py --database mix --runs 1
    .venv/bin/python infra/bench_verify.py [--database mix] [--runs 3]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import time

from bench_backup import LOCAL, REPO, stack_environment


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default="mix")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(LOCAL, "bench-verify.json"))
    args = parser.parse_args()

    state, stack_env, pg_env = stack_environment()
    bindir = state["pg_bin_dir"]
    config = os.path.join(LOCAL, f"bench-{args.database}.toml")
    cli = os.path.join(REPO, "target", "release", "backstop")
    env = dict(stack_env, BACKSTOP_CONFIG=config)
    status = json.loads(subprocess.run([cli, "status", "--json", "--limit", "20"], env=env, capture_output=True, text=True, check=True).stdout)
    backup = next(b for b in status[0]["backups"] if b.get("dump") and b["codec"] == "zstd")
    target = status[0]["target"]
    gz = os.path.join(LOCAL, "bench.sql.gz")
    fd = os.path.join(LOCAL, "bench-dir")
    if not os.path.exists(gz):
        raise SystemExit("run infra/bench_backup.py first (it leaves the gzip -6 dump this compares with)")
    if not os.path.isdir(fd):
        subprocess.run([os.path.join(bindir, "pg_dump"), "-Fd", "-j2", "-f", fd, "-d", args.database], env=pg_env, check=True)
    psql = os.path.join(bindir, "psql")

    def fresh(db):
        subprocess.run([psql, "-X", "-q", "-d", "postgres", "-c", f"DROP DATABASE IF EXISTS {db}", "-c", f"CREATE DATABASE {db}"], env=pg_env, check=True)

    cases = {
        "gunzip -c | psql -1": lambda: (fresh("bench_r1"), f"gunzip -c '{gz}' | '{psql}' -X -q -1 -v ON_ERROR_STOP=1 -d bench_r1 >/dev/null"),
        "pg_restore -j2 (directory format)": lambda: (fresh("bench_r2"), f"'{os.path.join(bindir, 'pg_restore')}' -j2 -d bench_r2 '{fd}'"),
        "backstop verify": lambda: (None, f"'{cli}' verify --target {target} --backup {backup['backup_id']}"),
    }
    times = {name: [] for name in cases}
    for run in range(args.runs):
        for name, prepare in cases.items():
            _, command = prepare()
            start = time.monotonic()
            subprocess.run(["bash", "-o", "pipefail", "-c", command], env=dict(pg_env, BACKSTOP_CONFIG=config), check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.monotonic() - start)
        print(f"run {run + 1}/{args.runs}: " + ", ".join(f"{n} {t[-1]:.2f}s" for n, t in times.items()), flush=True)
    base = statistics.median(times["pg_restore -j2 (directory format)"])
    result = {
        "database": args.database, "runs": args.runs, "backup_id": backup["backup_id"], "sql_bytes": backup["raw_bytes"],
        "median_seconds": {n: round(statistics.median(t), 3) for n, t in times.items()},
        "ratio_to_pg_restore_j2": {n: round(statistics.median(t) / base, 3) for n, t in times.items()},
    }
    print(json.dumps(result, indent=2))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    for db in ("bench_r1", "bench_r2"):
        subprocess.run([psql, "-X", "-q", "-d", "postgres", "-c", f"DROP DATABASE IF EXISTS {db}"], env=pg_env, check=True)


if __name__ == "__main__":
    main()
