#!/usr/bin/env bash
# build.sh — build the Backstop PostgreSQL client-tools Lambda layer (arm64, provided.al2023).
#
#   infra/pg-layer/build.sh [--major 15|17] [--out DIR] [--offline] [--refresh] [--force]
#
# Fetches Debian's arm64 postgresql-client-<major> and libpq5 with every shared library they
# load (glibc included) from the Debian release that carries that major, verified (signed
# InRelease -> Packages SHA256 -> .deb SHA256), and lays them out as a layer:
#
#   DIR/pg-client-<major>-arm64/bin/{pg_dump,pg_dumpall,pg_restore,psql}
#   DIR/pg-client-<major>-arm64/backstop-pg/{lib/,share/doc/,VERSION}
#   DIR/pg-client-<major>-arm64.zip     (for aws lambda publish-layer-version)
#
# The programs are patched to use the bundled loader and libraries only (see README.md), so
# Lambda's LD_LIBRARY_PATH and Amazon Linux's glibc never get in. Downloads are cached in
# $BACKSTOP_PG_LAYER_CACHE (default infra/pg-layer/.cache); indices are re-fetched after 24 h
# (--refresh: now; --offline: never, build from the cache). When the resolved packages and
# these scripts are unchanged, an existing build is reused (--force rebuilds).
set -euo pipefail

LAYER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { echo "pg-layer: $*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

MAJOR=${PG_MAJOR:-15}
OUT="$LAYER_DIR/dist"
FETCH_FLAGS=()
FORCE=0
while (($# > 0)); do
    case "$1" in
        --major) MAJOR=${2:?--major needs a value}; shift 2 ;;
        --major=*) MAJOR=${1#*=}; shift ;;
        --out) OUT=${2:?--out needs a value}; shift 2 ;;
        --out=*) OUT=${1#*=}; shift ;;
        --offline) FETCH_FLAGS+=(--offline); shift ;;
        --refresh) FETCH_FLAGS+=(--refresh); shift ;;
        --force) FORCE=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

# Which Debian release carries which PostgreSQL major (apt.postgresql.org is not used).
case "$MAJOR" in
    15) SUITE=bookworm ;;
    17) SUITE=trixie ;;
    *) die "PostgreSQL $MAJOR is not available: use --major 15 (Debian bookworm) or 17 (Debian trixie)" ;;
esac

CACHE=${BACKSTOP_PG_LAYER_CACHE:-$LAYER_DIR/.cache}
KEYRING=${BACKSTOP_DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
NAME="pg-client-$MAJOR-arm64"
mkdir -p "$OUT" "$CACHE"
OUT=$(cd "$OUT" && pwd)
CACHE=$(cd "$CACHE" && pwd)
TREE="$OUT/$NAME"
ZIP="$OUT/$NAME.zip"
STAMP="$OUT/$NAME.stamp"

# --- tools (installed with apt-get only when missing) ---------------------------------------
SUDO=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
fi
pkgs=()
command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
command -v dpkg-deb >/dev/null 2>&1 || pkgs+=(dpkg)
command -v patchelf >/dev/null 2>&1 || pkgs+=(patchelf)
command -v readelf >/dev/null 2>&1 || pkgs+=(binutils)
command -v zip >/dev/null 2>&1 || pkgs+=(zip)
command -v gpgv >/dev/null 2>&1 || pkgs+=(gpgv)
command -v flock >/dev/null 2>&1 || pkgs+=(util-linux)
[ -f "$KEYRING" ] || pkgs+=(debian-archive-keyring)
if ((${#pkgs[@]} > 0)); then
    if ! command -v apt-get >/dev/null 2>&1 || { [ "$(id -u)" -ne 0 ] && ((${#SUDO[@]} == 0)); }; then
        die "missing tools (Debian packages: ${pkgs[*]}); install them by hand"
    fi
    export DEBIAN_FRONTEND=noninteractive
    log "apt-get install ${pkgs[*]}"
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
fi
[ -f "$KEYRING" ] || die "no Debian archive keyring at $KEYRING"

# One build per output at a time (SAM and the test may both call this).
exec 9>"$OUT/.$NAME.lock"
flock 9

start_ns=$(date +%s%N)
WORK=$(mktemp -d "$OUT/.work-$NAME.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

log "PostgreSQL $MAJOR from Debian $SUITE (arm64); cache $CACHE"
python3 "$LAYER_DIR/debfetch.py" --suite "$SUITE" --cache "$CACHE" --keyring "$KEYRING" \
    --list "$WORK/debs.tsv" "${FETCH_FLAGS[@]}" "postgresql-client-$MAJOR" libpq5

# The build is a function of the packages (name, version, suite, sha256) and of these scripts.
key=$(
    {
        cut -f1-4 "$WORK/debs.tsv"
        cat "$LAYER_DIR/build.sh" "$LAYER_DIR/debfetch.py" "$LAYER_DIR/mklayer.py"
        patchelf --version
    } | sha256sum | cut -d' ' -f1
)
if [ "$FORCE" -eq 0 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$key" ] && [ -f "$ZIP" ] &&
    [ -d "$TREE/bin" ]; then
    log "up to date: $ZIP ($(stat -c %s "$ZIP") bytes)"
    exit 0
fi

python3 "$LAYER_DIR/mklayer.py" --list "$WORK/debs.tsv" --major "$MAJOR" --suite "$SUITE" \
    --work "$WORK/stage" --tree "$WORK/$NAME"

# A reproducible zip: sorted entries, fixed times (mklayer.py), no uid/gid extra fields.
(
    cd "$WORK/$NAME"
    find . -mindepth 1 | LC_ALL=C sort | sed 's|^\./||' | TZ=UTC zip -X -q -@ "$WORK/$NAME.zip"
)

rm -f "$STAMP"
rm -rf "$TREE.old"
[ -e "$TREE" ] && mv "$TREE" "$TREE.old"
mv "$WORK/$NAME" "$TREE"
mv -f "$WORK/$NAME.zip" "$ZIP"
rm -rf "$TREE.old"
echo "$key" >"$STAMP"

ms=$((($(date +%s%N) - start_ns) / 1000000))
zip_bytes=$(stat -c %s "$ZIP")
tree_bytes=$(du -sb "$TREE" | cut -f1)
code_sha=$(python3 -c 'import base64, hashlib, sys
print(base64.b64encode(hashlib.sha256(open(sys.argv[1], "rb").read()).digest()).decode())' "$ZIP")
log "built $ZIP in $((ms / 1000)).$((ms % 1000 / 100)) s"
log "  zip $zip_bytes bytes, unzipped $tree_bytes bytes (Lambda: 50 MB zipped direct upload, 250 MB unzipped in all)"
log "  CodeSha256 $code_sha"
grep -E '^PG_(MAJOR|VERSION)=' "$TREE/backstop-pg/VERSION" | sed 's/^/pg-layer:   /' >&2
