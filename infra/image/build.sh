#!/usr/bin/env bash
# build.sh — build the backstop container image (arm64, OCI) offline, FROM scratch: what the Fargate runner runs.
#
#   infra/image/build.sh [--major 15|17] [--binary PATH] [--certs DIR] [--out FILE]
#
# No base image is pulled. The root filesystem is assembled here from:
#   /usr/local/bin/backstop      the release CLI for arm64 (`cargo lambda build --release --arm64 --bin backstop`,
#                                or --binary), patched to start with the bundled glibc loader and libraries
#   /opt/bin/, /opt/backstop-pg/ the client layer of infra/pg-layer (pg_dump, pg_dumpall, pg_restore, psql and
#                                every library they load, glibc included), as the function gets them
#   /etc/ssl/certs/ca-certificates.crt   Debian's CA bundle (the AWS SDK's TLS roots)
#   /etc/passwd, /etc/group, /etc/nsswitch.conf   root and nobody (libpq looks the user up)
#   /opt/certs/                  with --certs DIR: the *.pem there (e.g. the RDS CA bundle for sslrootcert)
#   /tmp                         mode 1777 (the task mounts a scratch volume there; the root is read-only)
# then committed with buildah (vfs storage in a temporary directory, chroot isolation) into an OCI archive
# (default infra/image/dist/backstop-arm64.oci.tar) whose entrypoint is backstop, user nobody. skopeo checks the
# result and copies it to ECR at deploy time (docs/deploy.md#the-fargate-runner). Every timestamp is the epoch,
# so the same binary and layer give the same image, digest included. Installs buildah, skopeo and patchelf with
# apt-get when missing (root). Prints the image's digest and size.
set -euo pipefail

IMAGE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$IMAGE_DIR/../.." && pwd)
log() { echo "image: $*" >&2; }
die() { log "error: $*"; exit 1; }

MAJOR=${PG_MAJOR:-15}
BINARY=""
CERTS=""
OUT="$IMAGE_DIR/dist/backstop-arm64.oci.tar"
while (($# > 0)); do
    case "$1" in
        --major) MAJOR=${2:?--major needs a value}; shift 2 ;;
        --binary) BINARY=${2:?--binary needs a path}; shift 2 ;;
        --certs) CERTS=${2:?--certs needs a directory}; shift 2 ;;
        --out) OUT=${2:?--out needs a file}; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

