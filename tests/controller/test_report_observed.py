"""The report shows the plain observed difference beside the estimate when they part (issue 23 item 4).

``bakeoff report STATE_DIR`` renders report.md and report.html from a run's
report.json.  The verdict in it comes from the real judge on simulated router
snapshots in which the candidate gets far more of the one route that fails
(3% on both variants): the route-stratified estimate is about 0, the plain
difference of the error rates about +1.5 points.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from bakeoff.judge.core import JudgeState, step
from bakeoff.judge.simulate import Arm, Route, Stream
from tests.judge.conftest import make_config


def _verdict(candidate_routes: dict[str, float]) -> dict:
    """The judge's last verdict for 'go' against 'mainline', each with its own route mix."""
    routes_c = {"price": Route(0.2), "list": Route(0.5), "other": Route(0.3)}
    routes_t = {r: Route(s) for r, s in candidate_routes.items()}
    price = Arm(error_rate=0.03)
    clean = Arm(error_rate=0.0)
    mainline = Stream(
        {"mainline": clean},
        np.random.default_rng(5),
        routes=routes_c,
        route_arms={("mainline", "price"): price},
    )
    cand = Stream({"go": clean}, np.random.default_rng(6), routes=routes_t, route_arms={("go", "price"): price})
    cfg = make_config(
        minSamples=500, maxSamples=None, guardrails=[{"metric": "error_rate", "maxIncrease": 0.03}], objective=None
    )
    st = JudgeState.new(cfg)
    for _ in range(20):
        mainline.advance(500)
        cand.advance(500)
        snap = mainline.snapshot()
        snap["variants"].update(cand.snapshot()["variants"])
        st, verdict = step(st, snap, mainline.t)
    return verdict.to_json()


def _report(verdict: dict) -> dict:
    row = {"phase": "Judging", "share": 0.5, "requests": 10000, "error_rate": 0.01, "p50_ms": 1.0, "p99_ms": 2.0}
    return {
        "format": "bakeoff.report/v1",
        "generated_at": 0.0,
        "started_at": None,
        "duration_s": None,
        "source": "bake.yaml",
        "config": {},
        "load": None,
        "status_codes": {},
        "bakeoff": "mix",
        "phase": "Judging",
        "mainline": "mainline",
        "original_mainline": "mainline",
        "decision": None,
        "judge": {"alpha": 0.05, "minSamples": 500, "candidates": 1, "metrics": []},
        "variants": {"mainline": {**row, "objective": None}, "go": {**row, "objective": None}},
        "events": [],
        "verdict": verdict,
        "history": [],
        "latency": {},
    }


def _render(tmp_path, verdict: dict) -> tuple[str, str]:
    d = tmp_path / "state"
    d.mkdir()
    (d / "journal.jsonl").write_text("")
    (d / "report.json").write_text(json.dumps(_report(verdict)))
    proc = subprocess.run(
        [sys.executable, "-m", "bakeoff", "report", str(d)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return (d / "report.md").read_text(), (d / "report.html").read_text()


def test_the_observed_difference_and_its_reason_are_shown_when_they_part(tmp_path):
    verdict = _verdict({"price": 0.7, "list": 0.2, "other": 0.1})
    mv = verdict["variants"]["go"]["metrics"]["error_rate"]
    observed = mv["candidate"] - mv["control"]
    half = (mv["ci"][1] - mv["ci"][0]) / 2
    assert abs(observed - mv["estimate"]) > half, (observed, mv["estimate"], mv["ci"])
    md, page = _render(tmp_path, verdict)
    row = next(line for line in md.splitlines() if line.startswith("| go | error_rate |"))
    shown = f"(observed {observed * 100:+.2f} pp)"
    assert shown in row, row
    assert f"- go error_rate: observed {observed * 100:+.2f} pp against the estimate" in md, md
    assert "a different mix of routes between the variants is not counted" in md
    assert f"observed {observed * 100:+.2f} pp" in page and "a different mix of routes" in page
    # the route's own row compares like with like: no note
    price_row = next(line for line in md.splitlines() if line.startswith("| go | error_rate @price |"))
    assert "observed" not in price_row, price_row


def test_no_note_when_the_estimate_and_the_observed_difference_agree(tmp_path):
    verdict = _verdict({"price": 0.2, "list": 0.5, "other": 0.3})
    md, page = _render(tmp_path, verdict)
    assert "observed" not in md, md
    assert "observed" not in page
