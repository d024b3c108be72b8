"""Backstop local stack: a throwaway PostgreSQL cluster plus a moto AWS mock.

Usage (normally through infra/local-stack.sh, which runs infra/ensure-deps.sh
first and then this file with <repo>/.venv/bin/python):

    local_stack.py up       # start everything, seed, write .local/backstop.toml and .local/env
    local_stack.py status   # say what is running (exit 0 when all is up, 3 otherwise)
    local_stack.py down     # stop everything and remove .local/

Everything lives in <repo>/.local/ (gitignored):

    .local/pg/                  PostgreSQL data directory (initdb -A scram-sha-256)
    .local/pg.log               PostgreSQL server log
    .local/sock/                PostgreSQL unix socket directory
    .local/moto.pid, moto.log   moto_server process id and log
    .local/secrets/             0700; postgres-password, backstop-password (0600)
    .local/backstop.toml        Backstop config pointing at the local stack
    .local/env                  `source .local/env` for AWS_* and BACKSTOP_CONFIG
    .local/state.json           ports, pids and paths for status/down

Both servers listen on 127.0.0.1 only, on free ports picked at start-up.

PostgreSQL refuses to run as root; when run as root, initdb/pg_ctl run as the
`postgres` system user (or `nobody`).  If that user cannot reach .local/ (e.g.
the checkout is under /root) or the path is unsafe/too long for a unix socket,
the cluster is placed in a private directory under /tmp and .local/pg,
.local/pg.log and .local/sock become symlinks to it; `down` removes it too.

AWS resources created in moto (region us-east-1, keys testing/testing):
KMS key (alias/backstop-local); S3 bucket backstop-local (versioning on,
default SSE-KMS with that key); DynamoDB table backstop-local (pk/sk strings,
on-demand, TTL on expires_at); SNS topic backstop-local-alerts with SQS queue
backstop-local-alerts-inbox subscribed so alerts can be read locally.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

INFRA = Path(__file__).resolve().parent
REPO = INFRA.parent
LOCAL = REPO / ".local"
SECRETS = LOCAL / "secrets"
STATE_FILE = LOCAL / "state.json"
MOTO_PID_FILE = LOCAL / "moto.pid"
MOTO_LOG = LOCAL / "moto.log"
VENV_BIN = REPO / ".venv" / "bin"
SEED_SQL = INFRA / "seed" / "sample.sql"

NAME = "backstop-local"
BUCKET = NAME
TABLE = NAME
TOPIC = f"{NAME}-alerts"
QUEUE = f"{NAME}-alerts-inbox"
KMS_ALIAS = f"alias/{NAME}"
REGION = "us-east-1"
SAMPLE_DB = "sample"
# The cycle backs up three targets, each its own unit of work: the seeded sample, a second small database found
# by discovery (the server target `fleet` stands for every database named `inv*`, so its unit is
# `fleet.inventory`), and one that fails on purpose (its database was "retired": dropped, while its target
# stayed configured), so the cycle shows a failing target alerting on its own while the others are backed up
# and verified.
SECOND_DB = "inventory"
SERVER_TARGET = "fleet"
SERVER_PATTERN = "inv*"
FAILING_TARGET = "retired"

# Longest unix socket path PostgreSQL accepts is 107 bytes (incl. ".s.PGSQL.NNNNN").
MAX_SOCKET_DIR_LEN = 107 - len("/.s.PGSQL.65535")
SAFE_PATH_RE = re.compile(r"^[A-Za-z0-9/._+-]+$")


class StackError(Exception):
    """A step of `up` failed; the message says which."""


def say(msg: str) -> None:
    print(msg, flush=True)


def warn(msg: str) -> None:
    print(f"local-stack: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------

def write_private(path: Path, content: str) -> None:
    """Write a file readable only by its owner (0600), replacing any old one."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(content)


def free_ports(n: int) -> list[int]:
    """Ask the kernel for n distinct free TCP ports on 127.0.0.1."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def toml_str(s: str) -> str:
    """A TOML basic string literal."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def pg_bin_dir() -> Path:
    out = subprocess.run([str(INFRA / "pg-bin-dir.sh")], check=True,
                         capture_output=True, text=True).stdout.strip()
    return Path(out)


