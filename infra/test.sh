#!/usr/bin/env bash
# test.sh — run every test: installs what is missing (PostgreSQL server, zstd, moto in .venv, PostgreSQL 17
# from Debian's packages for the version matrix, Chromium for the report's browser test), checks the layout (cargo fmt --check), builds once,
# then runs the unit tests and the integration tests (real PostgreSQL clusters + moto, all on 127.0.0.1),
# then clippy (-D warnings, every target),
# then the benchmark's smoke run (infra/bench/run.py --smoke: the small corpus, every case once, timings
# reported, never judged), then the deploy checks (infra/check-deploy.sh: cfn-lint, sam validate, checkov,
# sam build for arm64, the client layer's programs run under qemu against a real server).
# Extra arguments go to `cargo test` (e.g. `infra/test.sh -p backstop` or `infra/test.sh -- hostile`).
# BACKSTOP_SKIP_BENCH_SMOKE=1 and BACKSTOP_SKIP_DEPLOY_CHECKS=1 skip those (a quick local run; CI runs them).
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_DIR"

infra/ensure-deps.sh --test
# PostgreSQL 17 beside Debian's 15, for the version matrix (tests/integration/versions.rs): Debian's own
# packages, verified and cached; well under a second once built.
BACKSTOP_PG17_BIN_DIR=$(infra/pg-server/fetch.sh | tail -n 1)
export BACKSTOP_PG17_BIN_DIR

# The code's shape first (instant): rustfmt.toml's layout, everywhere.
ensure_component() { # rustup's default profile has both; a minimal one may not
    if ! cargo "$1" --version >/dev/null 2>&1; then rustup component add "$2"; fi
}
ensure_component fmt rustfmt
ensure_component clippy clippy
cargo fmt --all --check || { echo "test.sh: run \`cargo fmt --all\` (rustfmt.toml) and commit the result" >&2; exit 1; }

# One build for everything: the test binaries, and the CLI that one integration test runs as an operator would.
cargo build --locked --workspace --tests --bins
rm -f target/differential-seeds.txt
cargo test --locked --workspace "$@"
# How many seeds the differential test ran (tests/integration/fidelity.rs; BACKSTOP_DIFF_SEEDS=N runs more).
if [ -f target/differential-seeds.txt ]; then cat target/differential-seeds.txt; fi

# Lints after the tests (a lint should not hide a test result): every warning is an error, tests included.
cargo clippy --locked --workspace --all-targets -- -D warnings

# The benchmark must keep running; it uses the local stack, and takes it down again if it started it.
if [ "${BACKSTOP_SKIP_BENCH_SMOKE:-0}" = 1 ]; then
    echo "test.sh: benchmark smoke run skipped (BACKSTOP_SKIP_BENCH_SMOKE=1)" >&2
else
    if ! infra/local-stack.sh status >/dev/null 2>&1; then
        trap 'infra/local-stack.sh down >/dev/null 2>&1 || true' EXIT
    fi
    .venv/bin/python infra/bench/run.py --smoke --cli target/debug/backstop --out target/bench-smoke.json
fi

# After the tests: a template or build problem should not hide a test result, nor delay it.
if [ "${BACKSTOP_SKIP_DEPLOY_CHECKS:-0}" = 1 ]; then
    echo "test.sh: deploy checks skipped (BACKSTOP_SKIP_DEPLOY_CHECKS=1)" >&2
else
    infra/check-deploy.sh
fi
