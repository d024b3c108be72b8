"""Backstop's benchmark, in one command: backup and restore cases on the deterministic corpus, alternating.

    .venv/bin/python infra/bench/run.py [--size small|medium|large|xlarge] [--runs N] [--out FILE] [--cli PATH]
                                        [--only CASE[,CASE]] [--keep] [--seed N] [--timeout S]
                                        [--database NAME]   # an existing database instead of the corpus
    .venv/bin/python infra/bench/run.py --smoke          # CI: small corpus, one run of every case
    .venv/bin/python infra/bench/run.py --list           # the cases

It brings the local stack up if needed (infra/local-stack.sh up), builds the corpus if missing or stale
(infra/bench/corpus.py), then runs every selected case once per run, in turn, the start case rotating from run to
run (A B C, B C A, ...), backup cases first. Reported per case: the median wall seconds over the runs, the ratio
to the reference (raw `pg_dump > /dev/null` for backup cases, `pg_restore -j2` for restore cases), and two peak
RSS figures:

* own peak: the process's own VmHWM/VmRSS, sampled from /proc every 20 ms (backstop alone, without its pg_dump
  or psql children; for a pipeline the largest stage);
* maxrss: ru_maxrss as wait4 reports it, which on Linux is the largest of the process and the descendants it
  waited for (so for backstop usually its pg_dump or psql). Taken through GNU time when /usr/bin/time is GNU
  time, so the figure does not start from the runner's own size; otherwise from os.wait4 directly (then floored
  at the runner's RSS, recorded in the JSON).

Around every case the runner probes the machine while its stack sits idle (1 s before and after; it waits up to
60 s for quiet first): when something else keeps more than 0.25 core busy, that run's figures are refused (kept
in the JSON under "refused", left out of the medians) and the table says so, with the probed range.

Restores into a dedicated throwaway cluster started for the run with the settings of Backstop's local scratch
clusters (shared/src/adapters/local_scratch.rs), a fresh database each time; `backstop verify` makes its own
scratch cluster and drills a backup made by `backstop backup` in this run. Prints a table and writes everything
as JSON (default .local/bench/results-<size>.json). Exits 1 only when a case fails to run, never on timings.

Cleans up what it makes (restore databases and cluster, dumps, the bench bucket, the backups and catalog items
of the bench target; with --smoke also the corpus database when this run built it), except with --keep, which
keeps the dumps and backups for profiling. Needs the release CLI: cargo build --release -p backstop-cli.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import stat
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # infra/, for local_stack
import corpus  # noqa: E402
from common import BACKUP_ROLE, BENCH, LOCAL, OWNER_ROLE, READER_ROLE, REPO, VENV_PY, Stack, ensure_stack, say  # noqa: E402

GNU_TIME = "/usr/bin/time"
BENCH_BUCKET = "backstop-bench"
BENCH_KEY_PREFIX = "bench/"
SAMPLE_INTERVAL = 0.02
# LocalScratch's default bases (shared/src/adapters/local_scratch.rs): memory-backed storage for a restore that
# fits, else the temp dir. The plain restores go where a drill of the same corpus goes (scratch_base_for), so
# both sides write to the same kind of storage; each drill's own place is checked against it (drill_places).
SCRATCH_DISK_BASE = Path(tempfile.gettempdir()) / "backstop-scratch"
MEMORY_FILESYSTEM = Path("/dev/shm")
SCRATCH_MEMORY_BASE = MEMORY_FILESYSTEM / "backstop-scratch"
# The restore settings of Backstop's local scratch clusters (shared/src/adapters/local_scratch.rs).
SCRATCH_SETTINGS = ["fsync=off", "synchronous_commit=off", "full_page_writes=off", "wal_level=minimal",
                    "max_wal_senders=0", "max_wal_size=4GB", "autovacuum=off", "maintenance_work_mem=256MB",
                    "max_connections=80", "max_locks_per_transaction=1024"]
# `backstop verify` variants: BACKSTOP_VERIFY_CHECKS values, one case each. The CLI may not read the variable yet;
# the runner passes it all the same and records whether the binary mentions it.
VERIFY_CHECKS = ["counts", "digests"]
# backstop backup variants: (case id, label, BACKSTOP_CODEC, BACKSTOP_COMPRESSION_LEVEL or None for the default).
BACKUP_CODECS = [("backstop_zstd", "backstop backup (zstd, default level)", "zstd", None),
                 ("backstop_gzip6", "backstop backup (gzip 6)", "gzip", 6)]


@dataclass
class Case:
    id: str
    side: str  # "backup" | "restore"
    label: str
    reference: bool = False


CASES = [
    Case("pg_dump", "backup", "pg_dump > /dev/null", reference=True),
    Case("gzip6_upload", "backup", "pg_dump | gzip -6 > file, then upload_file"),
    Case("zstd1", "backup", "pg_dump | zstd -1 -T2 > file"),
    *[Case(cid, "backup", label) for cid, label, _, _ in BACKUP_CODECS],
    Case("pg_restore_j2", "restore", "pg_restore -j2 (directory format)", reference=True),
    Case("psql_gunzip", "restore", "gunzip -c | psql -1"),
    *[Case(f"verify_{v}", "restore", f"backstop verify (BACKSTOP_VERIFY_CHECKS={v})") for v in VERIFY_CHECKS],
    Case("runbook_zstd_psql", "restore", "runbook: download + zstd -dc | psql -1 + count(*)"),
    Case("restore_whole", "restore", "backstop restore (whole database, checked)"),
    Case("restore_table", "restore", "backstop restore --table (the largest table)"),
]
CASE_BY_ID = {c.id: c for c in CASES}


class CaseFailed(Exception):
    pass


# ---------------------------------------------------------------------------------------------------------------
# measuring processes
# ---------------------------------------------------------------------------------------------------------------

def parse_time(rfc3339: str) -> dt.datetime:
    """A record's timestamp (nanoseconds and a `Z`, which fromisoformat does not take before Python 3.11)."""
    return dt.datetime.fromisoformat(rfc3339[:26].rstrip("Z") + "+00:00")


def gnu_time_available() -> bool:
    try:
        out = subprocess.run([GNU_TIME, "--version"], capture_output=True, text=True, timeout=5)
        return "GNU" in (out.stdout + out.stderr)
    except (OSError, subprocess.SubprocessError):
        return False


USE_GNU_TIME = gnu_time_available()


@dataclass
class Stage:
    name: str  # label in the report, e.g. "pg_dump"
    argv: list[str]
    popen: subprocess.Popen | None = None
    time_file: str | None = None
    stderr_file: object | None = None
    real_pid: int | None = None
    own_peak_kb: int = 0
    maxrss_kb: int = 0
    cpu_seconds: float = 0.0  # user + system, with the children it waited for (wait4's rusage)
    returncode: int | None = None

    @property
    def comm(self) -> str:
        return os.path.basename(self.argv[0])[:15]


def read_status(pid: int) -> dict:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("Name", "VmRSS", "VmHWM"):
                    out[key] = value.strip()
    except OSError:
        pass
    return out


def child_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
        return int(kids[0]) if kids else None
    except (OSError, ValueError):
        return None


