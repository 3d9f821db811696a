#!/usr/bin/env bash
# lint.sh — ruff (lint + format check), mypy and import-linter over the checkout as it is.
#
# Each part keeps its code in <part>/src/bakeoff/<part>/ (core/ holds cli,
# common and contracts), so a file's path ends in its import path: mypy reads
# the src folders through mypy_path (pyproject.toml) and import-linter through
# PYTHONPATH, with no copy step.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
BIN="$(cd "$(dirname "$PY")" && pwd)"
SRC="core/src:router/src:judge/src:controller/src"

failed=()
"$BIN/ruff" check . || failed+=("ruff check")
"$BIN/ruff" format --check . || failed+=("ruff format (run: ruff format .)")
"$BIN/mypy" -p bakeoff.contracts -p bakeoff.common -p bakeoff.router -p bakeoff.judge -p bakeoff.load \
  -p bakeoff.controller -p bakeoff.cli -p bakeoff.examples || failed+=("mypy")
PYTHONPATH="$SRC" "$BIN/lint-imports" --no-cache || failed+=("import-linter")

if [ ${#failed[@]} -gt 0 ]; then
  printf 'lint: FAILED: %s\n' "${failed[*]}" >&2
  exit 1
fi
echo "lint: ruff, mypy and import-linter clean"
