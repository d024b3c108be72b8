#!/usr/bin/env bash
# test.sh — test the backstop container image for real, on an x86 host, under qemu-user.
#
#   infra/image/test.sh [--image FILE | --binary PATH] [--keep]
#
# Builds the image with build.sh (--binary: with that arm64 backstop instead of building one), or takes
# --image, an OCI archive; and then:
#   * checks its configuration with skopeo: arm64, linux, entrypoint /usr/local/bin/backstop, user nobody;
#   * unpacks its root filesystem from the archive (the layers as they would be pushed) into a temporary
#     directory, and checks that backstop and the client programs are AArch64 programs that start with the
#     image's own loader (/opt/backstop-pg/lib), and that nothing else is in the image;
#   * registers qemu-aarch64 with binfmt_misc for the run (infra/lib/binfmt.sh), so the arm64 backstop can
#     start the arm64 client programs, and runs `backstop --version` from the image;
#   * runs the integration test `image::` (tests/integration/image.rs, ignored in the ordinary run) with that
#     root filesystem: the image's backstop backs up a real local PostgreSQL server to the emulator (moto) with
#     the image's pg_dump, a second run with the same key is a duplicate, and a drill of the backup passes. The
#     drill's scratch server is the host's PostgreSQL (initdb, pg_ctl and postgres are linked into the unpacked
#     copy's /opt/bin, and its postgres user added to the copy's /etc/passwd; in AWS the scratch server is an
#     RDS instance and the image has no server).
# Ends with "image: N passed, N failed"; exits non-zero when anything failed. Needs root (binfmt_misc, and the
# test servers run as postgres). Everything it starts or registers is removed on exit (--keep leaves the copy).
set -euo pipefail
shopt -s nullglob

IMAGE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$IMAGE_DIR/../.." && pwd)
# shellcheck source=../lib/binfmt.sh
. "$REPO_DIR/infra/lib/binfmt.sh"
log() { echo "image test: $*" >&2; }
die() { log "error: $*"; echo "image: $PASSED passed, 1 failed"; exit 1; }
PASSED=0
passed() { PASSED=$((PASSED + 1)); echo "ok: $*"; }

IMAGE=""
BUILD_ARGS=()
KEEP=0
while (($# > 0)); do
    case "$1" in
        --image) IMAGE=${2:?--image needs a file}; shift 2 ;;
        --binary) BUILD_ARGS+=(--binary "${2:?--binary needs a path}"); shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "run as root (binfmt_misc, and the test servers run as postgres)"