missing=()
for tool in buildah skopeo patchelf readelf; do command -v "$tool" >/dev/null || missing+=("$tool"); done
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
if ((${#missing[@]})); then
    [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}: install buildah, skopeo, patchelf, binutils and ca-certificates"
    log "installing buildah skopeo patchelf binutils ca-certificates (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah skopeo patchelf binutils ca-certificates >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah skopeo patchelf binutils ca-certificates >/dev/null; } ||
        die "apt-get could not install buildah skopeo patchelf binutils ca-certificates"
fi

# --- the parts ------------------------------------------------------------------------------------
log "client layer for PostgreSQL $MAJOR (infra/pg-layer/build.sh reuses an up-to-date build)"
"$REPO_DIR/infra/pg-layer/build.sh" --major "$MAJOR" >&2
LAYER="$REPO_DIR/infra/pg-layer/dist/pg-client-$MAJOR-arm64"
[ -x "$LAYER/bin/pg_dump" ] || die "$LAYER/bin/pg_dump is missing after the layer build"

if [ -z "$BINARY" ]; then
    export PATH="$REPO_DIR/.venv-deploy/bin:$PATH"
    command -v cargo-lambda >/dev/null ||
        die "cargo-lambda is not installed: run infra/check-deploy.sh --no-build once (it installs it into .venv-deploy), or pass --binary"
    log "cargo lambda build --release --arm64 --bin backstop"
    (cd "$REPO_DIR" && cargo lambda build --release --arm64 --locked --bin backstop >&2)
    BINARY="$REPO_DIR/target/lambda/backstop/bootstrap"
fi
[ -f "$BINARY" ] || die "$BINARY is missing"
case "$(readelf -h "$BINARY" 2>/dev/null | awk -F: '/Machine:/ {print $2}')" in
    *AArch64*) ;;
    *) die "$BINARY is not an AArch64 program" ;;
esac

# --- the root filesystem --------------------------------------------------------------------------
WORK=$(mktemp -d)
ROOTFS="$WORK/rootfs"
BUILDAH=(buildah --root "$WORK/storage" --runroot "$WORK/run" --storage-driver vfs)
ctr=""
cleanup() {
    [ -z "$ctr" ] || "${BUILDAH[@]}" rm "$ctr" >/dev/null 2>&1 || true
    # vfs layers are plain directories, some read-only: make them removable first.
    chmod -R u+w "$WORK" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$ROOTFS"/{usr/local/bin,opt,etc/ssl/certs,tmp}
chmod 1777 "$ROOTFS/tmp"
cp -a "$LAYER/bin" "$LAYER/backstop-pg" "$ROOTFS/opt/"
install -m 0755 "$BINARY" "$ROOTFS/usr/local/bin/backstop"
# The same loader and glibc as the client programs (Debian's, from the layer): the image has no other.
patchelf --set-interpreter /opt/backstop-pg/lib/ld-linux-aarch64.so.1 --force-rpath --set-rpath /opt/backstop-pg/lib \
    "$ROOTFS/usr/local/bin/backstop"
for needed in $(readelf -d "$ROOTFS/usr/local/bin/backstop" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    [ -e "$ROOTFS/opt/backstop-pg/lib/$needed" ] || die "backstop needs $needed, which the layer does not ship"
done
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$ROOTFS/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOTFS/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$ROOTFS/etc/nsswitch.conf"
if [ -n "$CERTS" ]; then
    mkdir -p "$ROOTFS/opt/certs"
    found=0
    for pem in "$CERTS"/*.pem; do install -m 0644 "$pem" "$ROOTFS/opt/certs/"; found=$((found + 1)); done
    [ "$found" -gt 0 ] || die "--certs $CERTS holds no *.pem file"
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO_DIR/Cargo.toml" | head -1)
pg_version=$(sed -n 's/^PG_VERSION=//p' "$ROOTFS/opt/backstop-pg/VERSION")

# --- the image ------------------------------------------------------------------------------------
export BUILDAH_ISOLATION=chroot
ctr=$("${BUILDAH[@]}" from --arch arm64 --os linux scratch)
"${BUILDAH[@]}" copy --chown 0:0 "$ctr" "$ROOTFS/" / >/dev/null
"${BUILDAH[@]}" config \
    --arch arm64 --os linux \
    --entrypoint '["/usr/local/bin/backstop"]' --cmd '["--help"]' \
    --user 65534:65534 --workingdir /tmp \
    --env HOME=/tmp --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt --env BACKSTOP_PG_BIN_DIR=/opt/bin \
    --label org.opencontainers.image.title=backstop \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.description=Backstop $version with PostgreSQL $pg_version client programs" \
    "$ctr"
mkdir -p "$(dirname "$OUT")"
rm -f "$OUT"
"${BUILDAH[@]}" commit --quiet --format oci --timestamp 0 --rm "$ctr" "oci-archive:$OUT:backstop-$version" >/dev/null
ctr=""

inspect=$(skopeo inspect "oci-archive:$OUT")
arch=$(python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["Architecture"], d["Os"])' <<<"$inspect")
[ "$arch" = "arm64 linux" ] || die "the image is for $arch, not arm64 linux"
digest=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["Digest"])' <<<"$inspect")
log "built $OUT: backstop $version, PostgreSQL $pg_version client programs, arm64, $(du -m "$OUT" | cut -f1) MB, $digest"
echo "$OUT"
