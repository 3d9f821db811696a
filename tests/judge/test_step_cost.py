"""The cost of a look (issue 18 item 5): how ``step`` does its work, never how long it takes.

Speed is measured by ``make bench-judge`` (benchmarks/judge_speed.py); these
tests pin down the structure that makes it fast and the invariants the speed-ups
rely on: each metric's tests of every candidate and route are evaluated together
(one call per metric and look, not one per candidate x route), a look shares
with its input state only what it never modifies in place, and the vectorised
interval half-widths are the scalar ones.  tests/judge/test_replay.py checks
that every number is unchanged.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from bakeoff.judge import contrast, latency, sequential
from bakeoff.judge.config import config_from_dict
from bakeoff.judge.core import JudgeState, step
from bakeoff.judge.simulate import Arm, Route, Stream

EVERY_KIND = {
    "alpha": 0.05,
    "control": "mainline",
    "minSamples": 200,
    "guardrails": [
        {"metric": "error_rate", "maxIncrease": 0.005},
        {"metric": "latency_p99", "maxIncreaseRatio": 0.1},
        {"metric": "latency_p50", "maxIncreaseRatio": 0.05},
        {"metric": "conversion", "kind": "proportion", "maxDecrease": 0.01},
    ],
    "objective": {"metric": "revenue", "kind": "mean", "per": "request", "direction": "higher"},
}


def _stream(k: int, n_routes: int, seed: int = 7) -> Stream:
    rng = np.random.default_rng(seed)
    routes = {f"r{i:02d}": Route(share=1.0 / n_routes, median_factor=0.5 + i / n_routes) for i in range(n_routes)}
    kinds = [Arm(median=0.12), Arm(error_rate=0.03), Arm(conversion=0.07), Arm()]
    arms = {"mainline": Arm(), **{f"v{i + 1:02d}": kinds[i % len(kinds)] for i in range(k)}}
    return Stream(arms, rng, routes=routes)


def test_a_look_evaluates_each_metric_once_for_every_candidate_and_route(monkeypatch):
    """6 candidates x (16 routes + the whole service) x 2 latency quantiles are 204 latency
    tests a look; they are evaluated in one call per quantile, and no test is evaluated on
    its own (the per-test evidence/estimate calls cost ~50 numpy calls each)."""
    calls: dict[str, int] = {}
    rows: dict[str, int] = {}

    def counting(cls, name):
        orig = getattr(cls, name)

        def wrapper(self, *a, **kw):
            calls[f"{cls.__name__}.{name}"] = calls.get(f"{cls.__name__}.{name}", 0) + 1
            if name == "assess_many":
                rows[f"{cls.__name__}.{self.spec.name}"] = len(a[0])
            return orig(self, *a, **kw)

        monkeypatch.setattr(cls, name, wrapper)

    for cls in (latency.LatencyTest, contrast.ContrastTest):
        for name in ("evidence", "estimate", "assess_many"):
            if hasattr(cls, name):
                counting(cls, name)
    state = JudgeState.new(config_from_dict(EVERY_KIND, "cost.yaml"))
    stream = _stream(6, 16)
    for _ in range(3):
        stream.advance(400)
        calls.clear()
        state, verdict = step(state, stream.snapshot(), stream.t)
    assert all(vv.eligible for vv in verdict.variants.values())
    assert calls.get("LatencyTest.evidence", 0) == 0 and calls.get("LatencyTest.estimate", 0) == 0
    assert calls.get("ContrastTest.evidence", 0) == 0 and calls.get("ContrastTest.estimate", 0) == 0
    # one call per metric: 2 latency quantiles; error rate, conversion and revenue
    assert calls == {"LatencyTest.assess_many": 2, "ContrastTest.assess_many": 3}
    assert rows["LatencyTest.latency_p99"] == rows["LatencyTest.latency_p50"] == 6 * 17
    assert rows["ContrastTest.error_rate"] == 6 * 17
    assert rows["ContrastTest.revenue"] == rows["ContrastTest.conversion"] == 6


def test_a_look_leaves_every_earlier_state_as_it_was():
    """A look shares latency arrays, baselines and totals with the state it starts from (it
    never modifies them in place); stepping on from a state, or again from an older one,
    changes neither, and the same look from the same state gives the same verdict."""
    state = JudgeState.new(config_from_dict(EVERY_KIND, "cost.yaml"))
    stream = _stream(3, 5, seed=11)
    states, snaps, verdicts = [state], [], []
    for _ in range(5):
        stream.advance(300)
        snap = stream.snapshot()
        snaps.append(copy.deepcopy(snap))
        state, verdict = step(state, snap, stream.t)
        states.append(state)
        verdicts.append(verdict.to_json())
    frozen = [copy.deepcopy(s.to_json()) for s in states]
    # step on again from every state (the newest, and each older one) a few times
    for i, s in enumerate(states[:-1]):
        again, verdict = step(s, copy.deepcopy(snaps[i]), verdicts[i]["at"])
        assert verdict.to_json() == verdicts[i]
        assert again.to_json() == frozen[i + 1]
    for s, f in zip(states, frozen):
        assert s.to_json() == f


@pytest.mark.parametrize("alpha", [0.05, 1e-3, 1e-6])
def test_vectorised_interval_half_widths_are_the_scalar_ones(alpha):
    """one_sided_cs_half_widths (bisection over arrays) gives the scalar Brent root of
    one_sided_cs_half_width within 1e-12, from tiny to huge information, and inf where
    there is none."""
    one_sided_cs_half_width = sequential.one_sided_cs_half_width
    one_sided_cs_half_widths = sequential.one_sided_cs_half_widths
    rng = np.random.default_rng(3)
    info = np.concatenate([10 ** rng.uniform(-3, 9, 500), [0.0, -1.0, 5.0]])
    tau2 = np.concatenate([10 ** rng.uniform(-9, 3, 500), [1.0, 1.0, 0.0]])
    got = one_sided_cs_half_widths(info, tau2, alpha)
    want = np.array([one_sided_cs_half_width(float(i), float(t), alpha) for i, t in zip(info, tau2)])
    assert np.all(np.isinf(got[-3:])) and np.all(np.isinf(want[-3:]))
    finite = np.isfinite(want)
    assert finite.sum() == 500
    rel = np.abs(got[finite] - want[finite]) / np.maximum(np.abs(want[finite]), 1e-300)
    assert float(rel.max()) <= 1e-12, float(rel.max())
    assert not any(math.isnan(x) for x in got)
    # a handful takes the scalar path: the same numbers
    few = one_sided_cs_half_widths(info[:5], tau2[:5], alpha)
    assert np.allclose(few, got[:5], rtol=1e-12, atol=0)
