"""Replay of recorded looks (issue 18 item 5): today's judge gives the recorded verdicts.

tests/judge/data/replay_*.json.gz hold snapshot sequences generated once with
:mod:`bakeoff.judge.simulate` (k = 2 .. 12 candidates, 0 .. 16 routes, every
metric kind, regressions, restarts, two routers, a late variant, a promotion,
a stop) and the verdict the judge of the recording commit gave at every look
(tests/judge/data/record_replay.py).  Any change to the statistics -- a
refactor of the state, a vectorised or incremental update -- must leave every
number within 1e-9 and every string identical.  The judge state saved
mid-run in the recorded format (``bakeoff.judge-state/v3``) must still load
and continue to the same verdicts.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest

from bakeoff.judge.config import config_from_dict
from bakeoff.judge.core import JudgeState, step

DATA = Path(__file__).parent / "data"
CASES = sorted(p.name.removeprefix("replay_").removesuffix(".json.gz") for p in DATA.glob("replay_*.json.gz"))
TOL = 1e-9


def _load(name: str) -> dict:
    with gzip.open(DATA / f"replay_{name}.json.gz", "rt", encoding="utf-8") as f:
        return json.load(f)


def _diff(got, want, path: str, out: list[str]) -> None:
    """Every difference between two JSON values: numbers to TOL (relative and absolute)."""
    if isinstance(want, dict) and isinstance(got, dict):
        if set(got) != set(want):
            out.append(f"{path}: keys {sorted(set(got) ^ set(want))} differ")
        for k in want.keys() & got.keys():
            _diff(got[k], want[k], f"{path}.{k}", out)
    elif isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            out.append(f"{path}: length {len(got)} != {len(want)}")
        for i, (g, w) in enumerate(zip(got, want)):
            _diff(g, w, f"{path}[{i}]", out)
    elif (
        isinstance(want, (int, float))
        and isinstance(got, (int, float))
        and not isinstance(want, bool)
        and not isinstance(got, bool)
    ):
        if not math.isclose(got, want, rel_tol=TOL, abs_tol=TOL):
            out.append(f"{path}: {got!r} != {want!r}")
    elif got != want:
        out.append(f"{path}: {got!r} != {want!r}")


def _replay(case: dict, state: JudgeState, first: int) -> list[str]:
    diffs: list[str] = []
    for j in range(first, len(case["looks"])):
        look = case["looks"][j]
        state, verdict = step(state, look["snapshot"], look["now"])
        _diff(json.loads(verdict.dumps()), case["verdicts"][j], f"look {j + 1}", diffs)
    return diffs


def test_the_recorded_cases_cover_what_they_claim():
    cases = {name: _load(name) for name in CASES}
    assert set(cases) >= {"k2_r0", "k6_r10", "k12_r16", "messy", "promote"}
    actions = {v["decision"]["action"] for c in cases.values() for v in c["verdicts"]}
    assert actions == {"continue", "rollback", "promote", "stop"}
    kinds = {
        m["kind"]
        for c in cases.values()
        for v in c["verdicts"]
        for vv in v["variants"].values()
        for m in vv["metrics"].values()
    }
    assert kinds == {"error_rate", "latency", "proportion", "mean"}
    routes = max(
        len(c["looks"][0]["snapshot"]["variants"]["mainline"].get("by_route", {}))
        for c in cases.values()
        if isinstance(c["looks"][0]["snapshot"], dict)
    )
    assert routes == 16


@pytest.mark.parametrize("name", CASES)
def test_replay_gives_the_recorded_verdicts(name):
    case = _load(name)
    config = config_from_dict(case["config"], f"{name}.yaml")
    diffs = _replay(case, JudgeState.new(config), 0)
    assert not diffs, f"{len(diffs)} differences, first: " + "; ".join(diffs[:10])


@pytest.mark.parametrize("name", [n for n in CASES if n != "k12_r16"])
def test_a_saved_v3_state_loads_and_continues(name):
    case = _load(name)
    assert case["state"]["format"] == "bakeoff.judge-state/v3"
    config = config_from_dict(case["config"], f"{name}.yaml")
    state = JudgeState.from_json(case["state"], config)
    diffs = _replay(case, state, case["state_after_look"] + 1)
    assert not diffs, f"{len(diffs)} differences, first: " + "; ".join(diffs[:10])
