#!/usr/bin/env bash
# lint.sh — ruff (lint + format check), mypy and import-linter over the tree.
#
# The parts live in top-level folders (router/, judge/, controller/, examples/)
# but import as bakeoff.router, bakeoff.judge, ...; mypy and import-linter
# find packages on disk, not through the editable-install hook, so they read a
# copy laid out as the wheel installs it (build/layout), and paths in their
# messages are mapped back to the repository's.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
BIN="$(cd "$(dirname "$PY")" && pwd)"

failed=()
"$BIN/ruff" check . || failed+=("ruff check")
"$BIN/ruff" format --check . || failed+=("ruff format (run: ruff format .)")

LAYOUT=build/layout
rm -rf "$LAYOUT" && mkdir -p "$LAYOUT"
cp -r bakeoff "$LAYOUT/bakeoff"
for part in router judge controller examples; do cp -r "$part" "$LAYOUT/bakeoff/$part"; done
find "$LAYOUT" -name __pycache__ -prune -exec rm -rf {} +

ROOT="$PWD"
# mypy reports paths inside the layout copy: map them back to the repository's.
( cd "$LAYOUT" && "$BIN/mypy" --config-file "$ROOT/pyproject.toml" -p bakeoff ) 2>&1 \
  | sed -E "s#^bakeoff/(router|judge|controller|examples)/#\1/#"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed+=("mypy")
( cd "$LAYOUT" && PYTHONPATH=. "$BIN/lint-imports" --no-cache "$ROOT/pyproject.toml" ) || failed+=("import-linter")

if [ ${#failed[@]} -gt 0 ]; then
  printf 'lint: FAILED: %s\n' "${failed[*]}" >&2
  exit 1
fi
echo "lint: ruff, mypy and import-linter clean"
