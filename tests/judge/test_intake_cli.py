"""`bakeoff judge` as a user runs it (a child process, one look per run, the
state threaded through --state): snapshots that would corrupt later looks are
refused with a note, and maxSamples is not held open by a candidate without
traffic."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bakeoff.judge.simulate import Arm, Stream
from bakeoff.router.stats import RouterStats

ROOT = Path(__file__).resolve().parents[2]

CONFIG_YAML = """\
alpha: 0.05
control: mainline
minSamples: {min_samples}
maxSamples: {max_samples}
guardrails:
  - metric: error_rate
    maxIncrease: 0.005
  - metric: latency_p50
    maxIncreaseRatio: 0.05
objective:
  metric: conversion
  kind: proportion
  direction: higher
"""


def judge_look(tmp_path, snapshot: dict, *, min_samples: int = 10**6, max_samples: int = 10**7) -> dict:
    """One `python -m bakeoff judge --json` run on `snapshot`; the judge state lives in tmp_path."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = tmp_path / "judge.yaml"
    cfg.write_text(CONFIG_YAML.format(min_samples=min_samples, max_samples=max_samples))
    snap = tmp_path / "snapshot.json"
    snap.write_text(json.dumps(snapshot))
    r = subprocess.run(
        [sys.executable, "-m", "bakeoff", "judge", "--config", str(cfg), "--snapshot", str(snap), "--json"]
        + ["--state", str(tmp_path / "state.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def _stream(seed: int = 5) -> Stream:
    return Stream({"mainline": Arm(conversion=0.05), "v2": Arm(conversion=0.05)}, np.random.default_rng(seed))


def _negative_proportion_sum(snap: dict) -> str:
    snap["variants"]["v2"]["metrics"]["conversion"]["sum"] = -5000.0
    return "snapshot: variants.v2.metrics.conversion.sum is -5000: a proportion's values are 0 or 1"


def _latency_beyond_requests(snap: dict) -> str:
    v = snap["variants"]["v2"]
    v["latency"]["counts"] = [3 * c for c in v["latency"]["counts"]]
    n = v["requests"]
    return f"snapshot: variants.v2.latency holds {3 * n} entries, more than its {n} requests"


def _boolean_outcome(snap: dict) -> str:
    snap["variants"]["v2"]["outcomes"]["5xx"] = True
    return "snapshot: variants.v2.outcomes.5xx must be an integer, got True"


def _boolean_latency_count(snap: dict) -> str:
    counts = snap["variants"]["v2"]["latency"]["counts"]
    counts[counts.index(next(c for c in counts if c > 0))] = True
    return "snapshot: variants.v2.latency counts must be integers, not true/false"


CORRUPTIONS = {
    "negative proportion sum": _negative_proportion_sum,
    "latency histogram larger than requests": _latency_beyond_requests,
    "boolean outcome count": _boolean_outcome,
    "boolean latency count": _boolean_latency_count,
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_a_corrupt_snapshot_is_refused_with_a_note_and_consumes_nothing(tmp_path, corrupt):
    stream = _stream()
    stream.advance(1000)
    first = judge_look(tmp_path, stream.snapshot(), min_samples=500)
    assert first["variants"]["v2"]["requests"] == 1000

    stream.advance(1000)
    bad = copy.deepcopy(stream.snapshot())
    note = corrupt(bad)
    second = judge_look(tmp_path, bad, min_samples=500)
    assert any(n.startswith("ignored: " + note) for n in second["notes"]), second["notes"]
    assert second["variants"]["v2"]["requests"] == 1000  # nothing of the bad look was consumed
    assert second["decision"]["action"] == "continue"

    # The next clean look counts everything since the last good one, and only that.
    stream.advance(1000)
    clean = stream.snapshot()
    third = judge_look(tmp_path, clean, min_samples=500)
    assert not third["notes"], third["notes"]
    v2 = third["variants"]["v2"]
    assert v2["requests"] == clean["variants"]["v2"]["requests"] == 3000
    conv = clean["variants"]["v2"]["metrics"]["conversion"]["sum"] / clean["variants"]["v2"]["requests"]
    conversion = v2["metrics"]["conversion"]
    assert conversion["candidate"] == pytest.approx(conv)
    # Two builds that convert alike: nothing may look better (a negative sum in the
    # baseline used to make this batch look like 100% conversions).
    assert conversion["state"] == "unknown" and conversion["ci"][0] < 0 < conversion["ci"][1], conversion
    assert third["decision"]["action"] == "continue", third["decision"]


def _snapshot(active: list[str], n: int, seed: int = 7) -> dict:
    """`n` requests for each of `active`, and "idle": in the router's table, never chosen (0 requests)."""
    stream = Stream({name: Arm() for name in active}, np.random.default_rng(seed))
    stream.advance(n)
    snap = stream.snapshot()
    snap["variants"]["idle"] = RouterStats().variant("idle").to_json()
    return snap


def test_max_samples_is_not_held_open_by_a_candidate_without_traffic(tmp_path):
    # "a" has maxSamples requests, "idle" is in the router's table but got none.
    snap = _snapshot(["mainline", "a"], 4000)
    v = judge_look(tmp_path / "one", snap, min_samples=500, max_samples=3000)
    assert v["decision"]["action"] == "stop" and v["decision"]["winner"] is None, v["decision"]
    assert v["decision"]["reason"] == "maxSamples=3000 reached without a winner; mainline stays (idle: no traffic)"
    assert v["variants"]["idle"]["requests"] == 0 and v["variants"]["idle"]["status"] == "waiting"
    assert v["variants"]["idle"]["reason"].startswith("no traffic yet")


def test_max_samples_with_only_idle_candidates_counts_the_control(tmp_path):
    below = judge_look(tmp_path / "below", _snapshot(["mainline"], 2000), min_samples=500, max_samples=3000)
    assert below["decision"]["action"] == "continue", below["decision"]
    v = judge_look(tmp_path / "one", _snapshot(["mainline"], 4000), min_samples=500, max_samples=3000)
    assert v["decision"]["action"] == "stop", v["decision"]
    assert v["decision"]["reason"] == "maxSamples=3000 reached without a winner; mainline stays (idle: no traffic)"


def test_max_samples_still_waits_for_a_candidate_with_some_traffic(tmp_path):
    snap = _snapshot(["mainline", "a"], 4000)
    slow = Stream({"b": Arm()}, np.random.default_rng(9))
    slow.advance(1000)
    snap["variants"]["b"] = slow.snapshot()["variants"]["b"]
    v = judge_look(tmp_path, snap, min_samples=500, max_samples=3000)
    assert v["decision"]["action"] == "continue", v["decision"]
    assert v["variants"]["b"]["requests"] == 1000