def load_state() -> dict:
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return {}


_STATE_LOCK = threading.Lock()


def save_state(state: dict) -> None:
    with _STATE_LOCK:
        tmp = STATE_FILE.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(state), indent=2) + "\n")
        tmp.replace(STATE_FILE)


# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------

class PgUser:
    """Who initdb/pg_ctl run as: ourselves, or (when root) an unprivileged user."""

    def __init__(self) -> None:
        self.uid = os.geteuid()
        self.gid = os.getegid()
        self.name = pwd.getpwuid(self.uid).pw_name if self.uid else "root"
        self.switch = False
        if self.uid == 0:
            for candidate in ("postgres", "nobody"):
                try:
                    pw = pwd.getpwnam(candidate)
                except KeyError:
                    continue
                self.uid, self.gid, self.name, self.switch = pw.pw_uid, pw.pw_gid, candidate, True
                break
            else:
                raise StackError("running as root and neither a 'postgres' nor a 'nobody' user exists")

    def chown(self, path: Path) -> None:
        if self.switch:
            os.chown(path, self.uid, self.gid, follow_symlinks=False)

    def run(self, argv: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(HOME=str(cwd), LC_ALL="C.UTF-8", LANG="C.UTF-8")
        if self.switch:
            env["USER"] = env["LOGNAME"] = self.name
            kw.update(user=self.uid, group=self.gid, extra_groups=[])
        return subprocess.run(argv, cwd=cwd, env=env, **kw)

    def can_write(self, path: Path) -> bool:
        if not self.switch:
            return os.access(path, os.W_OK | os.X_OK)
        r = self.run(["test", "-w", str(path), "-a", "-x", str(path)], cwd=Path("/"),
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return r.returncode == 0


def place_pg_home(user: PgUser) -> Path:
    """Pick the directory holding pg/, sock/ and pg.log: .local itself, or a
    private /tmp directory (symlinked from .local) when .local is unusable."""
    sock_dir = LOCAL / "sock"
    usable = SAFE_PATH_RE.match(str(LOCAL)) and len(str(sock_dir)) <= MAX_SOCKET_DIR_LEN
    if usable:
        if user.switch:
            os.chmod(LOCAL, 0o755)  # let the postgres user traverse; secrets/ stays 0700
        probe = LOCAL / "pg-probe"
        probe.mkdir()
        user.chown(probe)
        usable = user.can_write(probe)
        probe.rmdir()
    if usable:
        return LOCAL
    home = Path(tempfile.mkdtemp(prefix="backstop-pg-", dir="/tmp"))
    os.chmod(home, 0o700)
    user.chown(home)
    if not user.can_write(home):
        raise StackError(f"user {user.name} cannot write {home}")
    warn(f"{LOCAL} is not usable by user {user.name} for PostgreSQL; using {home} (symlinked)")
    return home


def start_postgres(state: dict, user: PgUser, bindir: Path, port: int, password: str) -> None:
    home = place_pg_home(user)
    state["pg_home"] = str(home)
    data, sock, log = home / "pg", home / "sock", home / "pg.log"
    state.update(pg_data=str(data), pg_sock=str(sock), pg_log=str(log))
    save_state(state)
    for d in (data, sock):
        d.mkdir(mode=0o700)
        user.chown(d)
    log.touch(mode=0o640)
    user.chown(log)
    if home != LOCAL:
        for name, target in (("pg", data), ("sock", sock), ("pg.log", log)):
            (LOCAL / name).symlink_to(target)

    # The password reaches initdb through a 0600 file readable only by the
    # server's user (never argv); it is removed right after.
    pwfile = home / "initdb-pwfile"
    write_private(pwfile, password + "\n")
    user.chown(pwfile)
    try:
        r = user.run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                      "-A", "scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                      "--locale=C", "--no-sync"],
                     cwd=home, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    finally:
        pwfile.unlink(missing_ok=True)
    if r.returncode != 0:
        raise StackError(f"initdb failed:\n{r.stdout}{r.stderr}")

    opts = " ".join(shlex.quote(o) for o in (
        "-c", "listen_addresses=127.0.0.1",
        "-c", f"unix_socket_directories={sock}",
        "-c", f"port={port}",
        "-c", "fsync=off",
    ))
    r = user.run([str(bindir / "pg_ctl"), "start", "-D", str(data), "-l", str(log),
                  "-w", "-t", "60", "-s", "-o", opts],
                 cwd=home, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if r.returncode != 0:
        raise StackError(f"pg_ctl start failed:\n{r.stdout}{r.stderr}\n--- pg.log ---\n{tail(log)}")
    state["pg_pid"] = postmaster_pid(data)
    save_state(state)


def postmaster_pid(data: Path) -> int | None:
    """The running postmaster's pid from data/postmaster.pid, or None.

    A stale pid file (e.g. after a reboot) may name an unrelated process that
    reused the pid, so the pid only counts if that process is a postgres."""
    try:
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) and "postgres" in cmdline(pid) else None


def psql(bindir: Path, port: int, password: str, database: str, *,
         sql: str | None = None, file: Path | None = None) -> None:
    """Run SQL as postgres over TCP; the password travels in PGPASSWORD only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGPASSWORD=password, PGCONNECT_TIMEOUT="10", PGAPPNAME="backstop-local-stack")
    argv = [str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
            "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", database]
    if file is not None:
        argv += ["-f", str(file)]
    r = subprocess.run(argv, env=env, input=sql, capture_output=True, text=True)
    if r.returncode != 0:
        what = file.name if file else "SQL"
        raise StackError(f"psql ({what}) failed:\n{r.stdout}{r.stderr}")


def sql_literal(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def setup_database(bindir: Path, port: int, pg_password: str, backstop_password: str) -> None:
    psql(bindir, port, pg_password, "postgres", sql=f"""
CREATE ROLE app_owner NOLOGIN;
CREATE ROLE app_reader NOLOGIN;
CREATE ROLE backstop LOGIN PASSWORD {sql_literal(backstop_password)};
COMMENT ON ROLE backstop IS 'Backstop backup user (local stack)';
GRANT pg_read_all_data TO backstop;
CREATE DATABASE {SAMPLE_DB} OWNER app_owner;
REVOKE CONNECT ON DATABASE {SAMPLE_DB} FROM PUBLIC;
GRANT CONNECT ON DATABASE {SAMPLE_DB} TO backstop, app_owner, app_reader;
CREATE DATABASE {SECOND_DB} OWNER app_owner;
""")
    psql(bindir, port, pg_password, SAMPLE_DB, file=SEED_SQL)
    psql(bindir, port, pg_password, SECOND_DB, sql="""
SET ROLE app_owner;
CREATE TABLE stock (sku text PRIMARY KEY, on_hand integer NOT NULL CHECK (on_hand >= 0), updated_at timestamptz NOT NULL);
INSERT INTO stock SELECT 'SKU-' || lpad(i::text, 5, '0'), i % 97, timestamptz '2026-11-01' + i * interval '1 minute'
  FROM generate_series(1, 2000) AS i;
""")


def stop_postgres(state: dict) -> None:
    data_s = state.get("pg_data")
    data = Path(data_s) if data_s else (LOCAL / "pg").resolve()
    pid = postmaster_pid(data)
    if not pid_alive(pid):
        return
    try:
        user = PgUser()
        bindir = Path(state["pg_bin_dir"]) if state.get("pg_bin_dir") else pg_bin_dir()
        r = user.run([str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w", "-t", "30", "-s"],
                     cwd=Path("/"), stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if r.returncode != 0:
            warn(f"pg_ctl stop failed: {r.stdout}{r.stderr}".strip())
    except Exception as e:  # noqa: BLE001 - fall through to signals
        warn(f"pg_ctl stop failed: {e}")
    if postmaster_pid(data) == pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)  # fast shutdown
        if not wait_dead(pid, 15):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown
            wait_dead(pid, 5)


def wait_dead(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


# ---------------------------------------------------------------------------
# moto
# ---------------------------------------------------------------------------

def start_moto(state: dict, port: int) -> None:
    # moto's server with DynamoDB's conditional writes made atomic, as on DynamoDB (see infra/moto_server.py).
    python = VENV_BIN / "python"
    if not python.exists():
        raise StackError(f"{python} not found; run infra/ensure-deps.sh")
    server = INFRA / "moto_server.py"
    with open(MOTO_LOG, "ab") as logf:
        proc = subprocess.Popen([str(python), str(server), "-H", "127.0.0.1", "-p", str(port)],
                                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                cwd=LOCAL, start_new_session=True)
    MOTO_PID_FILE.write_text(f"{proc.pid}\n")
    state["moto_pid"] = proc.pid
    save_state(state)
    url = f"http://127.0.0.1:{port}/moto-api/"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise StackError(f"moto_server exited with {proc.returncode}:\n{tail(MOTO_LOG)}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered HTTP
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise StackError(f"moto_server did not answer on {url} within 60 s:\n{tail(MOTO_LOG)}")
        time.sleep(0.1)


def stop_moto(state: dict) -> None:
    pid = state.get("moto_pid")
    if not pid:
        try:
            pid = int(MOTO_PID_FILE.read_text().strip())
        except (OSError, ValueError):
            return
    if not pid_alive(pid) or "moto_server" not in cmdline(pid):
        return
    try:
        os.killpg(pid, signal.SIGTERM)  # own session/process group since start
    except ProcessLookupError:
        return
    if not wait_dead(pid, 10):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        wait_dead(pid, 5)


def aws_clients(endpoint: str):
    import boto3  # only needed by `up`; keeps status/down working without the venv
    from botocore.config import Config

    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name=REGION)
    cfg = Config(retries={"max_attempts": 3, "mode": "standard"})
    return lambda name: session.client(name, endpoint_url=endpoint, config=cfg)


def setup_aws(state: dict, endpoint: str) -> None:
    client = aws_clients(endpoint)

    kms = client("kms")
    key = kms.create_key(Description="Backstop local stack key", KeyUsage="ENCRYPT_DECRYPT",
                         Tags=[{"TagKey": "project", "TagValue": "backstop"}])["KeyMetadata"]
    kms.create_alias(AliasName=KMS_ALIAS, TargetKeyId=key["KeyId"])
    state["kms_key_arn"] = key["Arn"]

    s3 = client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(Bucket=BUCKET, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key["Arn"]},
        "BucketKeyEnabled": True,
    }]})
    s3.put_public_access_block(Bucket=BUCKET, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True,
        "BlockPublicPolicy": True, "RestrictPublicBuckets": True})

    ddb = client("dynamodb")
    ddb.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
    )
    ddb.get_waiter("table_exists").wait(TableName=TABLE, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    ddb.update_time_to_live(TableName=TABLE, TimeToLiveSpecification={
        "Enabled": True, "AttributeName": "expires_at"})

    sns, sqs = client("sns"), client("sqs")
    topic_arn = sns.create_topic(Name=TOPIC)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage", "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
        }],
    })})
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn,
                  Attributes={"RawMessageDelivery": "false"})
    state.update(topic_arn=topic_arn, queue_url=queue_url, queue_arn=queue_arn)


# ---------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------

def write_config(state: dict) -> None:
    pw_file = SECRETS / "backstop-password"
    toml = (
        "# Generated by infra/local_stack.py for the local stack; rewritten by every `up`.\n"
        f"bucket = {toml_str(BUCKET)}\n"
        f"table = {toml_str(TABLE)}\n"
        f"topic_arn = {toml_str(state['topic_arn'])}\n"
        f"kms_key_id = {toml_str(state['kms_key_arn'])}\n"
        f"pg_bin_dir = {toml_str(state['pg_bin_dir'])}\n"
    )
    for name, database, note, patterns in (
        (SAMPLE_DB, SAMPLE_DB, "", None),
        (SERVER_TARGET, "postgres",
         f"# A server target: every database matching {SERVER_PATTERN!r}, found at each backup run, is a target of\n"
         f"# its own named {SERVER_TARGET}.<database> (here {SERVER_TARGET}.{SECOND_DB}).\n", [SERVER_PATTERN]),
        (FAILING_TARGET, FAILING_TARGET,
         "# Fails on purpose: this database does not exist (it was dropped; the target stayed configured).\n", None),
    ):
        toml += (
            f"\n{note}"
            "[[targets]]\n"
            f"name = {toml_str(name)}\n"
            f"host = {toml_str('127.0.0.1')}\n"
            f"port = {state['pg_port']}\n"
            f"database = {toml_str(database)}\n"
            f"user = {toml_str('backstop')}\n"
            f"password = {{ file = {toml_str(str(pw_file))} }}\n"
        )
        if patterns:
            toml += f"databases = [{', '.join(toml_str(p) for p in patterns)}]\n"
    (LOCAL / "backstop.toml").write_text(toml)
    q = shlex.quote
    env = (
        "# Generated by infra/local_stack.py: `source .local/env` to talk to the local stack.\n"
        f"export AWS_ENDPOINT_URL={q(state['aws_endpoint'])}\n"
        "export AWS_ACCESS_KEY_ID=testing\n"
        "export AWS_SECRET_ACCESS_KEY=testing\n"
        f"export AWS_REGION={REGION}\n"
        f"export AWS_DEFAULT_REGION={REGION}  # boto3 and the AWS CLI read this one\n"
        f"export BACKSTOP_CONFIG={q(str(LOCAL / 'backstop.toml'))}\n"
    )
    (LOCAL / "env").write_text(env)


def summary(state: dict) -> str:
    rel = os.path.relpath(LOCAL, Path.cwd())
    rel = rel if not rel.startswith("..") else str(LOCAL)
    return "\n".join([
        f"PostgreSQL  127.0.0.1:{state['pg_port']}  (pid {state.get('pg_pid')}, data {state['pg_data']}, "
        f"log {LOCAL / 'pg.log'})",
        f"            superuser postgres, password in {SECRETS / 'postgres-password'}",
        f"            databases {SAMPLE_DB!r} and {SECOND_DB!r}, backup user backstop, password in "
        f"{SECRETS / 'backstop-password'}",
        f"            targets {SAMPLE_DB}, {SERVER_TARGET} (the server's {SERVER_PATTERN!r} databases: "
        f"{SERVER_TARGET}.{SECOND_DB}) and {FAILING_TARGET} (fails on purpose: no such database)",
        f"moto        {state['aws_endpoint']}  (pid {state.get('moto_pid')}, log {MOTO_LOG})",
        f"S3 bucket   {BUCKET}  (versioned, SSE-KMS {KMS_ALIAS})",
        f"KMS key     {state['kms_key_arn']}",
        f"DynamoDB    {TABLE}  (pk/sk, on-demand, TTL expires_at)",
        f"SNS topic   {state['topic_arn']}",
        f"SQS inbox   {state['queue_url']}",
        f"config      {LOCAL / 'backstop.toml'}",
        f"environment source {shlex.quote(rel + '/env')}",
    ])


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------

def running(state: dict) -> tuple[bool, bool]:
    pg_pid = postmaster_pid(Path(state["pg_data"])) if state.get("pg_data") else None
    pg = pid_alive(pg_pid)
    moto_pid = state.get("moto_pid")
    moto = pid_alive(moto_pid) and "moto_server" in cmdline(moto_pid)
    return pg, moto


def cmd_up() -> int:
    state = load_state()
    if state.get("ready"):
        pg, moto = running(state)
        if pg and moto:
            say("Local stack is already up.")
            say(summary(state))
            return 0
        warn("found a partly stopped local stack; tearing it down and starting afresh")
        cmd_down(quiet=True)
    elif LOCAL.exists():
        warn(f"found leftovers of an unfinished `up` in {LOCAL}; cleaning up first")
        cmd_down(quiet=True)

    if not os.environ.get("BACKSTOP_DEPS_OK"):
        subprocess.run([str(INFRA / "ensure-deps.sh")], check=True)

    t0 = time.monotonic()
    LOCAL.mkdir(mode=0o700)
    SECRETS.mkdir(mode=0o700)
    state = {}
    moto_ready: dict = {}
    try:
        bindir = pg_bin_dir()
        pg_port, moto_port = free_ports(2)
        state.update(pg_bin_dir=str(bindir), pg_port=pg_port, moto_port=moto_port,
                     aws_endpoint=f"http://127.0.0.1:{moto_port}")
        save_state(state)

        pg_password = secrets.token_urlsafe(24)
        backstop_password = secrets.token_urlsafe(24)
        write_private(SECRETS / "postgres-password", pg_password + "\n")
        write_private(SECRETS / "backstop-password", backstop_password + "\n")

        # Start moto first (it takes a few seconds to import) and let it boot
        # while PostgreSQL initialises.
        user = PgUser()
        start_moto_async(state, moto_port, moto_ready)
        start_postgres(state, user, bindir, pg_port, pg_password)
        setup_database(bindir, pg_port, pg_password, backstop_password)
        moto_ready["thread"].join()
        if "error" in moto_ready:
            raise moto_ready["error"]
        setup_aws(state, state["aws_endpoint"])
        write_config(state)
        state["ready"] = True
        state["started_in_seconds"] = round(time.monotonic() - t0, 2)
        save_state(state)
    except BaseException as e:
        # Let a moto start in flight record its pid before tearing down.
        t = moto_ready.get("thread")
        if t is not None:
            t.join(timeout=90)
        if isinstance(e, KeyboardInterrupt):
            warn("interrupted")
        elif isinstance(e, StackError):
            warn(str(e))
        else:
            warn(f"{type(e).__name__}: {e}")
        if os.environ.get("BACKSTOP_KEEP_ON_FAILURE"):
            warn(f"leaving {LOCAL} in place (BACKSTOP_KEEP_ON_FAILURE); run `down` to clean up")
        else:
            warn("tearing down the partly started stack (set BACKSTOP_KEEP_ON_FAILURE=1 to keep it)")
            cmd_down(quiet=True)
        return 1

    say(f"Local stack is up (started in {state['started_in_seconds']} s).")
    say(summary(state))
    return 0


def start_moto_async(state: dict, port: int, result: dict) -> None:
    """Start moto in a thread so it boots while PostgreSQL initialises."""

    def run() -> None:
        try:
            start_moto(state, port)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            result["error"] = e

    t = threading.Thread(target=run, name="moto-start", daemon=True)
    result["thread"] = t
    t.start()


def cmd_down(quiet: bool = False) -> int:
    state = load_state()
    if not LOCAL.exists() and not state:
        if not quiet:
            say("Local stack is not up (nothing to remove).")
        return 0
    stop_postgres(state)
    stop_moto(state)
    pg_home = state.get("pg_home")
    if pg_home and Path(pg_home) != LOCAL and Path(pg_home).is_dir():
        shutil.rmtree(pg_home, ignore_errors=True)
    else:
        # An unfinished `up` may not have recorded pg_home: follow the symlink.
        link = LOCAL / "pg"
        if link.is_symlink():
            shutil.rmtree(link.resolve().parent, ignore_errors=True)
    shutil.rmtree(LOCAL, ignore_errors=True)
    if not quiet:
        say(f"Local stack is down; removed {LOCAL}.")
    return 0


def cmd_status() -> int:
    state = load_state()
    if not state:
        say("postgres: not running")
        say("moto:     not running")
        say(f"(no local stack state in {LOCAL})")
        return 3
    pg, moto = running(state)
    pg_pid = postmaster_pid(Path(state["pg_data"])) if state.get("pg_data") else None
    say(f"postgres: {'running' if pg else 'not running'}"
        + (f" (pid {pg_pid}, 127.0.0.1:{state.get('pg_port')})" if pg else ""))
    say(f"moto:     {'running' if moto else 'not running'}"
        + (f" (pid {state.get('moto_pid')}, {state.get('aws_endpoint')})" if moto else ""))
    if not state.get("ready"):
        say("(setup did not finish; run `down` then `up`)")
    elif pg and moto:
        say(f"config:   {LOCAL / 'backstop.toml'}   env: source {shlex.quote(str(LOCAL / 'env'))}")
    return 0 if (pg and moto and state.get("ready")) else 3


def main(argv: list[str]) -> int:
    commands = {"up": cmd_up, "down": cmd_down, "status": cmd_status}
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: {Path(sys.argv[0]).name} up|down|status", file=sys.stderr)
        return 2
    return commands[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
