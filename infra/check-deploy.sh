#!/usr/bin/env bash
# check-deploy.sh — check that the stack deploys as docs/deploy.md says, without reaching AWS:
#   1. tools: aws-sam-cli, cfn-lint, cargo-lambda and zig (pins in infra/requirements-deploy.txt) into
#      <repo>/.venv-deploy, checkov (infra/requirements-checkov.txt) into <repo>/.venv-checkov (its boto3 pin
#      conflicts with SAM CLI's), and the Rust target aarch64-unknown-linux-gnu; each only when missing;
#   2. cfn-lint (informational rules included) on template.yaml and infra/*.yaml;
#   3. `sam validate --lint` on each of them;
#   4. checkov (framework cloudformation) on them: no failed check; every waiver is a
#      `checkov:skip=CHECK:justification` comment beside its resource, and one without a justification fails;
#   5. `sam build` of every function and the PostgreSQL client layer, after one `cargo lambda build` of the
#      five binaries and the CLI (the same command, profile, target and features SAM runs per function, but one
#      cargo invocation links them in parallel; SAM's builds then find them fresh); then each function's
#      .aws-sam/build/<Fn>/bootstrap and the layer's bin/pg_dump must be ELF aarch64 executables; then the
#      client layer's test under qemu (infra/pg-layer/test.sh) and the container image's (infra/image/test.sh:
#      built FROM scratch with buildah, its backstop backing up and drilling a real server under qemu).
# Prints the time of each step. infra/test.sh runs it after the cargo tests (BACKSTOP_SKIP_DEPLOY_CHECKS=1
# skips it there). Options: --no-build (steps 1-4 only).
set -euo pipefail
shopt -s nullglob

INFRA_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$INFRA_DIR")
cd "$REPO_DIR"

BUILD=1
for arg in "$@"; do
    case "$arg" in
        --no-build) BUILD=0 ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "check-deploy: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