class Sampler(threading.Thread):
    """Samples each stage's own resident size every 20 ms (only once the process runs its own program)."""

    def __init__(self, stages: list[Stage]) -> None:
        super().__init__(daemon=True)
        self.stages = stages
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for s in self.stages:
                if s.popen is None or s.returncode is not None:
                    continue
                if s.real_pid is None:
                    s.real_pid = child_pid(s.popen.pid) if USE_GNU_TIME else s.popen.pid
                    if s.real_pid is None:
                        continue
                st = read_status(s.real_pid)
                if st.get("Name") != s.comm:
                    continue  # not exec'd yet (or gone)
                for key in ("VmRSS", "VmHWM"):
                    if key in st:
                        s.own_peak_kb = max(s.own_peak_kb, int(st[key].split()[0]))
            self.stop.wait(SAMPLE_INTERVAL)


# Another process at work: the machine's busy cores while the stack sits idle between cases. Above the limit, a
# case's figures are refused (kept in the JSON, left out of the medians) rather than reported.
FOREIGN_LOAD_LIMIT = 0.25
# A run during which the host took more than this share of a core from the machine (steal) is refused too: the
# same work then costs more wall time without any process here being busier (one pg_dump of 8.9 s took 13.1 s
# with 6.5 s stolen).
STEAL_LIMIT = 0.10
IDLE_PROBE_SECONDS = 1.0
QUIET_WAIT_SECONDS = 60.0


def idle_load(seconds: float) -> float:
    """Cores the machine kept busy over `seconds` while this runner and its stack did nothing."""
    b0, t0 = machine_busy_seconds(), time.monotonic()
    time.sleep(seconds)
    return (machine_busy_seconds() - b0) / (time.monotonic() - t0)


SPEED_PROBE_BYTES = 32 << 20


