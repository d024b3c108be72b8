#!/usr/bin/env bash
# ensure-deps.sh — install what the Backstop local stack and tests need, idempotently:
#   * PostgreSQL server binaries (apt: postgresql postgresql-contrib) when none are
#     found under /usr/lib/postgresql/*/bin, plus the zstd and gzip CLIs;
#   * a project-local virtualenv <repo>/.venv with the pins in
#     infra/requirements-dev.txt (moto[server], boto3);
#   * with --test: Debian's chromium (and a font), for the report's browser test (tests/integration/report.rs).
# Fast (well under a second) when everything is already present: pip runs only
# when the stamp file .venv/.backstop-deps differs from requirements-dev.txt.
set -euo pipefail
shopt -s nullglob

INFRA_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$INFRA_DIR")
VENV_DIR="$REPO_DIR/.venv"
REQ_FILE="$INFRA_DIR/requirements-dev.txt"
STAMP_FILE="$VENV_DIR/.backstop-deps"

log() { echo "ensure-deps: $*" >&2; }

# --- system packages ------------------------------------------------------
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    fi
fi

APT_UPDATED=0
apt_install() {
    if [ "$(id -u)" -ne 0 ] && ((${#SUDO[@]} == 0)); then
        log "need to install: $* — but not root and no sudo; install them by hand"
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        "${SUDO[@]}" apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@"
}

pkgs=()
initdbs=(/usr/lib/postgresql/*/bin/initdb)
if ((${#initdbs[@]} == 0)); then
    pkgs+=(postgresql postgresql-contrib)
fi
command -v zstd >/dev/null 2>&1 || pkgs+=(zstd)
command -v gzip >/dev/null 2>&1 || pkgs+=(gzip)
command -v python3 >/dev/null 2>&1 || pkgs+=(python3 python3-venv)
if [ "${1:-}" = "--test" ] && [ ! -x /usr/bin/chromium ]; then
    pkgs+=(chromium fonts-liberation)
fi
if ((${#pkgs[@]} > 0)); then
    apt_install "${pkgs[@]}"
fi

# --- python virtualenv ----------------------------------------------------
if [ ! -x "$VENV_DIR/bin/python" ] || ! "$VENV_DIR/bin/python" -c '' 2>/dev/null; then
    log "creating virtualenv $VENV_DIR"
    rm -rf "$VENV_DIR"
    if ! python3 -m venv "$VENV_DIR"; then
        # Debian's system python ships venv/ensurepip separately.
        rm -rf "$VENV_DIR"
        apt_install python3-venv
        python3 -m venv "$VENV_DIR"
    fi
fi

if [ ! -f "$STAMP_FILE" ] || ! cmp -s "$REQ_FILE" "$STAMP_FILE"; then
    log "installing $(grep -v '^#' "$REQ_FILE" | tr '\n' ' ')into $VENV_DIR"
    "$VENV_DIR/bin/python" -m pip install --disable-pip-version-check -q -r "$REQ_FILE"
    cp "$REQ_FILE" "$STAMP_FILE"
fi

log "PostgreSQL bin dir: $("$INFRA_DIR/pg-bin-dir.sh")"
