#!/usr/bin/env bash
# test.sh — test the PostgreSQL client layer for real, on an x86 host, under qemu-user.
#
#   infra/pg-layer/test.sh [--major 15|17] [--out DIR] [--offline] [--keep]
#
# Builds the layer with build.sh (or reuses an up-to-date build), unzips the zip into a fake
# root at <tmp>/root/opt (as Lambda extracts a layer under /opt), and then:
#   * checks with readelf that the programs ask for /opt/backstop-pg/lib/ld-linux-aarch64.so.1
#     and carry a DT_RPATH (not DT_RUNPATH), that every library carries DT_RPATH $ORIGIN and
#     no DT_RUNPATH, that every DT_NEEDED is shipped, and that nothing is in /opt/lib;
#   * plants unloadable decoy libraries (every shipped SONAME) in every directory of Lambda's
#     LD_LIBRARY_PATH inside the fake root, and runs every arm64 program with qemu-aarch64
#     -L <root> and LD_LIBRARY_PATH set to Lambda's value: --version must name the major, and
#     LD_DEBUG=libs must show every library coming from /opt/backstop-pg/lib;
#   * starts a throwaway PostgreSQL server (x86, /usr/lib/postgresql/N/bin, run as postgres,
#     127.0.0.1 on a free port, SSL with SCRAM passwords only), dumps a small database with the
#     arm64 pg_dump (plain and custom format, sslmode=verify-full, a passfile, as Backstop
#     runs it), restores it with the arm64 psql (one transaction, ON_ERROR_STOP) and pg_restore
#     into fresh databases and compares row counts and content checksums;
#   * runs the arm64 pg_dumpall --roles-only, which execs pg_dump -V from its own directory:
#     under qemu-user that needs binfmt_misc, which the test registers for the run (and removes
#     afterwards); where it cannot, that one step is skipped with a message.
# Everything it starts or registers is cleaned up on exit (--keep leaves the temp dir).
# BACKSTOP_PG_LAYER_TEST_NO_BINFMT=1 skips the binfmt_misc step (to see the skip path).
# BACKSTOP_REQUIRE_EVERY_TEST=1 (CI) turns any skipped step into a failure.
# Ends with "pg-layer: N passed, N failed, N skipped"; exits non-zero when anything failed.
set -euo pipefail
shopt -s nullglob

LAYER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAMBDA_LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib
INTERP=/opt/backstop-pg/lib/ld-linux-aarch64.so.1
PROGRAMS=(pg_dump pg_dumpall pg_restore psql)
# shellcheck disable=SC2016 # literal $ORIGIN, expanded by the dynamic loader
PROGRAM_RPATH='$ORIGIN/../backstop-pg/lib'
# shellcheck disable=SC2016
LIBRARY_RPATH='$ORIGIN'
# shellcheck source=../lib/binfmt.sh
. "$LAYER_DIR/../lib/binfmt.sh"

log() { echo "pg-layer test: $*" >&2; }
die() { log "error: $*"; exit 1; }

MAJOR=${PG_MAJOR:-15}
OUT="$LAYER_DIR/dist"
BUILD_FLAGS=()
KEEP=0
while (($# > 0)); do
    case "$1" in
        --major) MAJOR=${2:?--major needs a value}; shift 2 ;;
        --out) OUT=${2:?--out needs a value}; shift 2 ;;
        --offline) BUILD_FLAGS+=(--offline); shift ;;
        --keep) KEEP=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done
test_start_ns=$(date +%s%N)

# Backstop removes inherited PG* variables before it runs the programs; so does the test.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^PG' || true)

