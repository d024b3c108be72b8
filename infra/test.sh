#!/usr/bin/env bash
# test.sh — run every test: installs what is missing (PostgreSQL server, zstd, moto in .venv), builds once,
# then runs the unit tests and the integration tests (real PostgreSQL clusters + moto, all on 127.0.0.1).
# Extra arguments go to `cargo test` (e.g. `infra/test.sh -p backstop` or `infra/test.sh -- hostile`).
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_DIR"

infra/ensure-deps.sh

# One build for everything: the test binaries, and the CLI that one integration test runs as an operator would.
cargo build --locked --workspace --tests --bins
cargo test --locked --workspace "$@"