# The functions of template.yaml and their binaries (Metadata.BuildProperties.Binary).
FUNCTIONS=(BackupFunction:backup VerifyFunction:verify PurgeFunction:purge MonitorFunction:monitor SlackNotifierFunction:notifier)
TEMPLATES=(template.yaml infra/*.yaml)
RUST_TARGET=aarch64-unknown-linux-gnu

PASSED=0
log() { echo "check-deploy: $*" >&2; }
# The closing line counts what was checked: each lint, validation, scan, build and artifact.
passed() { PASSED=$((PASSED + 1)); }
die() {
    log "FAILED: $*"
    echo "deploy-checks: $PASSED passed, 1 failed"
    exit 1
}

STEP_NAME=""
STEP_START=0
TOTAL_START=$(date +%s)
TIMES=()
step() {
    finish_step
    STEP_NAME=$1
    STEP_START=$(date +%s)
    log "== $STEP_NAME"
}
finish_step() {
    if [ -n "$STEP_NAME" ]; then
        local took=$(($(date +%s) - STEP_START))
        TIMES+=("$(printf '%5ds  %s' "$took" "$STEP_NAME")")
        log "-- $STEP_NAME: ${took}s"
        STEP_NAME=""
    fi
}

# --- 1. tools -------------------------------------------------------------
# ensure_venv DIR REQUIREMENTS: a virtualenv with exactly those pins, re-installed when the file changes.
ensure_venv() {
    local dir=$1 req=$2 stamp="$1/.backstop-deps"
    if [ ! -x "$dir/bin/python" ] || ! "$dir/bin/python" -c '' 2>/dev/null; then
        log "creating virtualenv $dir"
        rm -rf "$dir"
        python3 -m venv "$dir"
    fi
    if [ ! -f "$stamp" ] || ! cmp -s "$req" "$stamp"; then
        log "installing $(grep -v '^#' "$req" | tr '\n' ' ')into $dir"
        "$dir/bin/python" -m pip install --disable-pip-version-check -q -r "$req"
        cp "$req" "$stamp"
    fi
}

step "tools (.venv-deploy, .venv-checkov, rustup target $RUST_TARGET)"
ensure_venv "$REPO_DIR/.venv-deploy" "$INFRA_DIR/requirements-deploy.txt"
ensure_venv "$REPO_DIR/.venv-checkov" "$INFRA_DIR/requirements-checkov.txt"
if ! rustup target list --installed | grep -qx "$RUST_TARGET"; then
    rustup target add "$RUST_TARGET"
fi
command -v file >/dev/null 2>&1 || die "the file command is missing (apt-get install file)"

# SAM finds cargo-lambda there, and cargo-lambda finds zig through the venv's python (python -m ziglang).
export PATH="$REPO_DIR/.venv-deploy/bin:$PATH"
export SAM_CLI_TELEMETRY=0
# Offline: nothing below calls AWS, but SAM and cfn-lint want a region, and SAM's validate a credential chain
# that resolves. Fake credentials only when none are configured.
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-${AWS_REGION:-us-east-1}}
if [ -z "${AWS_ACCESS_KEY_ID:-}" ] && [ -z "${AWS_PROFILE:-}" ] && [ ! -f "${AWS_SHARED_CREDENTIALS_FILE:-$HOME/.aws/credentials}" ]; then
    export AWS_ACCESS_KEY_ID=check-deploy-offline AWS_SECRET_ACCESS_KEY=check-deploy-offline
fi

# --- 2. cfn-lint -----------------------------------------------------------
step "cfn-lint ${TEMPLATES[*]}"
"$REPO_DIR/.venv-deploy/bin/cfn-lint" --include-checks I -- "${TEMPLATES[@]}" || die "cfn-lint found problems (above)"
passed

# --- 3. sam validate --lint --------------------------------------------------
step "sam validate --lint"
for t in "${TEMPLATES[@]}"; do
    sam validate --lint --template-file "$t" || die "sam validate --lint $t"
    passed
done

# --- 4. checkov --------------------------------------------------------------
step "checkov --framework cloudformation"
unjustified=$(grep -nE 'checkov:skip=[A-Z0-9_]+ *(:[[:space:]]*)?$' "${TEMPLATES[@]}" || true)
[ -z "$unjustified" ] || die "checkov waivers without a justification (write checkov:skip=CHECK:why):
$unjustified"
checkov_args=()
for t in "${TEMPLATES[@]}"; do checkov_args+=(-f "$t"); done
# --skip-download: no Prisma Cloud look-ups (guidelines, severities); the checks themselves are local.
if ! "$REPO_DIR/.venv-checkov/bin/checkov" --framework cloudformation "${checkov_args[@]}" \
    --compact --skip-download --quiet; then
    die "checkov found failed checks (above): fix them, or waive one with a justified checkov:skip comment"
fi
passed
log "checkov waivers (each justified beside its resource): $(grep -ho 'checkov:skip=[A-Z0-9_]*' "${TEMPLATES[@]}" | sort | uniq -c | tr -s ' ' | tr '\n' ',' | sed 's/,$//')"

if [ "$BUILD" -eq 0 ]; then
    finish_step
    printf '%s\n' "${TIMES[@]}" >&2
    echo "deploy-checks: $PASSED passed, 0 failed"
    exit 0
fi

# --- 5. build ------------------------------------------------------------------
[ -f infra/pg-layer/Makefile ] || die "infra/pg-layer/Makefile is missing: template.yaml's PgClientLayer builds with it"

step "cargo lambda build --release --arm64 (the five functions and the CLI, one invocation)"
# The CLI is the Fargate task's program (infra/image); linked here with the functions, from the same build.
bins=(--bin backstop)
for f in "${FUNCTIONS[@]}"; do bins+=(--bin "${f#*:}"); done
cargo lambda build --release --arm64 --locked "${bins[@]}" || die "cargo lambda build"
passed

step "sam build"
sam build || die "sam build"
passed

step "artifacts"
check_elf() {
    local path=$1 what
    [ -f "$path" ] || die "$path is missing"
    what=$(file -b "$path")
    case "$what" in
        *ELF\ 64-bit*ARM\ aarch64*) log "ok: $path ($what)"; passed ;;
        *) die "$path is not an ELF aarch64 executable: $what" ;;
    esac
}
for f in "${FUNCTIONS[@]}"; do
    check_elf ".aws-sam/build/${f%%:*}/bootstrap"
done
for program in pg_dump pg_dumpall pg_restore psql; do
    check_elf ".aws-sam/build/PgClientLayer/bin/$program"
done

# The layer's arm64 programs, under qemu-user, dump and restore a real server over TLS with only the layer's
# libraries loaded (build.sh reuses an up-to-date build in infra/pg-layer/dist, and its package cache).
step "client layer under qemu (infra/pg-layer/test.sh)"
infra/pg-layer/test.sh || die "the client layer's test failed (above)"
passed

# The Fargate runner's image, built offline FROM scratch, and its backstop under qemu backing up a real server
# and drilling the backup (infra/image/test.sh).
step "container image: build, and backup and drill under qemu (infra/image/test.sh)"
# With the CLI linked above: cargo lambda building it alone would link it again.
infra/image/test.sh --binary target/lambda/backstop/bootstrap || die "the container image's test failed (above)"
passed

finish_step
log "times:"
printf '%s\n' "${TIMES[@]}" >&2
log "all deploy checks passed in $(($(date +%s) - TOTAL_START))s"
echo "deploy-checks: $PASSED passed, 0 failed"
