#!/usr/bin/env bash
# test.sh — self-check of the server tree fetch.sh builds: does a throwaway cluster work?
#
#   infra/pg-server/test.sh [--major 17]
#
# Runs fetch.sh, initdbs a cluster in a temporary directory, starts it on a free 127.0.0.1 port,
# and checks: a table with data, a plpgsql function, amcheck's bt_index_check, the bundled
# libraries postgres loads (ICU, libxml2, the snowball stemmer module), psql, pg_dump,
# pg_restore and pg_dumpall of that major, and that Debian's own PostgreSQL 15 pg_dump refuses
# the newer server. Stops and removes the cluster; exits non-zero on any failure.
# As root, initdb and postgres (which refuse root) run as the `postgres` system user, as the
# tests do (tests/support/pg.rs).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MAJOR=17
while (($# > 0)); do
    case "$1" in
        --major) MAJOR=${2:?--major needs a value}; shift 2 ;;
        --major=*) MAJOR=${1#*=}; shift ;;
        *) echo "usage: $0 [--major 17]" >&2; exit 2 ;;
    esac
done
PG15=/usr/lib/postgresql/15/bin

fail() { echo "pg-server test: FAIL: $*" >&2; exit 1; }
ok() { echo "pg-server test: ok: $*" >&2; }

BIN=$("$HERE/fetch.sh" --major "$MAJOR" | tail -n 1)
[ -x "$BIN/postgres" ] || fail "fetch.sh gave no server in '$BIN'"
ok "$("$BIN/postgres" --version) in $BIN"

AS=() # how to run initdb/pg_ctl: as ourselves, or as `postgres` without root's groups
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || fail "running as root and there is no 'postgres' user to run the server as"
    AS=(setpriv --reuid=postgres --regid=postgres --clear-groups env HOME=/tmp USER=postgres LOGNAME=postgres)
fi

TMP=$(mktemp -d /tmp/pg-server-test.XXXXXX)
STARTED=0
cleanup() {
    if [ "$STARTED" -eq 1 ]; then
        "${AS[@]}" "$BIN/pg_ctl" stop -D "$TMP/data" -m immediate -s >/dev/null 2>&1 || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
[ "${#AS[@]}" -eq 0 ] || chown postgres: "$TMP"
cd "$TMP" # the server's user must be able to stand in its working directory

# scram-sha-256 with a password, as the tests' clusters (nothing else on the host gets in).
export PGPASSWORD=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
echo "$PGPASSWORD" >"$TMP/pwfile"
[ "${#AS[@]}" -eq 0 ] || chown postgres: "$TMP/pwfile"
"${AS[@]}" "$BIN/initdb" -D "$TMP/data" -U postgres -A scram-sha-256 --pwfile="$TMP/pwfile" \
    -E UTF8 --locale=C --no-sync >"$TMP/initdb.log" 2>&1 || { cat "$TMP/initdb.log" >&2; fail "initdb"; }
ok "initdb"

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${AS[@]}" "$BIN/pg_ctl" start -D "$TMP/data" -l "$TMP/server.log" -w -t 60 -s \
    -o "-c listen_addresses=127.0.0.1 -c unix_socket_directories=$TMP -c port=$PORT -c fsync=off" ||
    { cat "$TMP/server.log" >&2; fail "pg_ctl start"; }
STARTED=1
ok "server up on 127.0.0.1:$PORT"

export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres
q() { "$BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -c "$1"; }
expect() { # expect SQL WANTED: psql 17 gives WANTED
    local got
    got=$(q "$1") || fail "psql: $1"
    [ "$got" = "$2" ] || fail "$1 gave '$got', want '$2'"
    ok "$1 -> $got"
}
"$BIN/psql" -X -q -v ON_ERROR_STOP=1 <<'SQL' || fail "creating the test objects"
CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL);
INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 10000) g;
CREATE FUNCTION add_one(i int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN i + 1; END $$;
CREATE EXTENSION amcheck;
SQL
expect "SELECT current_setting('server_version_num')::int / 10000" "$MAJOR"
expect "SELECT count(*) FROM t" "10000"
expect "SELECT add_one(41)" "42"
expect "SELECT bt_index_check('t_pkey', true)" ""
expect "SELECT to_tsvector('english', 'running dogs')" "'dog':2 'run':1" # dict_snowball.so
expect "SELECT 'a' < 'B' COLLATE \"und-x-icu\"" "t"                      # libicu
expect "SELECT xpath('/a/text()', '<a>x</a>'::xml)::text" "{x}"           # libxml2
expect "SET jit_above_cost = 0; SELECT sum(id) FROM t" "50005000"          # no llvmjit.so: JIT off

"$BIN/pg_dump" -f "$TMP/dump.sql" || fail "pg_dump $MAJOR"
grep -q '^CREATE TABLE public.t ' "$TMP/dump.sql" && grep -q '^COPY public.t ' "$TMP/dump.sql" &&
    grep -q 'FUNCTION public.add_one' "$TMP/dump.sql" || fail "the plain dump lacks the table or function"
# (grep without -q: it reads to the end, so no SIGPIPE fails the pipeline under pipefail)
"$BIN/pg_dump" -Fc -f "$TMP/dump.custom" && "$BIN/pg_restore" -l "$TMP/dump.custom" | grep 'TABLE DATA public t ' >/dev/null ||
    fail "pg_dump -Fc | pg_restore -l"
"$BIN/pg_dumpall" --globals-only | grep 'ALTER ROLE postgres' >/dev/null || fail "pg_dumpall --globals-only"
ok "pg_dump, pg_restore, pg_dumpall $MAJOR ($(wc -c <"$TMP/dump.sql") bytes of SQL)"

if [ -x "$PG15/pg_dump" ]; then
    if "$PG15/pg_dump" -f /dev/null 2>"$TMP/pg15.err"; then
        fail "PostgreSQL 15's pg_dump dumped a $MAJOR server"
    fi
    grep -q 'aborting because of server version mismatch' "$TMP/pg15.err" ||
        { cat "$TMP/pg15.err" >&2; fail "PostgreSQL 15's pg_dump failed otherwise"; }
    ok "PostgreSQL 15's pg_dump refuses: $(grep -m1 'version mismatch' -A1 "$TMP/pg15.err" | tr '\n' ' ')"
else
    fail "no $PG15/pg_dump to check the version mismatch with"
fi

"${AS[@]}" "$BIN/pg_ctl" stop -D "$TMP/data" -m fast -w -s || fail "pg_ctl stop"
STARTED=0
ok "stopped; all checks passed"
