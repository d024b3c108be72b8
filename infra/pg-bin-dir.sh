#!/usr/bin/env bash
# pg-bin-dir.sh — print the newest installed PostgreSQL server bin directory
# (/usr/lib/postgresql/N/bin, the one with the highest N that has initdb).
# Exits 1 with a message on stderr when no PostgreSQL server is installed;
# run infra/ensure-deps.sh to install one.
set -euo pipefail
shopt -s nullglob

candidates=(/usr/lib/postgresql/*/bin/initdb)
if ((${#candidates[@]} == 0)); then
    echo "pg-bin-dir.sh: no PostgreSQL server found under /usr/lib/postgresql (run infra/ensure-deps.sh)" >&2
    exit 1
fi
newest=$(printf '%s\n' "${candidates[@]}" | sort -V | tail -n 1)
dirname "$newest"
