"""Shared helpers of the benchmark scripts: the local stack's settings and libpq environments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
INFRA = BENCH.parent
REPO = INFRA.parent
LOCAL = REPO / ".local"
VENV_PY = REPO / ".venv" / "bin" / "python"

# Roles the local stack creates (infra/local_stack.py): the corpus is owned by app_owner, read by app_reader,
# and backed up by backstop.
OWNER_ROLE = "app_owner"
READER_ROLE = "app_reader"
BACKUP_ROLE = "backstop"


def say(msg: str) -> None:
    print(msg, flush=True)


class Stack:
    """The running local stack (infra/local-stack.sh up): ports, binaries, and environments to reach it."""

    def __init__(self) -> None:
        try:
            self.state = json.loads((LOCAL / "state.json").read_text())
        except (OSError, ValueError):
            raise SystemExit("the local stack is not up: infra/local-stack.sh up") from None
        self.bindir = Path(self.state["pg_bin_dir"])
        self.port = int(self.state["pg_port"])
        self.pg_password = (LOCAL / "secrets" / "postgres-password").read_text().strip()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "AWS_", "BACKSTOP_"))}
        with open(LOCAL / "env") as f:  # the AWS_* settings that point at the emulator
            for line in f:
                line = line.split("#", 1)[0].strip()
                if line.startswith("export ") and "=" in line:
                    key, value = line[len("export "):].split("=", 1)
                    env[key] = value.strip().strip("'\"")
        env.pop("BACKSTOP_CONFIG", None)
        self.aws_env = env
        self.pg_env = dict(env, PGHOST="127.0.0.1", PGPORT=str(self.port), PGUSER="postgres",
                           PGPASSWORD=self.pg_password, PGAPPNAME="backstop-bench")

    def bin(self, name: str) -> str:
        return str(self.bindir / name)

    def psql(self, database: str, sql: str, *, capture: bool = False, env: dict | None = None) -> str:
        """Run SQL as the superuser; with capture, return the unaligned tuples-only output."""
        argv = [self.bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", database]
        if capture:
            argv += ["-tA"]
        r = subprocess.run(argv, input=sql, env=env or self.pg_env, text=True,
                           stdout=subprocess.PIPE if capture else subprocess.DEVNULL, stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise RuntimeError(f"psql on {database} failed:\n{r.stderr.strip()}\n--- SQL (start) ---\n{sql[:2000]}")
        return r.stdout.strip() if capture else ""

    def server_version(self) -> str:
        return self.psql("postgres", "SELECT version()", capture=True)


def ensure_stack() -> Stack:
    """Bring the local stack up if it is not (idempotent), and return it."""
    r = subprocess.run([str(INFRA / "local-stack.sh"), "status"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if r.returncode != 0:
        say("bringing the local stack up (infra/local-stack.sh up)…")
        subprocess.run([str(INFRA / "local-stack.sh"), "up"], check=True, stdout=sys.stderr)
    return Stack()
