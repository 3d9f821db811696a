"""The pre-traffic gate: a SARIF report (Semgrep, Snyk Code, CodeQL ...) with a severity ceiling.

A candidate whose report has findings above ``maxSeverity`` (SARIF levels,
ascending: none < note < warning < error) never gets traffic: its phase
becomes Gated.  A report that cannot be read blocks too (fail closed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bakeoff.controller.resources import SARIF_LEVELS, Gate

_RANK = {level: i for i, level in enumerate(SARIF_LEVELS)}


def _level(result: dict[str, Any], rules: list[Any]) -> str:
    level = result.get("level")
    if isinstance(level, str) and level in _RANK:
        return level
    rule = None
    idx = result.get("ruleIndex")
    if isinstance(idx, int) and 0 <= idx < len(rules):
        rule = rules[idx]
    elif result.get("ruleId") is not None:
        rule = next((r for r in rules if isinstance(r, dict) and r.get("id") == result["ruleId"]), None)
    if isinstance(rule, dict):
        dl = (rule.get("defaultConfiguration") or {}).get("level")
        if isinstance(dl, str) and dl in _RANK:
            return dl
    return "warning"  # SARIF's default level


def evaluate(gate: Gate | None, base_dir: Path) -> str | None:
    """None when the candidate may get traffic; otherwise why it is gated."""
    if gate is None:
        return None
    path = Path(gate.sarif)
    if not path.is_absolute():
        path = base_dir / path
    try:
        text = path.read_text()
    except OSError as e:
        return f"gate: cannot read SARIF {gate.sarif}: {e}"
    return evaluate_text(gate, text)


def evaluate_text(gate: Gate, text: str) -> str | None:
    """As :func:`evaluate`, for a report already read (in a cluster: from a ConfigMap)."""
    try:
        doc = json.loads(text)
        runs = doc["runs"]
        if not isinstance(runs, list):
            raise TypeError("runs is not a list")
    except (ValueError, KeyError, TypeError) as e:
        return f"gate: cannot read SARIF {gate.sarif}: {e}"
    ceiling = _RANK[gate.max_severity]
    above: dict[str, int] = {}
    first = ""
    for run in runs:
        if not isinstance(run, dict):
            continue
        rules = (((run.get("tool") or {}).get("driver") or {}).get("rules")) or []
        for result in run.get("results") or []:
            if not isinstance(result, dict) or result.get("suppressions"):
                continue
            lvl = _level(result, rules)
            if _RANK[lvl] > ceiling:
                above[lvl] = above.get(lvl, 0) + 1
                if not first:
                    first = str(result.get("ruleId") or (result.get("message") or {}).get("text") or "")
    if not above:
        return None
    counts = ", ".join(f"{n} {lvl}" for lvl, n in sorted(above.items(), key=lambda x: -_RANK[x[0]]))
    return f"gate: {counts} finding(s) above maxSeverity={gate.max_severity} in {gate.sarif}" + (
        f" (first: {first})" if first else ""
    )