@functools.cache
def speed_probe_data() -> bytes:
    # Made on first use, not at import: the runner's own size floors maxrss where GNU time is missing.
    return bytes(range(256)) * (SPEED_PROBE_BYTES // 256)


def cpu_speed() -> float:
    """MB/s of SHA-256 on one core: a fixed piece of work, timed. On a shared host the same work takes longer
    when the host's other guests slow this one's cores, which no load probe inside the machine can see."""
    data = speed_probe_data()
    t0 = time.perf_counter()
    hashlib.sha256(data).digest()
    return SPEED_PROBE_BYTES / 1e6 / (time.perf_counter() - t0)


def cpu_seconds_since_boot() -> list[float]:
    """/proc/stat's first line: every core's seconds in user, nice, system, idle, iowait, irq, softirq, steal…"""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return [int(f) / os.sysconf("SC_CLK_TCK") for f in fields]


def machine_steal_seconds() -> float:
    """CPU seconds the hypervisor gave to other guests while this machine wanted them (/proc/stat steal)."""
    times = cpu_seconds_since_boot()
    return times[7] if len(times) > 7 else 0.0


# The emulator's process (moto_server), whose CPU seconds each case reports apart: on AWS, S3 and DynamoDB answer
# from elsewhere, so what the emulator spends is this machine's cost, not the product's.
EMULATOR_PID: int | None = None


def emulator_cpu_seconds() -> float:
    """User + system seconds the emulator's process (every thread of it) has used; 0 when it is not known."""
    if EMULATOR_PID is None:
        return 0.0
    try:
        stat = Path(f"/proc/{EMULATOR_PID}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is fields[0], utime and stime 11 and 12
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (user, nice, system, irq, softirq), every core."""
    user, nice, system, _idle, _iowait, irq, softirq = cpu_seconds_since_boot()[:7]
    return user + nice + system + irq + softirq


@dataclass
class Measured:
    seconds: float
    stages: list[Stage]
    # What every process on the machine used meanwhile: the case's own, the PostgreSQL server's, the emulator's.
    machine_cpu_seconds: float = 0.0
    # Of which the emulator's (moto_server answering the case's S3 and DynamoDB calls).
    emulator_cpu_seconds: float = 0.0

    def procs(self) -> list[dict]:
        return [{"name": s.name, "own_peak_kb": s.own_peak_kb, "maxrss_kb": s.maxrss_kb, "cpu_seconds": round(s.cpu_seconds, 3)}
                for s in self.stages]

    def cpu_seconds(self) -> float:
        return sum(s.cpu_seconds for s in self.stages)

    def own_peak_kb(self) -> int:
        return max((s.own_peak_kb for s in self.stages), default=0)

    def maxrss_kb(self) -> int:
        return max((s.maxrss_kb for s in self.stages), default=0)


def measure(stages: list[Stage], *, env: dict, stdin=None, stdout=None, timeout: float, workdir: Path) -> Measured:
    """Run stages as a pipeline (stage i's stdout into stage i+1), in one new process group; time it until every
    stage has been reaped. Raises CaseFailed when a stage exits non-zero or the timeout passes."""
    procs: list[subprocess.Popen] = []
    sampler = Sampler(stages)
    pgid = 0
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)

    start = time.monotonic()
    busy_at_start, emulator_at_start = machine_busy_seconds(), emulator_cpu_seconds()
    try:
        prev = stdin
        for i, s in enumerate(stages):
            argv = s.argv
            if USE_GNU_TIME:
                fd, s.time_file = tempfile.mkstemp(prefix="time-", dir=workdir)
                os.close(fd)
                argv = [GNU_TIME, "-f", "%M", "-o", s.time_file, *argv]
            s.stderr_file = tempfile.TemporaryFile(dir=workdir)
            last = i == len(stages) - 1
            s.popen = subprocess.Popen(argv, env=env, stdin=prev if prev is not None else subprocess.DEVNULL,
                                       stdout=(stdout if stdout is not None else subprocess.DEVNULL) if last else subprocess.PIPE,
                                       stderr=s.stderr_file, process_group=pgid)
            if i == 0:
                pgid = s.popen.pid
                sampler.start()
            if prev is not None and prev is not stdin:
                prev.close()
            prev = s.popen.stdout
            procs.append(s.popen)
        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            for s in stages:
                _, status, usage = os.wait4(s.popen.pid, 0)
                s.returncode = s.popen.returncode = os.waitstatus_to_exitcode(status)
                s.maxrss_kb = usage.ru_maxrss
                s.cpu_seconds = usage.ru_utime + usage.ru_stime
        finally:
            timer.cancel()
        seconds = time.monotonic() - start
        machine_cpu = machine_busy_seconds() - busy_at_start
        emulator_cpu = emulator_cpu_seconds() - emulator_at_start
    except BaseException:
        if pgid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        for p in procs:
            with contextlib.suppress(Exception):
                p.wait(5)
        raise
    finally:
        sampler.stop.set()
        if sampler.is_alive():
            sampler.join()
    for s in stages:
        if USE_GNU_TIME and s.time_file:
            with contextlib.suppress(OSError, ValueError):
                lines = Path(s.time_file).read_text().split()
                s.maxrss_kb = int(lines[-1])  # "Command exited with non-zero status N" may precede it
            os.unlink(s.time_file)
    failed = [s for s in stages if s.returncode != 0]
    errors = []
    for s in stages:
        s.stderr_file.seek(0)
        err = s.stderr_file.read().decode(errors="replace").strip()
        s.stderr_file.close()
        if s in failed:
            errors.append(f"{s.name} exited {s.returncode}: {err[-1500:]}")
    if timed_out.is_set():
        raise CaseFailed(f"timed out after {timeout:.0f} s")
    if failed:
        raise CaseFailed("; ".join(errors))
    return Measured(seconds, stages, machine_cpu, emulator_cpu)


# ---------------------------------------------------------------------------------------------------------------
# the restore cluster
# ---------------------------------------------------------------------------------------------------------------

def filesystem_type(path: Path) -> str:
    """The type of the filesystem `path` is on (the longest mount point above it in /proc/mounts)."""
    path = path.resolve()
    best, kind = "", "unknown"
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and (str(path) == fields[1] or str(path).startswith(fields[1].rstrip("/") + "/")) \
                and len(fields[1]) >= len(best):
            best, kind = fields[1], fields[2]
    return kind


def scratch_base_for(sql_bytes: int) -> Path:
    """Where `backstop verify` puts a drill's cluster by default for a dump of `sql_bytes`, by LocalScratch's rule:
    memory-backed storage when /dev/shm is a tmpfs, its backstop-scratch directory is this user's own and
    writable by no one else, and the restore (twice the SQL, whole GiB), with what the unexpired clusters already
    there were sized for, takes at most half of its free space and a quarter of the available memory; the temp
    dir otherwise. (LocalScratch also caps the available memory by the process's cgroup; not done here.) The
    footer warns when a drill went elsewhere all the same."""
    gib = 1 << 30
    storage = (sql_bytes * 2 // gib + 1) * gib
    if filesystem_type(MEMORY_FILESYSTEM) not in ("tmpfs", "devtmpfs"):
        return SCRATCH_DISK_BASE
    with contextlib.suppress(FileNotFoundError):
        st = os.lstat(SCRATCH_MEMORY_BASE)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return SCRATCH_DISK_BASE
    claimed = 0
    if SCRATCH_MEMORY_BASE.is_dir():
        now = dt.datetime.now(dt.timezone.utc)
        for cluster in SCRATCH_MEMORY_BASE.iterdir():
            with contextlib.suppress(OSError, ValueError):
                expires = cluster_expiry(cluster)
                if expires is None or expires >= now:
                    claimed += int((cluster / "storage_gib").read_text().strip()) * gib
    fs = os.statvfs(MEMORY_FILESYSTEM)
    available = next((int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemAvailable:")), 0)
    need = storage + claimed
    return SCRATCH_MEMORY_BASE if need <= fs.f_bavail * fs.f_frsize // 2 and need <= available // 4 \
        else SCRATCH_DISK_BASE


def cluster_expiry(cluster: Path) -> dt.datetime | None:
    """A scratch cluster's `expires_at` (RFC 3339, as Backstop writes it, with up to nanoseconds), or None when
    it cannot be read: such a cluster counts as claimed, as LocalScratch counts it."""
    with contextlib.suppress(OSError, ValueError):
        text = (cluster / "expires_at").read_text().strip().replace("Z", "+00:00")
        # Python reads at most microseconds: cut the fraction to six digits.
        m = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?([+-]\d\d:\d\d)", text)
        if m:
            fraction = f".{m.group(2)[:6]}" if m.group(2) else ""
            return dt.datetime.fromisoformat(f"{m.group(1)}{fraction}{m.group(3)}")
    return None


class RestoreCluster:
    """A throwaway PostgreSQL cluster with the local scratch settings, for the plain restores."""

    def __init__(self, bindir: Path, base: Path) -> None:
        import local_stack

        self.ls = local_stack
        self.bindir = bindir
        self.base = base  # where a drill of the same corpus makes its cluster: the same kind of storage
        self.home_kind = ""
        self.user = local_stack.PgUser()
        self.home: Path | None = None
        self.password = os.urandom(16).hex()
        self.port = 0

    @property
    def env(self) -> dict:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "BACKSTOP_"))}
        return dict(base, PGHOST="127.0.0.1", PGPORT=str(self.port), PGUSER="postgres", PGPASSWORD=self.password,
                    PGAPPNAME="backstop-bench")

    def start(self) -> None:
        self.home_kind = filesystem_type(self.base)
        self.made_base = not self.base.exists()
        self.base.mkdir(parents=True, exist_ok=True)
        self.home = Path(tempfile.mkdtemp(prefix="bench-restore-", dir=self.base))
        os.chmod(self.home, 0o700)
        self.user.chown(self.home)
        pwfile = self.home / "pwfile"
        self.ls.write_private(pwfile, self.password + "\n")
        self.user.chown(pwfile)
        data, log = self.home / "data", self.home / "server.log"
        r = self.user.run([str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "scram-sha-256",
                           f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C", "--no-sync"],
                          cwd=self.home, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        pwfile.unlink()
        if r.returncode != 0:
            raise RuntimeError(f"initdb of the restore cluster failed: {r.stderr}")
        self.port = self.ls.free_ports(1)[0]
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.home} " + \
            " ".join(f"-c {s}" for s in SCRATCH_SETTINGS)
        r = self.user.run([str(self.bindir / "pg_ctl"), "start", "-D", str(data), "-l", str(log), "-w", "-t", "60",
                           "-s", "-o", opts], cwd=self.home, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"starting the restore cluster failed: {r.stderr}\n{self.ls.tail(log)}")
        # The dumps name these roles (owners, grants); Backstop's drills create them from the roles dump.
        self.psql("postgres", f"CREATE ROLE {OWNER_ROLE} NOLOGIN; CREATE ROLE {READER_ROLE} NOLOGIN; "
                              f"CREATE ROLE {BACKUP_ROLE} NOLOGIN;")

    def psql(self, db: str, sql: str) -> None:
        r = subprocess.run([str(self.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql],
                           env=self.env, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"restore cluster: {sql}: {r.stderr.strip()}")

    def fresh(self, db: str) -> None:
        self.psql("postgres", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        self.psql("postgres", f'CREATE DATABASE "{db}"')

    def drop(self, db: str) -> None:
        self.psql("postgres", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')

    def stop(self) -> None:
        if not self.home:
            return
        data = self.home / "data"
        if (data / "postmaster.pid").exists():
            self.user.run([str(self.bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate", "-w", "-s"],
                          cwd=Path("/"), stdin=subprocess.DEVNULL, capture_output=True, text=True)
        shutil.rmtree(self.home, ignore_errors=True)
        self.home = None
        if self.made_base:
            with contextlib.suppress(OSError):
                self.base.rmdir()


# ---------------------------------------------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------------------------------------------

def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def machine(stack: Stack) -> dict:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = line.split(":", 1)[1].strip()
                break
    pg_dump_version = subprocess.run([stack.bin("pg_dump"), "--version"], capture_output=True, text=True).stdout.strip()
    return {"nproc": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)), "cpu_model": cpu, "memory": mem,
            "kernel": platform.release(), "python": platform.python_version(),
            "postgresql_server": stack.server_version(), "pg_dump": pg_dump_version,
            "loadavg_at_start": os.getloadavg()}


class Bench:
    def __init__(self, args, stack: Stack) -> None:
        self.args = args
        self.stack = stack
        self.size = args.size
        self.label = args.database or args.size
        self.db = args.database or f"bench_{args.size}"
        self.target = "bench-" + "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in self.label)[:50]
        self.work = LOCAL / "bench" / f"work-{self.label}"
        self.tmp = LOCAL / "bench" / "tmp"
        self.gz = self.work / "dump.sql.gz"
        self.zst = self.work / "dump.sql.zst"
        self.fd = self.work / "dump.dir"
        self.cli = str(Path(args.cli).resolve()) if args.cli else str(REPO / "target" / "release" / "backstop")
        self.cases = [CASE_BY_ID[c] for c in args.only] if args.only else list(CASES)
        self.results = {c.id: {"label": c.label, "side": c.side, "reference": c.reference, "seconds": [],
                               "phases": {}, "own_peak_kb": [], "maxrss_kb": [], "cpu_seconds": [],
                               "machine_cpu_seconds": [], "emulator_cpu_seconds": [], "procs": [], "errors": [],
                               "extra": [], "refused": []}
                        for c in self.cases}
        self.restore: RestoreCluster | None = None
        self.backups: list[dict] = []  # backstop backups made in this run: {"codec", "backup_id"}
        self.corpus_built_here = False
        self.scratch_bases_existed = {b: b.exists() for b in (SCRATCH_DISK_BASE, SCRATCH_MEMORY_BASE)}
        self.drill_places: set[str] = set()  # the filesystem types the drills' clusters were on
        self.verify_env_known = None
        backstop_pw = (LOCAL / "secrets" / "backstop-password").read_text().strip()
        # The plain pipelines connect as Backstop does: as the backup user over TCP.
        self.dump_env = dict(stack.aws_env, PGHOST="127.0.0.1", PGPORT=str(stack.port), PGUSER=BACKUP_ROLE,
                             PGPASSWORD=backstop_pw, PGDATABASE=self.db, PGAPPNAME="backstop-bench")

    # --- setup --------------------------------------------------------------------------------------------------

    def needs(self, *ids: str) -> bool:
        return any(c.id in ids for c in self.cases)

    def uses_cli(self) -> bool:
        return any(c.id.startswith(("backstop_", "verify_", "restore_", "runbook_")) for c in self.cases)

    def setup(self) -> dict:
        setup = {}
        self.work.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        if self.uses_cli() and not os.access(self.cli, os.X_OK):
            raise SystemExit(f"no backstop CLI at {self.cli}: cargo build --release -p backstop-cli (or pass --cli)")
        if self.args.database:
            self.corpus = {"database": self.db, "sql_bytes": corpus.dump_bytes(self.stack, self.db)}
        else:
            had = corpus.current_marker(self.stack, self.db)
            t0 = time.monotonic()
            self.corpus = corpus.ensure_corpus(self.stack, self.size, self.args.seed)
            self.corpus_built_here = had != self.corpus
            if self.corpus_built_here:
                setup["corpus_build_seconds"] = round(time.monotonic() - t0, 2)
        self.write_config()
        if self.uses_cli():
            self.verify_env_known = b"BACKSTOP_VERIFY_CHECKS" in Path(self.cli).read_bytes()
            self.cli_version = subprocess.run([self.cli, "--version"], capture_output=True, text=True).stdout.strip()
        if self.needs("gzip6_upload"):
            self.helper(["setup", BENCH_BUCKET])
        if any(c.side == "restore" for c in self.cases):
            self.restore = RestoreCluster(self.stack.bindir, scratch_base_for(self.corpus["sql_bytes"]))
            t0 = time.monotonic()
            self.restore.start()
            setup["restore_cluster_start_seconds"] = round(time.monotonic() - t0, 2)
            setup["restore_cluster_storage"] = {"filesystem": self.restore.home_kind, "base": str(self.restore.base)}
        if self.needs("pg_restore_j2"):
            stamp = self.fd / ".corpus"
            if not (stamp.exists() and stamp.read_text() == json.dumps(self.corpus, sort_keys=True)):
                shutil.rmtree(self.fd, ignore_errors=True)
                t0 = time.monotonic()
                subprocess.run([self.stack.bin("pg_dump"), "-Fd", "-j2", "-f", str(self.fd)], env=self.dump_env, check=True)
                setup["pg_dump_Fd_j2_seconds"] = round(time.monotonic() - t0, 2)
                stamp.write_text(json.dumps(self.corpus, sort_keys=True))
        if self.needs("psql_gunzip") and not self.needs("gzip6_upload"):
            self.dump_gzip()
        # A warm-up dump, so the first measured case does not pay for a cold cache.
        t0 = time.monotonic()
        subprocess.run([self.stack.bin("pg_dump")], env=self.dump_env, check=True, stdout=subprocess.DEVNULL)
        setup["warmup_pg_dump_seconds"] = round(time.monotonic() - t0, 2)
        if any(c.id.startswith(("verify_", "restore_", "runbook_")) for c in self.cases) and \
                not any(c.id.startswith("backstop_") for c in self.cases):
            self.backstop_backup("zstd", None)
        if self.needs("restore_table"):
            # The worst single table: the largest (tables of the app and audit schemas, by size on disk).
            sizes = corpus.table_sizes(self.stack, self.db) if not self.args.database else []
            self.largest_table = max(sizes, key=lambda t: int(t[2]))[0] if sizes else None
            setup["restore_table"] = self.largest_table
        return setup

    def write_config(self) -> None:
        base = tomllib.loads((LOCAL / "backstop.toml").read_text())
        src = base["targets"][0]
        lines = ["# Written by infra/bench/run.py: the local stack's settings, the corpus as the only target."]
        for k, v in base.items():
            if k != "targets":
                lines.append(f"{k} = {toml_value(v)}")
        lines.append(f"key_prefix = {toml_value(BENCH_KEY_PREFIX)}")
        target = dict(src, name=self.target, database=self.db)
        lines.append("")
        lines.append("[[targets]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in target.items()]
        self.config = LOCAL / "bench" / f"backstop-{self.label}.toml"
        self.config.write_text("\n".join(lines) + "\n")
        self.kms_key = base.get("kms_key_id", "")
        self.catalog_table = base["table"]
        self.backstop_bucket = base["bucket"]

    def helper(self, argv: list[str]) -> str:
        r = subprocess.run([str(VENV_PY), str(BENCH / "s3util.py"), *argv], env=self.stack.aws_env,
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"s3util {argv[0]} failed: {r.stderr.strip()[-2000:]}")
        return r.stdout.strip()

    def cli_env(self, **extra) -> dict:
        env = {k: v for k, v in self.stack.aws_env.items() if not k.startswith(("PG", "BACKSTOP_"))}
        env["BACKSTOP_CONFIG"] = str(self.config)
        env.update({k: str(v) for k, v in extra.items() if v is not None})
        return env

    # --- cases --------------------------------------------------------------------------------------------------

    def m(self, stages, **kw) -> Measured:
        kw.setdefault("env", self.dump_env)
        return measure(stages, timeout=self.args.timeout, workdir=self.tmp, **kw)

    def dump_gzip(self) -> Measured:
        with open(self.gz, "wb") as out:
            return self.m([Stage("pg_dump", [self.stack.bin("pg_dump")]), Stage("gzip -6", ["gzip", "-6"])], stdout=out)

    def upload(self, key: str) -> Measured:
        """upload_file of the gzip dump by a fresh helper process, timed from its go signal to its exit."""
        p = subprocess.Popen([str(VENV_PY), str(BENCH / "s3util.py"), "upload", BENCH_BUCKET, key, str(self.gz), self.kms_key],
                             env=self.stack.aws_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        stage = Stage("upload_file", [str(VENV_PY)], popen=p, real_pid=p.pid)
        if p.stdout.readline().strip() != "ready":
            p.kill()
            p.wait()
            raise CaseFailed("the upload helper did not start")
        sampler = Sampler([stage])
        sampler.start()
        t0 = time.monotonic()
        busy0, emulator0 = machine_busy_seconds(), emulator_cpu_seconds()
        p.stdin.write("go\n")
        p.stdin.close()
        inner = p.stdout.read().strip()
        _, status, usage = os.wait4(p.pid, 0)
        seconds = time.monotonic() - t0
        machine_cpu = machine_busy_seconds() - busy0
        emulator_cpu = emulator_cpu_seconds() - emulator0
        sampler.stop.set()
        sampler.join()
        stage.returncode = p.returncode = os.waitstatus_to_exitcode(status)
        stage.maxrss_kb = usage.ru_maxrss  # the helper has no children: this is its own peak
        stage.cpu_seconds = usage.ru_utime + usage.ru_stime
        if stage.returncode != 0:
            raise CaseFailed(f"upload_file failed (exit {stage.returncode})")
        return Measured(seconds, [stage], machine_cpu, emulator_cpu)

    def backstop_backup(self, codec: str, level) -> tuple[Measured, dict]:
        out_path = self.tmp / "backstop-out.json"
        with open(out_path, "wb") as out:
            mm = self.m([Stage("backstop", [self.cli, "backup", "--target", self.target, "--json"])],
                        env=self.cli_env(BACKSTOP_CODEC=codec, BACKSTOP_COMPRESSION_LEVEL=level), stdout=out)
        run = json.loads(out_path.read_text())
        t = run["targets"][0]
        if t["outcome"] != "completed":
            raise CaseFailed(f"backstop backup: {t['outcome']}: {t['message']}")
        self.backups.append({"codec": codec, "level": level, "backup_id": t["backup_id"]})
        extra = {"backup_id": t["backup_id"], "duration_ms": t["duration_ms"]}
        # The backup's own account of its phases, from its record (read after the clock stopped): pg_dump's run
        # against the reference's is the stream's cost; what comes before and after it is fixed.
        r = subprocess.run([self.cli, "status", "--target", self.target, "--backup", t["backup_id"], "--json"],
                           env=self.cli_env(), capture_output=True, text=True)
        with contextlib.suppress(ValueError, KeyError, TypeError):
            record = json.loads(r.stdout)["backup"]
            span = lambda a, b: round((parse_time(record[b]) - parse_time(record[a])).total_seconds(), 3)
            extra["phases"] = {"before pg_dump (pre-flight)": span("started_at", "dump_started_at"),
                               "pg_dump running (the stream)": span("dump_started_at", "dump_finished_at"),
                               "after pg_dump (last part, complete, manifest)": span("dump_finished_at", "finished_at"),
                               "outside (CLI start, records)": round(mm.seconds - span("started_at", "finished_at"), 3)}
        return mm, extra

    def verify(self, checks: str) -> tuple[Measured, dict]:
        zstd = [b for b in self.backups if b["codec"] == "zstd"] or self.backups
        if not zstd:
            raise CaseFailed("no backstop backup made in this run to verify")
        backup_id = zstd[-1]["backup_id"]
        out_path = self.tmp / "verify-out.json"
        with open(out_path, "wb") as out:
            mm = self.m([Stage("backstop", [self.cli, "verify", "--target", self.target, "--backup", backup_id, "--json"])],
                        env=self.cli_env(BACKSTOP_VERIFY_CHECKS=checks), stdout=out)
        extra: dict = {"backup_id": backup_id}
        try:
            d = json.loads(out_path.read_text())[0]
            extra.update(drill_id=d.get("drill_id"), outcome=d.get("outcome"), message=d.get("message"))
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise CaseFailed(f"backstop verify printed no drill: {e}") from None
        if d.get("outcome") != "verified":
            raise CaseFailed(f"backstop verify: drill {d.get('drill_id')}: {d.get('outcome')}: {d.get('message')}")
        # The drill's own account of its phases, from its record (read after the clock stopped).
        r = subprocess.run([self.cli, "status", "--target", self.target, "--backup", backup_id, "--json"],
                           env=self.cli_env(), capture_output=True, text=True)
        with contextlib.suppress(ValueError, KeyError, TypeError):
            drill = json.loads(r.stdout)["latest_drill"]
            extra["timings"] = drill["report"].get("timings")

            def span(a, b):
                return round((parse_time(drill[b]) - parse_time(drill[a])).total_seconds(), 3)

            extra["phases"] = {"provision (scratch cluster)": span("started_at", "provisioned_at"),
                               "fetch + restore": span("restore_started_at", "restored_at"),
                               "checks": span("restored_at", "checked_at"),
                               "cleanup": span("checked_at", "finished_at"),
                               "outside the drill (CLI start, catalog, S3 reads)": round(mm.seconds - span("started_at", "finished_at"), 3)}
            extra["checks"] = len(drill["report"].get("checks", []))
            scratch = (drill.get("scratch") or {}).get("id")
            if scratch:
                extra["scratch_filesystem"] = filesystem_type(Path(scratch))
                self.drill_places.add(extra["scratch_filesystem"])
        return mm, extra

    def zstd_backup_id(self) -> str:
        zstd = [b for b in self.backups if b["codec"] == "zstd"] or self.backups
        if not zstd:
            raise CaseFailed("no backstop backup made in this run to restore")
        return zstd[-1]["backup_id"]

    def backstop_restore(self, table: str | None) -> tuple[Measured, dict, dict]:
        """`backstop restore` of this run's zstd backup into the restore cluster's empty bench_restore."""
        backup_id = self.zstd_backup_id()
        into = f"postgresql://postgres@127.0.0.1:{self.restore.port}/bench_restore?sslmode=disable"
        argv = [self.cli, "restore", "--target", self.target, "--backup", backup_id, "--into", into, "--json"]
        if table:
            argv += ["--table", table]
        out_path = self.tmp / "restore-out.json"
        with open(out_path, "wb") as out:
            mm = self.m([Stage("backstop", argv)], env=self.cli_env(PGPASSWORD=self.restore.password), stdout=out)
        try:
            outcome = json.loads(out_path.read_text())
        except ValueError as e:
            raise CaseFailed(f"backstop restore printed no outcome: {e}") from None
        if not outcome.get("passed"):
            raise CaseFailed(f"backstop restore did not pass: {json.dumps(outcome)[:2000]}")
        extra: dict = {"backup_id": backup_id}
        phases: dict = {}
        if table:
            extra.update(table=table, stored_bytes_read=outcome["stored_bytes_read"], object_size=outcome["object_size"],
                         rows=[t["rows"] for t in outcome["tables"]])
        else:
            phases = {"prove the object (read whole, SHA-256)": outcome["object_check_seconds"],
                      "restore (parallel, by the layout)": outcome["restore_seconds"],
                      "check (rows, digests, schema)": outcome["check_seconds"]}
        return mm, extra, phases

    def runbook_restore(self) -> tuple[Measured, dict, dict]:
        """The runbook's stock path on this run's zstd backup, as an operator would script it: download the object,
        zstd -dc | psql -1 into a fresh database, then count(*) of every table."""
        backup_id = self.zstd_backup_id()
        r = subprocess.run([self.cli, "status", "--target", self.target, "--json", "--limit", "100"],
                           env=self.cli_env(), capture_output=True, text=True)
        try:
            record = next(b for b in json.loads(r.stdout)[0]["backups"] if b["backup_id"] == backup_id)
            key, version = record["dump"]["key"], record["dump"].get("version_id") or "-"
        except (ValueError, KeyError, IndexError, TypeError, StopIteration) as e:
            raise CaseFailed(f"no record of backup {backup_id}: {e}") from None
        local = self.tmp / "runbook-dump.sql.zst"
        a = self.m([Stage("download_file", [str(VENV_PY), str(BENCH / "s3util.py"), "download", self.backstop_bucket,
                                            key, version, str(local)])], env=self.stack.aws_env)
        self.restore.fresh("bench_restore")
        try:
            b = self.m([Stage("zstd -dc", ["zstd", "-dc", "-q", str(local)]),
                        Stage("psql -1", [self.stack.bin("psql"), "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1",
                                          "-d", "bench_restore", "-o", "/dev/null"])],
                       env=self.restore.env)
            counts = self.tmp / "count-every-table.sql"
            counts.write_text("SELECT format('SELECT %L AS tbl, count(*) FROM ONLY %I.%I', schemaname || '.' || tablename, "
                              "schemaname, tablename) FROM pg_tables "
                              "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') \\gexec\n")
            with open(counts, "rb") as script:
                c = self.m([Stage("psql count(*)", [self.stack.bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                                                    "-d", "bench_restore", "-o", "/dev/null"])],
                           env=self.restore.env, stdin=script)
        finally:
            self.restore.drop("bench_restore")
            local.unlink(missing_ok=True)
        phases = {"download": a.seconds, "zstd -dc | psql -1": b.seconds, "count(*) of every table": c.seconds}
        parts = (a, b, c)
        return Measured(sum(p.seconds for p in parts), [s for p in parts for s in p.stages],
                        sum(p.machine_cpu_seconds for p in parts),
                        sum(p.emulator_cpu_seconds for p in parts)), {"backup_id": backup_id}, phases

    def quiet_before(self) -> float:
        """Waits (up to QUIET_WAIT_SECONDS, not in smoke runs) for the machine to be idle; returns its load."""
        probe = 0.3 if self.args.smoke else IDLE_PROBE_SECONDS
        deadline = time.monotonic() + (0 if self.args.smoke else QUIET_WAIT_SECONDS)
        load = idle_load(probe)
        while load > FOREIGN_LOAD_LIMIT and time.monotonic() < deadline:
            say(f"  the machine is busy without us ({load:.2f} cores): waiting for it to be quiet")
            time.sleep(5)
            load = idle_load(probe)
        return load

    def run_case(self, case: Case, run: int) -> float | None:
        res = self.results[case.id]
        load_before = self.quiet_before()
        speed_before, steal_before = cpu_speed(), machine_steal_seconds()
        phases: dict[str, float] = {}
        extra: dict = {}
        procs: list[dict] = []
        try:
            if case.id == "pg_dump":
                mm = self.m([Stage("pg_dump", [self.stack.bin("pg_dump")])], stdout=subprocess.DEVNULL)
            elif case.id == "gzip6_upload":
                a = self.dump_gzip()
                b = self.upload(f"{self.label}/run{run}-{int(time.time())}.sql.gz")
                phases = {"pg_dump | gzip -6 > file": a.seconds, "upload_file": b.seconds}
                mm = Measured(a.seconds + b.seconds, a.stages + b.stages, a.machine_cpu_seconds + b.machine_cpu_seconds,
                              a.emulator_cpu_seconds + b.emulator_cpu_seconds)
                extra["gzip6_bytes"] = self.gz.stat().st_size
            elif case.id == "zstd1":
                with open(self.zst, "wb") as out:
                    mm = self.m([Stage("pg_dump", [self.stack.bin("pg_dump")]),
                                 Stage("zstd -1 -T2", ["zstd", "-1", "-T2", "-q", "-c"])], stdout=out)
                extra["zstd1_bytes"] = self.zst.stat().st_size
            elif case.id.startswith("backstop_"):
                _, _, codec, level = next(b for b in BACKUP_CODECS if b[0] == case.id)
                mm, extra = self.backstop_backup(codec, level)
                phases = extra.pop("phases", {})
            elif case.id == "pg_restore_j2":
                self.restore.fresh("bench_restore")
                try:
                    mm = self.m([Stage("pg_restore", [self.stack.bin("pg_restore"), "-j2", "-d", "bench_restore", str(self.fd)])],
                                env=self.restore.env)
                finally:
                    self.restore.drop("bench_restore")
            elif case.id == "psql_gunzip":
                self.restore.fresh("bench_restore")
                try:
                    mm = self.m([Stage("gunzip -c", ["gzip", "-dc", str(self.gz)]),
                                 Stage("psql -1", [self.stack.bin("psql"), "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1",
                                                   "-d", "bench_restore", "-o", "/dev/null"])],
                                env=self.restore.env)
                finally:
                    self.restore.drop("bench_restore")
            elif case.id.startswith("verify_"):
                mm, extra = self.verify(case.id[len("verify_"):])
                phases = extra.pop("phases", {})
            elif case.id in ("restore_whole", "restore_table"):
                table = None
                if case.id == "restore_table":
                    table = self.largest_table
                    if not table:
                        raise CaseFailed("no table to restore (the corpus has none in app or audit)")
                self.restore.fresh("bench_restore")  # empty: backstop restore uses it as it is
                try:
                    mm, extra, phases = self.backstop_restore(table)
                finally:
                    self.restore.drop("bench_restore")
            elif case.id == "runbook_zstd_psql":
                mm, extra, phases = self.runbook_restore()
            else:
                raise CaseFailed(f"unknown case {case.id}")
            procs = mm.procs()
        except CaseFailed as e:
            res["errors"].append({"run": run, "error": str(e)})
            say(f"  {case.id}: FAILED: {e}")
            return None
        except (RuntimeError, subprocess.CalledProcessError, OSError, ValueError, KeyError) as e:
            res["errors"].append({"run": run, "error": f"{type(e).__name__}: {e}"})
            say(f"  {case.id}: FAILED: {type(e).__name__}: {e}")
            return None
        steal = machine_steal_seconds() - steal_before
        load_after = idle_load(0.3 if self.args.smoke else IDLE_PROBE_SECONDS)
        res.setdefault("cpu_speed_mb_s", []).append([round(speed_before), round(cpu_speed())])
        res.setdefault("steal_seconds", []).append(round(steal, 2))
        foreign = max(load_before, load_after)
        stolen = steal / mm.seconds if mm.seconds > 0 else 0.0
        if foreign > FOREIGN_LOAD_LIMIT or stolen > STEAL_LIMIT:
            res["refused"].append({"run": run, "seconds": round(mm.seconds, 4), "idle_load_before": round(load_before, 3),
                                   "idle_load_after": round(load_after, 3), "steal_seconds": round(steal, 2)})
            if foreign > FOREIGN_LOAD_LIMIT:
                why = f"another process kept {foreign:.2f} cores busy around it (limit {FOREIGN_LOAD_LIMIT})"
            else:
                why = f"the host took {steal:.2f} s of CPU from the machine during it ({stolen:.2f} cores, limit {STEAL_LIMIT})"
            say(f"  {case.id}: {mm.seconds:.2f} s REFUSED: {why}")
            return None
        res.setdefault("idle_load", []).append([round(load_before, 3), round(load_after, 3)])
        res["seconds"].append(round(mm.seconds, 4))
        res["own_peak_kb"].append(mm.own_peak_kb())
        res["maxrss_kb"].append(mm.maxrss_kb())
        res["cpu_seconds"].append(round(mm.cpu_seconds(), 3))
        res["machine_cpu_seconds"].append(round(mm.machine_cpu_seconds, 3))
        res["emulator_cpu_seconds"].append(round(mm.emulator_cpu_seconds, 3))
        res["procs"].append(procs)
        res["extra"].append(extra)
        for k, v in phases.items():
            res["phases"].setdefault(k, []).append(round(v, 4))
        return mm.seconds

    def run(self) -> None:
        backup = [c for c in self.cases if c.side == "backup"]
        restore = [c for c in self.cases if c.side == "restore"]
        for r in range(self.args.runs):
            order = backup[r % len(backup):] + backup[:r % len(backup)] if backup else []
            order += restore[r % len(restore):] + restore[:r % len(restore)] if restore else []
            done = []
            for c in order:
                seconds = self.run_case(c, r + 1)
                refused = any(x["run"] == r + 1 for x in self.results[c.id]["refused"])
                done.append(f"{c.id} {seconds:.2f}s" if seconds is not None else
                            f"{c.id} {'REFUSED' if refused else 'FAILED'}")
            say(f"run {r + 1}/{self.args.runs}: " + ", ".join(done))

    # --- results ------------------------------------------------------------------------------------------------

    def stored_sizes(self) -> dict:
        sizes: dict = {"sql_bytes": self.corpus.get("sql_bytes")}
        if self.gz.exists():
            sizes["gzip -6 (plain pipeline)"] = self.gz.stat().st_size
        if self.zst.exists():
            sizes["zstd -1 -T2 (plain pipeline)"] = self.zst.stat().st_size
        if self.backups:
            r = subprocess.run([self.cli, "status", "--target", self.target, "--json", "--limit", "100"],
                               env=self.cli_env(), capture_output=True, text=True)
            with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
                status = json.loads(r.stdout)
                records = {b["backup_id"]: b for b in status[0]["backups"]}
                for b in self.backups:
                    rec = records.get(b["backup_id"])
                    if rec and rec.get("dump"):
                        label = f"backstop {b['codec']}" + (f" {b['level']}" if b["level"] else " (default level)")
                        sizes[label] = rec["dump"]["size"]
                        sizes["sql_bytes_backstop_counted"] = rec.get("raw_bytes")
        return sizes

    def summarize(self) -> dict:
        refs = {}
        for c in self.cases:
            res = self.results[c.id]
            if res["seconds"]:
                res["median_seconds"] = round(statistics.median(res["seconds"]), 4)
                res["min_seconds"], res["max_seconds"] = min(res["seconds"]), max(res["seconds"])
                res["median_own_peak_kb"] = int(statistics.median(res["own_peak_kb"]))
                res["median_maxrss_kb"] = int(statistics.median(res["maxrss_kb"]))
                res["median_cpu_seconds"] = round(statistics.median(res["cpu_seconds"]), 3)
                res["median_machine_cpu_seconds"] = round(statistics.median(res["machine_cpu_seconds"]), 3)
                res["median_emulator_cpu_seconds"] = round(statistics.median(res["emulator_cpu_seconds"]), 3)
                res["phase_median_seconds"] = {k: round(statistics.median(v), 4) for k, v in res["phases"].items()}
                if c.reference:
                    refs[c.side] = res["median_seconds"]
        for c in self.cases:
            res = self.results[c.id]
            ref = refs.get(c.side)
            res["ratio_to_reference"] = round(res["median_seconds"] / ref, 3) if ref and "median_seconds" in res else None
            for k, v in res.get("phase_median_seconds", {}).items():
                res.setdefault("phase_ratio_to_reference", {})[k] = round(v / ref, 3) if ref else None
        return refs

    def table(self, sizes: dict) -> str:
        def mb(kb):
            return f"{kb / 1024:.1f}" if kb else "-"

        lines = []
        head = (f"{'case':58} {'median s':>9} {'ratio':>6} {'min..max s':>15} {'own MB':>8} {'maxrss MB':>9} "
                f"{'CPU s':>6} {'machine':>7}")
        for side, ref in (("backup", "pg_dump > /dev/null"), ("restore", "pg_restore -j2")):
            cases = [c for c in self.cases if c.side == side]
            if not cases:
                continue
            lines += ["", f"{side.upper()} (ratio to {ref}, median of {self.args.runs})", head, "-" * len(head)]
            for c in cases:
                res = self.results[c.id]
                label = c.label
                if c.id.startswith("verify_") and self.verify_env_known is False:
                    label += " *"
                if "median_seconds" not in res:
                    lines.append(f"{label:58} {'REFUSED' if res['refused'] else 'FAILED':>9}")
                    continue
                ratio = f"{res['ratio_to_reference']:.2f}" if res["ratio_to_reference"] else "-"
                lines.append(f"{label:58} {res['median_seconds']:9.2f} {ratio:>6} "
                             f"{res['min_seconds']:7.2f}..{res['max_seconds']:<7.2f} "
                             f"{mb(res['median_own_peak_kb']):>8} {mb(res['median_maxrss_kb']):>9} "
                             f"{res['median_cpu_seconds']:6.1f} {res['median_machine_cpu_seconds']:7.1f}")
                if res.get("median_emulator_cpu_seconds", 0) >= 0.01:
                    lines.append(f"{'  of the machine CPU s, the emulator (moto) answering its calls':58} {'':9} {'':>6} "
                                 f"{'':15} {'':>8} {'':>9} {'':>6} {res['median_emulator_cpu_seconds']:7.2f}")
                for k, v in res["phase_median_seconds"].items():
                    pr = res["phase_ratio_to_reference"].get(k)
                    lines.append(f"{'  ' + k:58} {v:9.2f} {(f'{pr:.2f}' if pr else '-'):>6}")
                read = [e for e in res["extra"] if e.get("stored_bytes_read")]
                if read:
                    e = read[-1]
                    lines.append(f"  {e['table']}: read {e['stored_bytes_read']:,} of {e['object_size']:,} stored bytes "
                                 f"({100 * e['stored_bytes_read'] / e['object_size']:.1f} %)")
            if side == "restore" and self.verify_env_known is False and any(c.id.startswith("verify_") for c in cases):
                lines.append("* this CLI does not read BACKSTOP_VERIFY_CHECKS yet: the verify variants run the same checks")
        if self.restore and self.restore.home_kind:
            places = ", ".join(sorted(self.drill_places)) or "not recorded"
            lines.append(f"storage: plain restores on {self.restore.home_kind} ({self.restore.base}), "
                         f"the drills' scratch clusters on {places}")
            if self.drill_places and self.drill_places != {self.restore.home_kind}:
                lines.append("* the drills and the plain restores wrote to different kinds of storage: "
                             "the restore ratios compare more than the restores")
        refused = {c.id: len(self.results[c.id]["refused"]) for c in self.cases if self.results[c.id]["refused"]}
        loads = [x for c in self.cases for pair in self.results[c.id].get("idle_load", []) for x in pair]
        if loads:
            lines.append(f"machine load without us, probed around every case: {min(loads):.2f}..{max(loads):.2f} cores "
                         f"(a case is refused above {FOREIGN_LOAD_LIMIT})")
        speeds = [x for c in self.cases for pair in self.results[c.id].get("cpu_speed_mb_s", []) for x in pair]
        steals = [x for c in self.cases for x in self.results[c.id].get("steal_seconds", [])]
        if speeds:
            lines.append(f"speed of one core (SHA-256 of {SPEED_PROBE_BYTES >> 20} MiB, timed around every case): "
                         f"{min(speeds)}..{max(speeds)} MB/s; CPU stolen by the host during a case: "
                         f"{min(steals):.2f}..{max(steals):.2f} s")
        if refused:
            lines.append("REFUSED runs (another process or the host ate the CPU; left out of the medians): " +
                         ", ".join(f"{k} x{v}" for k, v in refused.items()))
        lines.append("own MB: the process's own peak (sampled); maxrss MB: wait4's ru_maxrss, the largest of it and "
                     "the children it waited for")
        lines.append(f"CPU s: user + system of the case's processes and their children; machine: CPU seconds every "
                     f"process on the machine used meanwhile ({os.cpu_count()} cores: at most {os.cpu_count()} per second), "
                     f"the PostgreSQL server and the emulator included")
        if not USE_GNU_TIME:
            lines.append(f"(no GNU time at {GNU_TIME}: maxrss is floored at this runner's own "
                         f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; apt-get install time)")
        if sizes:
            lines += ["", "STORED BYTES (ratio to gzip -6)"]
            gz = sizes.get("gzip -6 (plain pipeline)")
            for k, v in sizes.items():
                if k.startswith("sql_bytes") or not v:
                    continue
                lines.append(f"  {k:40} {v:>15,} {('(' + format(v / gz, '.3f') + ')') if gz else ''}")
            if sizes.get("sql_bytes"):
                lines.append(f"  {'plain SQL (pg_dump)':40} {sizes['sql_bytes']:>15,}")
        return "\n".join(lines)

    # --- cleanup ------------------------------------------------------------------------------------------------

    def cleanup(self) -> None:
        # backstop verify makes <temp>/backstop-scratch (for its template) and /dev/shm/backstop-scratch for its
        # clusters: remove each that was not there before and is empty again.
        for base, existed in self.scratch_bases_existed.items():
            if not existed:
                with contextlib.suppress(OSError):
                    os.rmdir(base)
        if self.restore:
            with contextlib.suppress(Exception):
                self.restore.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)
            with contextlib.suppress(Exception):
                if self.needs("gzip6_upload"):
                    self.helper(["cleanup", BENCH_BUCKET, "--delete-bucket"])
            with contextlib.suppress(Exception):
                if self.uses_cli():
                    self.helper(["cleanup", self.backstop_bucket, "--prefix", BENCH_KEY_PREFIX,
                                 "--table", self.catalog_table, "--target", self.target])
            with contextlib.suppress(OSError):
                self.config.unlink()
        if self.args.smoke and self.corpus_built_here:
            with contextlib.suppress(Exception):
                self.stack.psql("postgres", f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(corpus.SIZES), default="small")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=corpus.DEFAULT_SEED)
    parser.add_argument("--database", help="benchmark this existing database of the local stack (e.g. sample) "
                                           "instead of the corpus")
    parser.add_argument("--out", help="JSON results (default .local/bench/results-<size>.json)")
    parser.add_argument("--cli", help="backstop binary (default target/release/backstop)")
    parser.add_argument("--only", help="comma-separated case ids (see --list)")
    parser.add_argument("--keep", action="store_true", help="keep the dumps and the bench backups")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before a case counts as failed")
    parser.add_argument("--smoke", action="store_true", help="CI mode: small corpus, 1 run, every case")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args(argv)
    if args.smoke:
        args.size, args.runs, args.only, args.database = "small", 1, None, None
        args.timeout = min(args.timeout, 300)
    if args.only:
        args.only = [c.strip() for c in args.only.split(",") if c.strip()]
        unknown = [c for c in args.only if c not in CASE_BY_ID]
        if unknown:
            parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASE_BY_ID)}")
        args.only = [c.id for c in CASES if c.id in args.only]  # keep the canonical order
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list:
        for c in CASES:
            say(f"{c.id:16} {c.side:8} {c.label}{'  (reference)' if c.reference else ''}")
        return 0
    started = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    stack = ensure_stack()
    global EMULATOR_PID
    EMULATOR_PID = stack.state.get("moto_pid")
    bench = Bench(args, stack)
    out = Path(args.out) if args.out else LOCAL / "bench" / f"results-{args.database or args.size}.json"
    result: dict = {"started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "command": sys.argv, "database": bench.db, "size": None if args.database else args.size,
                    "seed": None if args.database else args.seed, "runs": args.runs,
                    "smoke": args.smoke, "machine": machine(stack)}
    try:
        result["setup"] = bench.setup()
        result["corpus"] = bench.corpus
        say(f"corpus {bench.db}: {bench.corpus['sql_bytes'] / 1e6:.1f} MB of plain SQL; "
            f"cases: {', '.join(c.id for c in bench.cases)}; {args.runs} run(s)")
        bench.run()
        sizes = bench.stored_sizes()
        bench.summarize()
    finally:
        bench.cleanup()
    if bench.uses_cli():
        result["cli"] = {"path": bench.cli, "version": getattr(bench, "cli_version", None),
                         "reads_BACKSTOP_VERIFY_CHECKS": bench.verify_env_known}
    result["rss"] = {"method": "GNU time %M (ru_maxrss)" if USE_GNU_TIME else "os.wait4 ru_maxrss",
                     "runner_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                     "own_peak": f"max of /proc/<pid>/status VmRSS and VmHWM sampled every {SAMPLE_INTERVAL * 1000:.0f} ms"}
    result["stored_bytes"] = sizes
    result["cases"] = bench.results
    result["machine"]["loadavg_at_end"] = os.getloadavg()
    result["total_seconds"] = round(time.monotonic() - started, 1)
    say(bench.table(sizes))
    failed = [c.id for c in bench.cases if bench.results[c.id]["errors"]]
    result["failed_cases"] = failed
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    say(f"\nwrote {out} ({result['total_seconds']} s in all)" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        sys.exit(130)