# --- tools (installed with apt-get only when missing) ---------------------------------------
[ "$(id -u)" -eq 0 ] || die "run as root (initdb runs as postgres via runuser; binfmt_misc needs root)"
QEMU=$(command -v qemu-aarch64-static || true)
pkgs=()
[ -n "$QEMU" ] || pkgs+=(qemu-user-static)
command -v readelf >/dev/null 2>&1 || pkgs+=(binutils)
command -v unzip >/dev/null 2>&1 || pkgs+=(unzip)
command -v openssl >/dev/null 2>&1 || pkgs+=(openssl)
command -v runuser >/dev/null 2>&1 || pkgs+=(util-linux)
command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
SERVER_BIN=/usr/lib/postgresql/15/bin
[ -x "$SERVER_BIN/initdb" ] || pkgs+=(postgresql-15)
if ((${#pkgs[@]} > 0)); then
    export DEBIAN_FRONTEND=noninteractive
    log "apt-get install ${pkgs[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
    QEMU=$(command -v qemu-aarch64-static) || die "qemu-aarch64-static is still missing"
fi
id postgres >/dev/null 2>&1 || die "no postgres user (the postgresql-15 package creates it)"

# --- build (or reuse) -----------------------------------------------------------------------
"$LAYER_DIR/build.sh" --major "$MAJOR" --out "$OUT" "${BUILD_FLAGS[@]}"
ZIP="$OUT/pg-client-$MAJOR-arm64.zip"
[ -f "$ZIP" ] || die "build.sh made no $ZIP"

# --- scratch area and cleanup ---------------------------------------------------------------
TMP=$(mktemp -d /tmp/backstop-pg-layer-test.XXXXXX)
chmod 755 "$TMP"
ROOT="$TMP/root"
PGDATA_DIR="$TMP/pgdata"
SERVER_STARTED=0
cleanup() {
    local rc=$?
    if [ "$SERVER_STARTED" -eq 1 ]; then
        runuser -u postgres -- "$SERVER_BIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    binfmt_aarch64_cleanup
    if [ "$KEEP" -eq 1 ]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PASSED=0
FAILED=0
SKIPPED=0
ok() { PASSED=$((PASSED + 1)); echo "ok: $*"; }
not_ok() { FAILED=$((FAILED + 1)); echo "FAIL: $*"; }
skip() { SKIPPED=$((SKIPPED + 1)); echo "SKIP: $*"; }
check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then ok "$what"; else not_ok "$what"; fi
}

# --- unpack as Lambda would -----------------------------------------------------------------
mkdir -p "$ROOT/opt"
unzip -q "$ZIP" -d "$ROOT/opt"
OPT="$ROOT/opt"
LIBDIR=$(realpath "$OPT/backstop-pg/lib")

# --- static checks --------------------------------------------------------------------------
check "the zip holds only bin/ and backstop-pg/ (nothing for /opt/lib)" \
    test "$(unzip -Z1 "$ZIP" | cut -d/ -f1 | sort -u | tr '\n' ' ')" = "backstop-pg bin "
check "nothing lands in /opt/lib" test ! -e "$OPT/lib"
check "VERSION says PG_MAJOR=$MAJOR" grep -qx "PG_MAJOR=$MAJOR" "$OPT/backstop-pg/VERSION"
check "glibc is bundled (libc.so.6, ld-linux-aarch64.so.1)" test -f "$LIBDIR/libc.so.6" -a -x "$LIBDIR/ld-linux-aarch64.so.1"

licences_ok() {
    local pkg missing=0
    while read -r pkg; do
        [ -s "$OPT/backstop-pg/share/doc/$pkg/copyright" ] || { echo "  no copyright for $pkg"; missing=1; }
    done < <(awk '$1 == "package" {print $2}' "$OPT/backstop-pg/VERSION")
    [ "$missing" -eq 0 ]
}
check "a copyright file for every package listed in VERSION" licences_ok

dyn() { readelf -dW "$1" | sed -n "s/.*($2)[^[]*\[\(.*\)\]/\1/p"; }
programs_ok() {
    local prog f bad=0
    for prog in "${PROGRAMS[@]}"; do
        f="$OPT/bin/$prog"
        [ -x "$f" ] || { echo "  $prog: not an executable file"; bad=1; continue; }
        readelf -hW "$f" | grep -q 'Machine:.*AArch64' || { echo "  $prog: not AArch64"; bad=1; }
        local interp
        interp=$(readelf -lW "$f" | sed -n 's/.*\[Requesting program interpreter: \(.*\)\]/\1/p')
        [ "$interp" = "$INTERP" ] || { echo "  $prog: INTERP $interp"; bad=1; }
        [ "$(dyn "$f" RPATH)" = "$PROGRAM_RPATH" ] || { echo "  $prog: RPATH '$(dyn "$f" RPATH)'"; bad=1; }
        [ -z "$(dyn "$f" RUNPATH)" ] || { echo "  $prog: has RUNPATH $(dyn "$f" RUNPATH)"; bad=1; }
    done
    [ "$bad" -eq 0 ]
}
check "programs: AArch64, INTERP=$INTERP, DT_RPATH \$ORIGIN/../backstop-pg/lib, no DT_RUNPATH" programs_ok

libraries_ok() {
    local f so bad=0
    for f in "$LIBDIR"/*; do
        so=$(basename "$f")
        [ "$so" = ld-linux-aarch64.so.1 ] && continue
        [ "$(dyn "$f" RPATH)" = "$LIBRARY_RPATH" ] || { echo "  $so: RPATH '$(dyn "$f" RPATH)'"; bad=1; }
        [ -z "$(dyn "$f" RUNPATH)" ] || { echo "  $so: has RUNPATH"; bad=1; }
    done
    [ "$bad" -eq 0 ]
}
check "libraries: DT_RPATH \$ORIGIN, no DT_RUNPATH" libraries_ok

needed_ok() {
    local f need bad=0
    for f in "$OPT"/bin/* "$LIBDIR"/*; do
        while read -r need; do
            [ -n "$need" ] || continue
            [ -f "$LIBDIR/$need" ] || { echo "  $(basename "$f") needs $need: not shipped"; bad=1; }
        done < <(dyn "$f" NEEDED)
    done
    [ "$bad" -eq 0 ]
}
check "every DT_NEEDED is in /opt/backstop-pg/lib" needed_ok

# --- decoys in Lambda's LD_LIBRARY_PATH -----------------------------------------------------
# Every shipped SONAME, as a file that is not ELF, in each LD_LIBRARY_PATH directory of the
# fake root (/opt/lib too: another layer or the function may put things there). glibc fails
# hard ("invalid ELF header") if it ever opens one of these.
IFS=: read -r -a lambda_dirs <<<"$LAMBDA_LD_LIBRARY_PATH"
for d in "${lambda_dirs[@]}"; do
    mkdir -p "$ROOT$d"
    for f in "$LIBDIR"/*; do
        echo "decoy: Amazon Linux's $(basename "$f") would be here" >"$ROOT$d/$(basename "$f")"
    done
done

# Run an arm64 program of the layer the way Lambda would: LD_LIBRARY_PATH as Lambda sets it.
# QEMU_LD_PREFIX (= -L) also reaches the programs' children, run through binfmt_misc.
arm() { # arm PROGRAM ARGS... (extra environment: GUEST_ENV array)
    local prog=$1
    shift
    env "${GUEST_ENV[@]}" LD_LIBRARY_PATH="$LAMBDA_LD_LIBRARY_PATH" QEMU_LD_PREFIX="$ROOT" \
        "$QEMU" -L "$ROOT" "$OPT/bin/$prog" "$@"
}
GUEST_ENV=()

# Control: a copy of psql without its DT_RPATH must trip over the decoys (else they prove nothing).
if command -v patchelf >/dev/null 2>&1; then
    mkdir -p "$OPT/control"
    cp "$OPT/bin/psql" "$OPT/control/psql"
    patchelf --remove-rpath "$OPT/control/psql"
    if out=$(env LD_LIBRARY_PATH="$LAMBDA_LD_LIBRARY_PATH" "$QEMU" -L "$ROOT" "$OPT/control/psql" --version 2>&1); then
        not_ok "control: psql without DT_RPATH ran despite the decoys ($out)"
    else
        ok "control: psql without DT_RPATH loads a decoy from LD_LIBRARY_PATH and fails ($(echo "$out" | head -n1))"
    fi
    rm -rf "$OPT/control"
else
    skip "control run (no patchelf)"
fi

for prog in "${PROGRAMS[@]}"; do
    if out=$(arm "$prog" --version 2>&1) && [[ "$out" =~ ^$prog\ \(PostgreSQL\)\ $MAJOR\. ]]; then
        ok "$prog --version under qemu with Lambda's LD_LIBRARY_PATH: $out"
    else
        not_ok "$prog --version: ${out:-no output}"
    fi
done

loads_only_bundled() { # every library the program loads comes from /opt/backstop-pg/lib
    local prog=$1 trace bad
    local GUEST_ENV=(LD_DEBUG=libs) # seen by arm (dynamic scope)
    # A trace without the loader's closing "calling init" lines is an incomplete one (seen once in CI under a
    # loaded qemu), not a verdict on the search path: take it again, up to three times, before judging.
    local attempt
    for attempt in 1 2 3; do
        trace=$(arm "$prog" --version 2>&1 >/dev/null) || { echo "  $prog failed"; return 1; }
        echo "$trace" | grep -q 'calling init:.*libc.so.6' && break
        echo "  $prog: attempt $attempt: LD_DEBUG trace without libc's init ($(echo "$trace" | wc -l) lines)"
    done
    bad=$(echo "$trace" | grep -E 'trying file=|calling init:' |
        sed -E 's/.*(trying file=|calling init: )//' |
        while read -r p; do
            # /opt/... paths are the guest's view (qemu -L maps them into the fake root).
            case "$p" in /opt/backstop-pg/lib/*) p="$ROOT$p" ;; esac
            case "$(realpath -m "$p")" in "$LIBDIR"/*) ;; *) echo "$p" ;; esac
        done)
    if [ -n "$bad" ] || echo "$trace" | grep -qE '\(LD_LIBRARY_PATH\)|system search path'; then
        echo "  $prog looked outside $LIBDIR:"
        echo "$bad" | sed 's/^/    /' | head -n 5
        return 1
    fi
    echo "$trace" | grep -q 'calling init:.*libc.so.6' || {
        echo "  $prog: no libc init in LD_DEBUG output after 3 attempts; the last trace began:"
        echo "$trace" | head -n 8 | sed 's/^/    /'
        return 1
    }
}
for prog in "${PROGRAMS[@]}"; do
    check "$prog: LD_DEBUG=libs shows only /opt/backstop-pg/lib (never LD_LIBRARY_PATH)" loads_only_bundled "$prog"
done

# --- a throwaway PostgreSQL server ----------------------------------------------------------
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
SOCK="$TMP/run" # the server's socket and log (owned by postgres)
PASSWORD="pw-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
mkdir -p "$PGDATA_DIR" "$SOCK"
chown postgres: "$PGDATA_DIR" "$SOCK"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$TMP/server.key" -out "$TMP/server.crt" 2>/dev/null
chown postgres: "$TMP/server.key"
chmod 600 "$TMP/server.key"
runuser -u postgres -- "$SERVER_BIN/initdb" -D "$PGDATA_DIR" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=reject --no-sync >"$TMP/initdb.log" 2>&1 ||
    { cat "$TMP/initdb.log" >&2; die "initdb failed"; }
cat >>"$PGDATA_DIR/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCK'
ssl = on
ssl_cert_file = '$TMP/server.crt'
ssl_key_file = '$TMP/server.key'
password_encryption = 'scram-sha-256'
fsync = off
EOF
# TCP only over TLS with a SCRAM password; the socket (for the test's own set-up) trusts.
cat >"$PGDATA_DIR/pg_hba.conf" <<EOF
local   all all                 trust
hostssl all all 127.0.0.1/32    scram-sha-256
EOF
runuser -u postgres -- "$SERVER_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$SOCK/server.log" -w -t 60 start >/dev/null ||
    { cat "$SOCK/server.log" >&2; die "the server did not start"; }
SERVER_STARTED=1
log "PostgreSQL $("$SERVER_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT"

host_psql() { "$SERVER_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres "$@"; }
host_psql -d postgres <<EOF
CREATE ROLE backstop LOGIN SUPERUSER PASSWORD '$PASSWORD';
CREATE ROLE backstop_test_role NOLOGIN;
CREATE DATABASE src;
CREATE DATABASE restored_sql;
CREATE DATABASE restored_custom;
EOF
host_psql -d src <<'EOF'
CREATE TABLE items (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    price numeric(10, 2),
    tags text[],
    doc jsonb,
    blob bytea,
    created timestamptz
);
INSERT INTO items
SELECT g, 'item ' || g || ' ünïcødé €', g * 1.25, ARRAY['a' || g % 7, 'b'],
       jsonb_build_object('g', g, 'sq', g * g), decode(md5(g::text), 'hex'),
       timestamptz '2020-01-01 00:00+00' + g * interval '1 hour'
FROM generate_series(1, 5000) g;
CREATE TABLE orders (id serial PRIMARY KEY, item_id bigint REFERENCES items (id), qty int CHECK (qty > 0));
INSERT INTO orders (item_id, qty) SELECT (g % 5000) + 1, (g % 9) + 1 FROM generate_series(1, 20000) g;
CREATE INDEX orders_item_idx ON orders (item_id);
CREATE VIEW order_totals AS SELECT item_id, sum(qty) AS qty FROM orders GROUP BY item_id;
CREATE FUNCTION double_it(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 2';
COMMENT ON TABLE items IS 'items under test';
GRANT SELECT ON items TO backstop_test_role;
EOF

fingerprint() {
    host_psql -At -d "$1" -c "
        SELECT (SELECT count(*) FROM items) || ' ' || (SELECT count(*) FROM orders) || ' '
            || (SELECT md5(string_agg(i::text, '|' ORDER BY id)) FROM items i) || ' '
            || (SELECT md5(string_agg(o::text, '|' ORDER BY id)) FROM orders o) || ' '
            || (SELECT count(*) FROM order_totals) || ' ' || double_it(21) || ' '
            || (SELECT last_value FROM orders_id_seq) || ' ' || obj_description('items'::regclass)
            || ' ' || (SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_item_idx')"
}
SRC_PRINT=$(fingerprint src)

# The connection as Backstop makes it: PG* variables, a passfile, TLS verified against a root.
printf '127.0.0.1:%s:*:backstop:%s\n' "$PORT" "$PASSWORD" >"$TMP/pgpass"
chmod 600 "$TMP/pgpass"
GUEST_ENV=(PGHOST=127.0.0.1 PGPORT="$PORT" PGUSER=backstop PGPASSFILE="$TMP/pgpass"
    PGSSLMODE=verify-full PGSSLROOTCERT="$TMP/server.crt" PGAPPNAME=backstop PGCONNECT_TIMEOUT=10)

# A newer client's dump may SET what an older server lacks (pg_dump 17: transaction_timeout);
# only PostgreSQL 15's server is at hand here, so for a newer major those SETs are dropped.
SERVER_MAJOR=$("$SERVER_BIN/postgres" --version | awk '{print $3}' | cut -d. -f1)
compat() {
    if [ "$MAJOR" -gt "$SERVER_MAJOR" ]; then sed -e '/^SET transaction_timeout = 0;$/d'; else cat; fi
}
if [ "$MAJOR" -gt "$SERVER_MAJOR" ]; then
    log "client $MAJOR, server $SERVER_MAJOR: restoring with SET transaction_timeout dropped, and the custom dump through pg_restore -f - | psql"
fi

# Plain dump (Backstop's backup) -> psql restore (Backstop's verify drill).
if arm pg_dump --format=plain --no-password --lock-wait-timeout=60000 -d src >"$TMP/src.sql" 2>"$TMP/pg_dump.err" &&
    grep -q "^-- Dumped by pg_dump version $MAJOR\." "$TMP/src.sql"; then
    ok "arm64 pg_dump (plain) over TLS+SCRAM: $(stat -c %s "$TMP/src.sql") bytes"
else
    not_ok "arm64 pg_dump (plain): $(head -c 400 "$TMP/pg_dump.err")"
fi
if compat <"$TMP/src.sql" | arm psql -X -w -q -v ON_ERROR_STOP=1 --single-transaction -o /dev/null \
    -d restored_sql 2>"$TMP/psql.err"; then
    ok "arm64 psql restored the plain dump (single transaction, ON_ERROR_STOP)"
else
    not_ok "arm64 psql restore: $(head -c 400 "$TMP/psql.err")"
fi
got=$(fingerprint restored_sql 2>&1 || true)
check "plain dump -> psql: same rows and content as the source (${SRC_PRINT%% *} items)" test "$got" = "$SRC_PRINT"
[ "$got" = "$SRC_PRINT" ] || echo "  restored: $got"
check "the source has the rows the test inserted" test "${SRC_PRINT%% *}" = 5000

# Custom-format dump -> pg_restore.
custom_restore() {
    if [ "$MAJOR" -gt "$SERVER_MAJOR" ]; then
        arm pg_restore -f - <"$TMP/src.dump" | compat |
            arm psql -X -w -q -v ON_ERROR_STOP=1 --single-transaction -o /dev/null -d restored_custom
    else
        arm pg_restore --no-password --exit-on-error -d restored_custom <"$TMP/src.dump"
    fi
}
if arm pg_dump --format=custom --no-password -d src >"$TMP/src.dump" 2>"$TMP/pg_dump_c.err" &&
    custom_restore 2>"$TMP/pg_restore.err"; then
    ok "arm64 pg_dump -Fc | arm64 pg_restore"
else
    not_ok "arm64 pg_dump -Fc / pg_restore: $(cat "$TMP/pg_dump_c.err" "$TMP/pg_restore.err" | head -c 400)"
fi
got=$(fingerprint restored_custom 2>&1 || true)
check "custom dump -> pg_restore: same rows and content as the source" test "$got" = "$SRC_PRINT"

# A non-TLS connection is refused by the server, so the dumps above did go over TLS (libssl).
plain_connect() {
    local GUEST_ENV=(PGHOST=127.0.0.1 PGPORT="$PORT" PGUSER=backstop PGPASSFILE="$TMP/pgpass" PGSSLMODE=disable)
    arm psql -X -w -At -d src -c 'SELECT 1'
}
if plain_connect >/dev/null 2>&1; then
    not_ok "a connection with sslmode=disable should have been refused"
else
    ok "sslmode=disable is refused (the server takes TLS only), so the checks above used TLS"
fi

# --- pg_dumpall --roles-only (execs pg_dump -V: needs binfmt_misc under qemu-user) -----------
binfmt_setup() {
    if [ "${BACKSTOP_PG_LAYER_TEST_NO_BINFMT:-0}" = 1 ]; then
        BINFMT_WHY="BACKSTOP_PG_LAYER_TEST_NO_BINFMT=1"
        return 1
    fi
    # The kernel must then run an arm64 program directly (QEMU_LD_PREFIX finds the loader).
    binfmt_aarch64_register "$QEMU" env QEMU_LD_PREFIX="$ROOT" "$OPT/bin/pg_dump" --version
}
if binfmt_setup; then
    if arm pg_dumpall --roles-only --no-password -l src >"$TMP/roles.sql" 2>"$TMP/pg_dumpall.err" &&
        grep -q '^CREATE ROLE backstop_test_role;' "$TMP/roles.sql" && grep -q '^CREATE ROLE backstop;' "$TMP/roles.sql"; then
        ok "arm64 pg_dumpall --roles-only (found and ran its pg_dump -V): $(grep -c '^CREATE ROLE' "$TMP/roles.sql") roles"
    else
        not_ok "arm64 pg_dumpall --roles-only: $(head -c 400 "$TMP/pg_dumpall.err")"
    fi
else
    skip "arm64 pg_dumpall --roles-only: $BINFMT_WHY; under qemu-user, pg_dumpall's exec of pg_dump -V needs binfmt_misc (on Lambda it is a plain exec)"
fi

ms=$((($(date +%s%N) - test_start_ns) / 1000000))
log "took $((ms / 1000)).$((ms % 1000 / 100)) s (build included)"
echo "pg-layer: $PASSED passed, $FAILED failed, $SKIPPED skipped"
# CI (.ci/run) sets BACKSTOP_REQUIRE_EVERY_TEST=1: there a skipped step is a failure, not a green run.
if [ "${BACKSTOP_REQUIRE_EVERY_TEST:-0}" = 1 ] && [ "$SKIPPED" -gt 0 ]; then
    echo "pg-layer: $SKIPPED step(s) skipped, and BACKSTOP_REQUIRE_EVERY_TEST=1 requires every one to run (see SKIP: above)" >&2
    exit 1
fi
[ "$FAILED" -eq 0 ]
