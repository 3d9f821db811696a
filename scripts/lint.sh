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
BIN="$(dirname "$PY")"

"$BIN/ruff" check .
"$BIN/ruff" format --check .

LAYOUT=build/layout
rm -rf "$LAYOUT" && mkdir -p "$LAYOUT"
cp -r bakeoff "$LAYOUT/bakeoff"
for part in router judge controller examples; do cp -r "$part" "$LAYOUT/bakeoff/$part"; done
find "$LAYOUT" -name __pycache__ -prune -exec rm -rf {} +

unmap() { sed -E "s#^$LAYOUT/bakeoff/(router|judge|controller|examples)/#\1/#; s#^$LAYOUT/##"; }
( cd "$LAYOUT" && "$OLDPWD/$BIN/mypy" --config-file "$OLDPWD/pyproject.toml" -p bakeoff ) 2>&1 | sed -E "s#^bakeoff/(router|judge|controller|examples)/#\1/#" ; test "${PIPESTATUS[0]}" -eq 0
( cd "$LAYOUT" && PYTHONPATH=. "$OLDPWD/$BIN/lint-imports" --config "$OLDPWD/pyproject.toml" )
echo "lint: ruff, mypy and import-linter clean"
