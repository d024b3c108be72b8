#!/usr/bin/env bash
# local-cycle.sh — the whole Backstop cycle on this machine: starts the local stack (a seeded PostgreSQL and
# moto, the AWS emulator), backs up the sample database with the real CLI, and shows what happened: the run,
# `backstop status`, the objects in the bucket, the manifest, and the alert inbox.
# The stack stays up afterwards so you can look around; `infra/local-stack.sh down` removes it.
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_DIR"

section() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

section "Local stack (PostgreSQL + moto)"
infra/local-stack.sh up
# shellcheck disable=SC1091
source .local/env

section "Building the backstop CLI"
cargo build --locked -q -p backstop-cli
BACKSTOP="$REPO_DIR/target/debug/backstop"

section "backstop backup --dry-run   (checks password, connectivity and versions; writes nothing)"
"$BACKSTOP" backup --dry-run

section "backstop backup"
"$BACKSTOP" backup

section "backstop status"
"$BACKSTOP" status

section "What is in the bucket"
.venv/bin/python infra/show_local.py