QEMU=$(command -v qemu-aarch64-static || true)
if [ -z "$QEMU" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null ||
        die "cannot install qemu-user-static"
    QEMU=$(command -v qemu-aarch64-static)
fi
SERVER_BIN=/usr/lib/postgresql/15/bin
[ -x "$SERVER_BIN/initdb" ] || die "PostgreSQL 15's server programs are missing ($SERVER_BIN): infra/test.sh installs them"

if [ -z "$IMAGE" ]; then
    IMAGE=$("$IMAGE_DIR/build.sh" "${BUILD_ARGS[@]}" | tail -1)
fi
[ -f "$IMAGE" ] || die "no image at $IMAGE"

TMP=$(mktemp -d /tmp/backstop-image-test.XXXXXX)
chmod 755 "$TMP"
ROOTFS="$TMP/rootfs"
cleanup() {
    local rc=$?
    binfmt_aarch64_cleanup
    if [ "$KEEP" -eq 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the image's configuration ------------------------------------------------------------------------
config=$(skopeo inspect --config "oci-archive:$IMAGE")
python3 - "$config" <<'PY' || die "the image's configuration is not what the task definition expects (above)"
import json, sys
c = json.loads(sys.argv[1])
cfg = c.get("config", {})
want = {
    "architecture": (c.get("architecture"), "arm64"),
    "os": (c.get("os"), "linux"),
    "entrypoint": (cfg.get("Entrypoint"), ["/usr/local/bin/backstop"]),
    "user": (cfg.get("User"), "65534:65534"),
}
bad = {k: v for k, v in want.items() if v[0] != v[1]}
for k, (got, expected) in bad.items():
    print(f"image: {k} is {got!r}, expected {expected!r}", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
passed "configuration: arm64 linux, entrypoint /usr/local/bin/backstop, user nobody"

# --- its root filesystem, from the archive's layers ------------------------------------------------------
python3 - "$IMAGE" "$ROOTFS" <<'PY' || die "cannot unpack the image's layers"
import io, json, os, sys, tarfile
archive, rootfs = sys.argv[1], sys.argv[2]
with tarfile.open(archive) as oci:
    blob = lambda digest: oci.extractfile("blobs/" + digest.replace(":", "/")).read()
    index = json.loads(oci.extractfile("index.json").read())
    manifest = json.loads(blob(index["manifests"][0]["digest"]))
    os.makedirs(rootfs)
    modes = {}
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=io.BytesIO(blob(layer["digest"]))) as t:
            modes.update({m.name: m.mode for m in t.getmembers()})
            # The "tar" filter refuses links out of the root and clears the sticky bit, hence the mode below.
            t.extractall(rootfs, filter="tar")
# The task mounts its scratch volume on /tmp; the image's own /tmp is still world-writable and sticky.
if (modes.get("tmp", 0) & 0o7777) != 0o1777:
    sys.exit(f"image: /tmp is mode {oct(modes.get('tmp', 0))} in the image, not 1777")
os.chmod(os.path.join(rootfs, "tmp"), 0o1777)
PY
unexpected=$(cd "$ROOTFS" && find . -mindepth 1 -maxdepth 1 | sort | tr '\n' ' ')
[ "$unexpected" = "./etc ./opt ./tmp ./usr " ] || die "the image's root holds $unexpected, expected ./etc ./opt ./tmp ./usr"
for program in usr/local/bin/backstop opt/bin/pg_dump opt/bin/pg_dumpall opt/bin/pg_restore opt/bin/psql; do
    interp=$(readelf -l "$ROOTFS/$program" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
    machine=$(readelf -h "$ROOTFS/$program" | awk -F: '/Machine:/ {gsub(/^ +/, "", $2); print $2}')
    [ "$machine" = AArch64 ] || die "/$program is for $machine, not AArch64"
    [ "$interp" = /opt/backstop-pg/lib/ld-linux-aarch64.so.1 ] || die "/$program starts with $interp, not the image's loader"
done
passed "root filesystem: backstop and the four client programs are AArch64 and start with /opt/backstop-pg/lib's loader"

# --- under qemu ------------------------------------------------------------------------------------------
binfmt_aarch64_register "$QEMU" env QEMU_LD_PREFIX="$ROOTFS" "$ROOTFS/usr/local/bin/backstop" --version ||
    die "$BINFMT_WHY: the image's backstop starts the image's client programs, which under qemu-user needs binfmt_misc"
version=$(QEMU_LD_PREFIX="$ROOTFS" "$ROOTFS/usr/local/bin/backstop" --version)
passed "the image's backstop runs: $version"

# The drill's scratch server: the host's (x86, run natively) beside the image's clients, and its user (under
# qemu the image's /etc/passwd is the one read), in the copy only: in AWS a drill's scratch server is RDS.
for program in initdb pg_ctl postgres; do ln -s "$SERVER_BIN/$program" "$ROOTFS/opt/bin/$program"; done
getent passwd postgres >>"$ROOTFS/etc/passwd" || die "no postgres user on this host (the postgresql-15 package makes it)"
log "cargo test --test integration -- --ignored image:: (backup and drill with the image's backstop)"
if (cd "$REPO_DIR" && BACKSTOP_IMAGE_ROOTFS="$ROOTFS" cargo test --locked --workspace --test integration -- --ignored image:: >&2); then
    passed "the image's backstop backed up a real server (the image's pg_dump) and drilled the backup"
else
    die "the image's backstop did not back up and drill (above)"
fi
echo "image: $PASSED passed, 0 failed"
