#!/usr/bin/env bash
# local-cycle.sh — the whole Backstop cycle on this machine: starts the local stack (a seeded PostgreSQL and
# moto, the AWS emulator), backs up the sample database with the real CLI, restores it in a drill on a
# throwaway scratch cluster, applies the retention policy (dry run first), checks every target as the hourly
# monitor does, and shows what happened: the runs, `backstop status`, the drill's report, the purge plan, the
# monitor's verdict, the objects in the bucket, the manifest, and the alert inbox.
# Three targets, each its own unit of work with its own records and alerts: `sample` and `fleet.inventory` (a
# database the server target `fleet` discovers) are backed up and verified; `retired` fails on purpose (its database does not exist), alerts, and stops neither of the
# others. The commands that run it exit non-zero, as they should; the cycle shows their exit codes and fails
# only when a target ends otherwise than so (checked at the end).
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

# Runs a command that the failing target makes exit non-zero, and shows its exit code.
expect_failing_target() {
    local status=0
    "$@" || status=$?
    echo "(exit code $status: the \`retired\` target fails on purpose; the others are unaffected)"
}

section "backstop backup --dry-run   (checks password, connectivity and versions; writes nothing)"
expect_failing_target "$BACKSTOP" backup --dry-run

section "backstop backup   (every target its own unit: its own lease, record and alert)"
expect_failing_target "$BACKSTOP" backup

section "backstop verify   (restore drill: scratch cluster, restore, fingerprint and checks, cleanup)"
"$BACKSTOP" verify   # `retired` has no backup to drill; the others are drilled

section "backstop purge --dry-run   (the retention policy's verdict on every backup, and why; changes nothing)"
"$BACKSTOP" purge --dry-run

section "backstop purge"
"$BACKSTOP" purge

section "backstop check --alert   (the monitor: backup and verification age, failures, anomalies; alerts on changes)"
# A monitoring plugin's exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. Shown, not fatal: CRITICAL here, since
# `retired` has never been backed up (the others are OK).
check_status=0
"$BACKSTOP" check --alert || check_status=$?
echo "(exit code $check_status)"

section "backstop runners   (where the backup state machine would run each target's next backup, and why)"
"$BACKSTOP" runners

section "backstop status"
"$BACKSTOP" status

latest=$("$BACKSTOP" status --json --limit 1 | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)[0]["backups"][0]["backup_id"])')
section "backstop status --backup $latest   (the record and its drill report)"
"$BACKSTOP" status --backup "$latest"

section "What is in the bucket"
.venv/bin/python infra/show_local.py

section "backstop report   (one HTML page: status cards, charts, history, drill logs, retention, manual actions)"
"$BACKSTOP" report --out .local/report.html
echo "open it: file://$REPO_DIR/.local/report.html   (the monitor's copy in the bucket: backstop report --url)"

section "Each target ended as it should"
"$BACKSTOP" status --json --limit 1 | .venv/bin/python infra/show_local.py --expect sample=verified fleet.inventory=verified retired=failed
