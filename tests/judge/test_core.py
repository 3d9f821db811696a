"""The pure core: known cases, purity, state round trip, robustness."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bakeoff.judge.core import JudgeState, step
from bakeoff.judge.simulate import Arm, Stream
from bakeoff.router.stats import RouterStats

from .conftest import make_config


def looks(config, arms, n_looks, batch=500, seed=0, state=None):
    stream = Stream(arms, np.random.default_rng(seed))
    state = state or JudgeState.new(config)
    verdicts = []
    for _ in range(n_looks):
        stream.advance(batch)
        state, v = step(state, stream.snapshot(), stream.t)
        verdicts.append(v)
    return state, verdicts, stream


def test_clear_regressions_are_rolled_back_with_the_offending_metric():
    cfg = make_config()
    arms = {"mainline": Arm(), "slow": Arm(median=0.15), "buggy": Arm(error_rate=0.06), "same": Arm()}
    state, verdicts, _ = looks(cfg, arms, 8)
    v = verdicts[-1]
    assert v.decision.action == "rollback"
    assert v.decision.rollback == ["buggy", "slow"]
    assert v.variants["slow"].metrics["latency_p50"].state == "worse"
    assert v.variants["buggy"].metrics["error_rate"].state == "worse"
    assert v.variants["same"].status == "judging"
    # Effect estimates with confidence sequences that cover the truth.
    p50 = v.variants["slow"].metrics["latency_p50"]
    assert p50.ci[0] < 0.5 < p50.ci[1] and abs(p50.estimate - 0.5) < 0.05
    err = v.variants["buggy"].metrics["error_rate"]
    assert err.ci[0] < 0.05 < err.ci[1]
    # The verdict is JSON (no NaN / Infinity).
    json.loads(v.dumps())


def test_promotes_the_best_candidate_non_inferior_on_guardrails():
    cfg = make_config(
        guardrails=[{"metric": "error_rate", "maxIncrease": 0.005}, {"metric": "latency_p50", "maxIncreaseRatio": 0.1}],
        maxSamples=200000,
    )
    arms = {"mainline": Arm(conversion=0.05), "good": Arm(conversion=0.065), "better": Arm(conversion=0.08)}
    _, verdicts, _ = looks(cfg, arms, 60, batch=1000, seed=3)
    final = next(v for v in verdicts if v.decision.action == "promote")
    assert final.decision.winner == "better"
    assert final.variants["better"].metrics["conversion"].state == "better"
    assert all(
        m.state in ("non_inferior", "better")
        for k, m in final.variants["better"].metrics.items()
        if m.role == "guardrail"
    )
    # Sticky: later looks repeat the promotion.
    assert verdicts[-1].decision.winner == "better"


def test_minimum_samples_gate_every_decision():
    cfg = make_config(minSamples=5000)
    arms = {"mainline": Arm(), "broken": Arm(error_rate=0.5)}
    _, verdicts, _ = looks(cfg, arms, 14, batch=400)
    n = [(i + 1) * 400 for i in range(14)]
    for ni, v in zip(n, verdicts):
        if ni < 5000:
            assert v.decision.action == "continue" and v.variants["broken"].status == "waiting"
    assert verdicts[-1].decision.rollback == ["broken"]


def test_stop_without_winner_at_max_samples_and_max_duration():
    cfg = make_config(maxSamples=3000)
    _, verdicts, _ = looks(cfg, {"mainline": Arm(), "v2": Arm()}, 8, batch=500)
    assert [v.decision.action for v in verdicts][-1] == "stop"
    assert "maxSamples" in verdicts[-1].decision.reason and verdicts[-1].decision.winner is None
    cfg = make_config(maxSamples=None, maxDuration="3s")
    _, verdicts, _ = looks(cfg, {"mainline": Arm(), "v2": Arm()}, 6, batch=500)  # one look per simulated second
    assert verdicts[2].decision.action == "continue" and verdicts[3].decision.action == "stop"


def test_step_is_pure_and_state_round_trips_through_json():
    cfg = make_config()
    arms = {"mainline": Arm(), "v2": Arm(median=0.11)}
    state, _, stream = looks(cfg, arms, 4)
    frozen = copy.deepcopy(state.to_json())
    stream.advance(500)
    snap = stream.snapshot()
    snap_copy = copy.deepcopy(snap)
    new_state, verdict = step(state, snap, stream.t)
    assert state.to_json() == frozen and snap == snap_copy  # inputs untouched
    restored = JudgeState.from_json(json.loads(json.dumps(frozen)), cfg)
    again_state, again = step(restored, snap, stream.t)
    assert again.to_json() == verdict.to_json()
    assert again_state.to_json() == new_state.to_json()


def test_a_real_router_snapshot_is_judged():
    stats = RouterStats(router_id="r1")
    rng = np.random.default_rng(0)
    for name, med in (("mainline", 0.05), ("v2", 0.05)):
        vs = stats.variant(name)
        for x in rng.lognormal(math.log(med), 0.5, size=700):
            vs.record_response(200, float(x))
    cfg = make_config()
    _, v = step(JudgeState.new(cfg), stats.snapshot(), 1.0)
    assert v.decision.action == "continue" and v.variants["v2"].eligible


# --- robustness: never crash, never decide --------------------------------


def undecided(v):
    return v.decision.action == "continue" and not v.decision.rollback and v.decision.winner is None


def test_empty_and_garbage_snapshots():
    cfg = make_config()
    s = JudgeState.new(cfg)
    for snap in (None, {}, [], "x", {"format": "bakeoff.snapshot/v1"}, {"variants": {}}, 42):
        s, v = step(s, snap, 1.0)
        assert undecided(v)
    empty = RouterStats().snapshot()
    s, v = step(s, empty, 2.0)
    assert undecided(v) and v.notes


def _good_snapshot(n=3000, seed=0, arms=None):
    stream = Stream(arms or {"mainline": Arm(), "v2": Arm(error_rate=0.3)}, np.random.default_rng(seed))
    stream.advance(n)
    return stream.snapshot()


def test_nan_and_negative_values_are_ignored():
    cfg = make_config()
    bad = _good_snapshot()
    bad["variants"]["v2"]["metrics"]["conversion"]["sum"] = float("nan")
    s, v = step(JudgeState.new(cfg), bad, 1.0)
    assert undecided(v) and "not finite" in v.notes[0]
    bad = _good_snapshot()
    bad["variants"]["v2"]["requests"] = -5
    s, v = step(s, bad, 2.0)
    assert undecided(v)
    s, v = step(s, _good_snapshot(), float("nan"))
    assert undecided(v)
    # the same data, clean, is decided (the broken variant has 30% errors)
    _, v = step(s, _good_snapshot(), 3.0)
    assert v.decision.rollback == ["v2"]


def test_zero_traffic_variant_and_missing_control():
    cfg = make_config()
    snap = _good_snapshot(arms={"mainline": Arm(), "idle": Arm()})
    snap["variants"]["idle"] = RouterStats().variant("idle").to_json()
    s, v = step(JudgeState.new(cfg), snap, 1.0)
    assert undecided(v) and v.variants["idle"].status == "waiting"
    snap = _good_snapshot()
    del snap["variants"]["mainline"]
    _, v = step(JudgeState.new(cfg), snap, 1.0)
    assert undecided(v) and "control" in v.notes[0]


def test_restarted_router_rebases_without_deciding():
    cfg = make_config(minSamples=100)
    arms = {"mainline": Arm(), "v2": Arm(error_rate=0.3)}
    first = Stream(arms, np.random.default_rng(1), router_id="r", started_at=0.0)
    first.advance(50)
    s, v = step(JudgeState.new(cfg), first.snapshot(), 1.0)
    assert undecided(v)
    # the router restarts: counters start again from zero, with much more data
    second = Stream(arms, np.random.default_rng(2), router_id="r", started_at=5.0)
    second.advance(3000)
    s, v = step(s, second.snapshot(), 2.0)
    assert undecided(v) and "restarted" in v.notes[0]
    # counters going down without a new start time (e.g. a Prometheus sum) are also a reset
    third = Stream(arms, np.random.default_rng(3), router_id="r", started_at=5.0)
    third.advance(10)
    s, v = step(s, third.snapshot(), 3.0)
    assert undecided(v) and s.resets == 2
    # afterwards increments are judged again
    third.advance(3000)
    s, v = step(s, third.snapshot(), 4.0)
    assert v.decision.rollback == ["v2"]


def test_stale_snapshot_is_ignored():
    cfg = make_config()
    s, _ = step(JudgeState.new(cfg), _good_snapshot(arms={"mainline": Arm(), "v2": Arm()}), 1.0)
    old = _good_snapshot()
    old["taken_at"] = -100.0
    s2, v = step(s, old, 2.0)
    assert undecided(v) and s2.totals["v2"].requests == s.totals["v2"].requests


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mutations=st.lists(
        st.tuples(
            st.sampled_from(["requests", "5xx", "count", "offset", "sum", "metric_count", "drop", "started_at"]),
            st.one_of(
                st.integers(-(10**6), 10**6),
                st.floats(allow_nan=True, allow_infinity=True),
                st.none(),
                st.text(max_size=3),
            ),
        ),
        max_size=4,
    )
)
@pytest.mark.slow
def test_fuzzed_snapshots_never_crash_and_never_decide(mutations):
    cfg = make_config(minSamples=10**6, maxSamples=None)  # nothing may be decided in this test
    s = JudgeState.new(cfg)
    base = _good_snapshot(500, arms={"mainline": Arm(), "v2": Arm()})
    s, _ = step(s, base, 1.0)
    snap = copy.deepcopy(base)
    v2 = snap["variants"]["v2"]
    for field, value in mutations:
        if field == "requests":
            v2["requests"] = value
        elif field == "5xx":
            v2["outcomes"]["5xx"] = value
        elif field in ("count", "offset", "sum"):
            v2["latency"][field] = value
        elif field == "metric_count":
            v2["metrics"]["conversion"]["count"] = value
        elif field == "drop":
            snap["variants"].pop("mainline", None)
        elif field == "started_at":
            snap["sources"][0]["started_at"] = value
    s, v = step(s, snap, 2.0)
    assert undecided(v)
    json.dumps(v.to_json(), allow_nan=False)


def test_a_round_on_long_lived_routers_counts_from_its_first_look_and_judges_only_its_entrants():
    """Issue 16 item 11 (the pure part; tests/kube/test_rounds.py drives the controller): with
    ``baseline_first_look`` the counters of the first look are a baseline, and with ``entrants``
    only those candidates are judged, however bad the others' cumulative counters."""
    from dataclasses import replace

    s = Stream({"mainline": Arm(), "old": Arm(error_rate=0.5), "fast": Arm(error_rate=0.5)}, np.random.default_rng(3))
    s.advance({"mainline": 3000, "old": 700, "fast": 800})  # an earlier round
    s.set_arm("fast", Arm())
    base = make_config(minSamples=200)
    cfg = replace(base, entrants=("fast",), baseline_first_look=True)
    st, v = step(JudgeState.new(cfg), s.snapshot(), 1.0)
    assert v.decision.action == "continue" and not v.decision.rollback
    assert any("first look" in n for n in v.notes), v.notes
    for i in range(3):
        s.advance({"mainline": 1500, "fast": 1500})
        st, v = step(st, s.snapshot(), 2.0 + i)
    assert set(v.variants) <= {"fast"} and "old" not in st.seen_candidates
    assert v.variants["fast"].requests == 3 * 1500 and not v.decision.rollback, v.decision
    # the same looks without the two settings: the earlier round rolls both back at once
    st2, v2 = step(JudgeState.new(base), s.snapshot(), 1.0)
    assert set(v2.decision.rollback) >= {"old", "fast"}, v2.decision
