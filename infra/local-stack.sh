#!/usr/bin/env bash
# local-stack.sh — start/stop/inspect the Backstop local stack: a throwaway
# PostgreSQL cluster seeded with infra/seed/sample.sql plus a moto AWS mock
# (S3/KMS/DynamoDB/SNS/SQS), all on 127.0.0.1, state in <repo>/.local/.
#
#   infra/local-stack.sh up       # start (idempotent), then: source .local/env
#   infra/local-stack.sh status   # exit 0 when everything is running, 3 otherwise
#   infra/local-stack.sh down     # stop and remove .local/
#
# `up` installs missing dependencies first (infra/ensure-deps.sh).
# The work is done by infra/local_stack.py.
set -euo pipefail

INFRA_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$INFRA_DIR")
VENV_PY="$REPO_DIR/.venv/bin/python"

cmd=${1:-}
case "$cmd" in
    up)
        "$INFRA_DIR/ensure-deps.sh"
        export BACKSTOP_DEPS_OK=1
        ;;
    down|status) ;;
    *)
        echo "usage: $0 up|down|status" >&2
        exit 2
        ;;
esac
if [ $# -gt 1 ]; then
    echo "usage: $0 up|down|status" >&2
    exit 2
fi

# down/status only need the standard library: work even without the venv.
PY="$VENV_PY"
[ -x "$PY" ] || PY=python3
exec "$PY" "$INFRA_DIR/local_stack.py" "$cmd"
