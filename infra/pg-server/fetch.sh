#!/usr/bin/env bash
# fetch.sh — a local PostgreSQL server of a major the host's Debian lacks, for the integration tests.
#
#   infra/pg-server/fetch.sh [--major 17] [--offline] [--refresh] [--force] [--out DIR]
#
# Takes Debian's postgresql-<major>, postgresql-client-<major> and libpq5 for the host's
# architecture from the Debian release that carries that major (17: trixie), verified like the
# Lambda layer's (infra/pg-layer/debfetch.py: signed InRelease -> Packages SHA256 -> .deb SHA256),
# with glibc and every shared library they need, patched to use only those
# (infra/pg-server/mkserver.py), into DIR/<major>/ (default: /var/cache/backstop/pg-server as root, since the
# servers run as the unprivileged `postgres` user, which may not reach a checkout under a private directory
# such as mktemp's; infra/pg-server/dist/, git-ignored, otherwise; $BACKSTOP_PG_SERVER_DIR overrides both;
# not .local/, which infra/local_stack.py owns and deletes). Prints the absolute bin directory
# (initdb, postgres, pg_ctl, pg_dump, pg_dumpall, pg_restore, psql, ...) as its last line.
#
# Downloads are cached where build.sh caches them ($BACKSTOP_PG_LAYER_CACHE, default
# infra/pg-layer/.cache). A tree built by the same scripts at the same place is reused without
# looking at the network for 24 h (debfetch.py's index TTL), and for ever with --offline; after
# that the indices are re-checked and the tree rebuilt only if a package changed.
set -euo pipefail
umask 022 # the tree is run by the unprivileged user the tests start servers as

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
LAYER_DIR=$REPO/infra/pg-layer

log() { echo "pg-server: $*" >&2; }
die() { log "error: $*"; exit 1; }

MAJOR=17
if [ -n "${BACKSTOP_PG_SERVER_DIR:-}" ]; then
    OUT=$BACKSTOP_PG_SERVER_DIR
elif [ "$(id -u)" -eq 0 ]; then
    OUT=/var/cache/backstop/pg-server
else
    OUT=$HERE/dist
fi
FETCH_FLAGS=()
OFFLINE=0 REFRESH=0 FORCE=0
while (($# > 0)); do
    case "$1" in
        --major) MAJOR=${2:?--major needs a value}; shift 2 ;;
        --major=*) MAJOR=${1#*=}; shift ;;
        --out) OUT=${2:?--out needs a value}; shift 2 ;;
        --out=*) OUT=${1#*=}; shift ;;
        --offline) OFFLINE=1; FETCH_FLAGS+=(--offline); shift ;;
        --refresh) REFRESH=1; FETCH_FLAGS+=(--refresh); shift ;;
        --force) FORCE=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
case "$MAJOR" in
    15) SUITE=bookworm ;;
    17) SUITE=trixie ;;
    *) die "PostgreSQL $MAJOR is not available: use --major 17 (Debian trixie) or 15 (bookworm)" ;;
esac

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
TREE=$OUT/$MAJOR
STAMP=$OUT/.$MAJOR.stamp
ARCH=$(dpkg --print-architecture)

# Stamp line 1: what the tree depends on besides the packages (scripts, place, arch); line 2:
# that plus the packages' name/version/suite/sha256 and patchelf's version.
SCRIPTS=$( { echo "$TREE $ARCH $SUITE"; cat "$HERE/fetch.sh" "$HERE/mkserver.py" \
    "$LAYER_DIR/debfetch.py" "$LAYER_DIR/mklayer.py"; } | sha256sum | cut -d' ' -f1)
up_to_date() { # fast path: no python, no network, no hashing of the .debs
    [ "$FORCE" -eq 0 ] && [ "$REFRESH" -eq 0 ] && [ -x "$TREE/bin/postgres" ] && [ -f "$STAMP" ] &&
        [ "$(head -n 1 "$STAMP")" = "$SCRIPTS" ] &&
        { [ "$OFFLINE" -eq 1 ] || [ -n "$(find "$STAMP" -mmin -1440)" ]; }
}
if up_to_date; then
    echo "$TREE/bin"
    exit 0
fi

# --- tools (installed with apt-get only when missing, as build.sh does) -----------------------
KEYRING=${BACKSTOP_DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
pkgs=()
for tool in python3:python3 dpkg-deb:dpkg patchelf:patchelf readelf:binutils gpgv:gpgv \
    xz:xz-utils flock:util-linux; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || pkgs+=("${tool#*:}")
done
[ -f "$KEYRING" ] || pkgs+=(debian-archive-keyring)
if ((${#pkgs[@]} > 0)); then
    SUDO=()
    [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    log "apt-get install ${pkgs[*]}"
    # Update the lists only if the install fails with the ones there are.
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2 ||
        { "${SUDO[@]}" apt-get update -qq >&2 &&
            "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2; } ||
        die "cannot install ${pkgs[*]}"
fi

# One build per tree at a time (parallel tests may all call this); then look again.
exec 9>"$OUT/.$MAJOR.lock"
flock 9
if up_to_date; then
    echo "$TREE/bin"
    exit 0
fi

CACHE=${BACKSTOP_PG_LAYER_CACHE:-$LAYER_DIR/.cache}
mkdir -p "$CACHE"
WORK=$(mktemp -d "$OUT/.work-$MAJOR.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
start_ns=$(date +%s%N)
log "PostgreSQL $MAJOR from Debian $SUITE ($ARCH); cache $CACHE"
# libllvm19: needed only by llvmjit.so, which mkserver.py leaves out.
python3 "$LAYER_DIR/debfetch.py" --suite "$SUITE" --arch "$ARCH" --cache "$CACHE" \
    --keyring "$KEYRING" --exclude libllvm19 --list "$WORK/debs.tsv" "${FETCH_FLAGS[@]}" \
    "postgresql-$MAJOR" "postgresql-client-$MAJOR" libpq5 >&2

KEY=$( { echo "$SCRIPTS"; cut -f1-4 "$WORK/debs.tsv"; patchelf --version; } | sha256sum | cut -d' ' -f1)
if [ "$FORCE" -eq 0 ] && [ -x "$TREE/bin/postgres" ] && [ -f "$STAMP" ] &&
    [ "$(sed -n 2p "$STAMP")" = "$KEY" ]; then
    touch "$STAMP" # same packages: good for another TTL
    echo "$TREE/bin"
    exit 0
fi

python3 "$HERE/mkserver.py" --list "$WORK/debs.tsv" --major "$MAJOR" --arch "$ARCH" \
    --work "$WORK/stage" --tree "$WORK/tree" --final "$TREE" >&2
rm -rf "$WORK/stage"
rm -f "$STAMP"
[ -e "$TREE" ] && mv "$TREE" "$WORK/old"
mv "$WORK/tree" "$TREE"
version=$("$TREE/bin/postgres" --version) || die "the new tree's postgres does not run"
printf '%s\n%s\n' "$SCRIPTS" "$KEY" >"$STAMP"
ms=$((($(date +%s%N) - start_ns) / 1000000))
log "built $TREE in $((ms / 1000)).$((ms % 1000 / 100)) s: $version, $(du -sh "$TREE" | cut -f1)"
echo "$TREE/bin"
