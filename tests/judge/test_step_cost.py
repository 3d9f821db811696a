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
    """one_sided_cs_half_widths (Newton's method over arrays) gives the scalar Brent root of
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


def test_a_look_runs_without_the_cyclic_garbage_collector():
    """A look builds the next state (tens of thousands of small containers); with the cyclic
    collector running, that set off collections during the look, now and then a full one
    traversing every object of both states (k=6, R=16: on main 5-8 collections a look, one
    of four looks with a full one).  ``step`` pauses it for the look and restores it as it
    was: enabled after (the one collection a look may then set off runs as the look returns),
    and still disabled when the caller had disabled it."""
    import gc

    seen: list[int] = []

    def on_gc(phase, info):
        if phase == "start":
            seen.append(info["generation"])

    state = JudgeState.new(config_from_dict(EVERY_KIND, "cost.yaml"))
    stream = _stream(6, 16)
    counts = []
    gc.callbacks.append(on_gc)
    try:
        for _ in range(4):
            stream.advance(400)
            snap = stream.snapshot()
            seen.clear()
            state, verdict = step(state, snap, stream.t)
            counts.append(len(seen))
            assert gc.isenabled()
        gc.disable()
        try:
            stream.advance(400)
            state, verdict = step(state, stream.snapshot(), stream.t)
            assert not gc.isenabled()
        finally:
            gc.enable()
    finally:
        gc.callbacks.remove(on_gc)
    assert all(vv.eligible for vv in verdict.variants.values())
    assert all(c <= 1 for c in counts), counts


def test_a_snapshot_variant_is_checked_once(monkeypatch):
    """The judge reads each variant and route of a snapshot once: the shape checks of
    contracts.snapshot.validate (its latency decoding among them) are made as the counters
    are parsed, not by validate() first (k=6, R=16: on main 119 decode_counts calls a look,
    one per variant and route)."""
    from bakeoff.contracts import snapshot as contract

    calls = {"decode_counts": 0, "validate": 0}
    for name in calls:
        orig = getattr(contract, name)

        def counting(*a, _orig=orig, _name=name, **kw):
            calls[_name] += 1
            return _orig(*a, **kw)

        monkeypatch.setattr(contract, name, counting)
    state = JudgeState.new(config_from_dict(EVERY_KIND, "cost.yaml"))
    stream = _stream(6, 16)
    for _ in range(2):
        stream.advance(400)
        state, verdict = step(state, stream.snapshot(), stream.t)
    assert not [n for n in verdict.notes if n.startswith("ignored")]
    assert calls == {"decode_counts": 0, "validate": 0}


def _bad(snap: dict, how: str) -> dict:
    snap = copy.deepcopy(snap)
    v = snap["variants"]["v01"]
    r = v["by_route"]["r00"]
    if how == "float requests":
        v["requests"] = float(v["requests"])
    elif how == "bool requests":
        v["requests"] = True
    elif how == "outcomes list":
        v["outcomes"] = [1, 2]
    elif how == "float outcome":
        v["outcomes"]["2xx"] = 3.5
    elif how == "latency offset":
        v["latency"]["offset"] = 10_000
    elif how == "negative latency count":
        v["latency"]["counts"][-1] = -1
    elif how == "metrics list":
        v["metrics"] = [1]
    elif how == "route float requests":
        r["requests"] = 1.5
    elif how == "route latency offset":
        r["latency"]["offset"] = -1
    elif how == "routes add up to more":
        r["requests"] = v["requests"] + 1
    elif how == "too many routes":
        v["by_route"] = {f"x{i}": copy.deepcopy(r) | {"requests": 0} for i in range(70)}
    return snap


@pytest.mark.parametrize(
    "how",
    [
        "float requests",
        "bool requests",
        "outcomes list",
        "float outcome",
        "latency offset",
        "negative latency count",
        "metrics list",
        "route float requests",
        "route latency offset",
        "routes add up to more",
        "too many routes",
    ],
)
def test_a_bad_snapshot_is_refused_naming_the_field(how):
    """Checked once, a bad snapshot is still refused with a message naming the field -- the
    message of contracts.snapshot.validate where it refuses the snapshot too -- and the look
    is ignored (the state keeps its baselines)."""
    from bakeoff.contracts.snapshot import SnapshotError, validate

    state = JudgeState.new(config_from_dict(EVERY_KIND, "cost.yaml"))
    stream = _stream(2, 3)
    stream.advance(400)
    state, _ = step(state, stream.snapshot(), stream.t)
    stream.advance(400)
    bad = _bad(stream.snapshot(), how)
    after, verdict = step(state, bad, stream.t)
    ignored = [n for n in verdict.notes if n.startswith("ignored: ")]
    assert len(ignored) == 1, verdict.notes
    message = ignored[0].removeprefix("ignored: ")
    assert "variants.v01" in message, message
    if how == "bool requests":
        assert message == "snapshot: variants.v01.requests must be an integer"
    elif how == "negative latency count":  # (validate() reads no counts)
        assert message == "snapshot: variants.v01.latency has a negative count"
    else:
        with pytest.raises(SnapshotError) as e:
            validate(bad)
        assert message == str(e.value)
    assert after.totals["v01"].requests == state.totals["v01"].requests


def test_a_route_without_new_requests_gets_no_batch(monkeypatch):
    """A route with no new request of the candidate (or the control) in a look cannot change
    its tests: it gets no latency batch and no contrast row, while its tests stay in the
    verdict (k=3, R=8, two routes idle for one candidate: on main 24 latency batches per
    quantile, one per candidate and route, of which 2 empty)."""
    pairs: list[int] = []
    orig = latency.LatencyTest.increments_rows

    def counting(self, p, prepared=None):
        pairs.append(len(p))
        return orig(self, p, prepared)

    monkeypatch.setattr(latency.LatencyTest, "increments_rows", counting)
    state = JudgeState.new(config_from_dict(EVERY_KIND, "cost.yaml"))
    stream = _stream(3, 8, seed=5)
    stream.advance(800)
    state, _ = step(state, stream.snapshot(), stream.t)
    last = stream.snapshot()
    stream.advance(800)
    snap = copy.deepcopy(stream.snapshot())
    for r in ("r00", "r01"):  # v01 served nothing new on two routes
        snap["variants"]["v01"]["by_route"][r] = copy.deepcopy(last["variants"]["v01"]["by_route"][r])
    pairs.clear()
    state, verdict = step(state, snap, stream.t)
    assert pairs == [3 * 8 - 2, 3 * 8 - 2]  # p99 and p50
    lines = verdict.variants["v01"].metrics
    assert "latency_p99 @r00" in lines and "error_rate @r01" in lines
    assert len(lines) == len(verdict.variants["v02"].metrics)


def test_a_look_computes_p_values_states_and_intervals_per_metric_on_arrays(monkeypatch):
    """The p-values, state and interval of each of the 6 x 17 x 3 tests judged per route come
    from one array evaluation per metric (core._evaluate): the scalar rule (core._p four times
    and core._interval per test, LatencyTest._estimate per latency row) is not run for them."""
    from bakeoff.judge import core

    calls: dict[str, int] = {}

    def counting(owner, name):
        orig = getattr(owner, name)

        def wrapper(*a, **kw):
            calls[name] = calls.get(name, 0) + 1
            return orig(*a, **kw)

        monkeypatch.setattr(owner, name, wrapper)

    for name in ("_p", "_interval", "_evaluate"):
        counting(core, name)
    counting(latency.LatencyTest, "_estimate")
    state = JudgeState.new(config_from_dict(EVERY_KIND, "cost.yaml"))
    stream = _stream(6, 16)
    for _ in range(3):
        stream.advance(400)
        calls.clear()
        state, verdict = step(state, stream.snapshot(), stream.t)
    assert all(vv.eligible for vv in verdict.variants.values())
    n_tests = sum(len(vv.metrics) for vv in verdict.variants.values())
    assert n_tests == 6 * (17 * 3 + 2)
    # one evaluation per metric (error rate, 2 latency quantiles, conversion, revenue); the
    # scalar rule only for the whole-service-only metrics' 6 tests each (a handful: there it
    # costs less than the array calls), never for the 3 x 102 tests judged per route
    assert calls.pop("_evaluate") == 5
    assert calls.pop("_interval") == 2 * 6
    assert calls.pop("_p") <= 4 * 2 * 6
    assert calls == {}


def _scalar_rule(spec, it, alpha):
    """The per-test rule as core applied it before the arrays (the reference): core._p, the
    state ladder, core._interval, the estimate clamped to the interval."""
    from bakeoff.judge import core

    mv, b, mult = it.mv, it.b, it.mult
    ev = b.evidence
    guard = spec.role == "guardrail"
    mv.p_value = core._p(ev.get("no_change"), mult)
    mv.p_better = core._p(ev.get("better"), mult)
    mv.p_worse = core._p(ev.get("worse" if guard else "worse_than_control"), mult)
    mv.p_non_inferior = core._p(ev.get("non_inferior"), mult) if guard else 1.0
    if mv.p_worse <= alpha:
        mv.state = "worse"
    elif mv.p_better <= alpha:
        mv.state = "better"
    elif guard and mv.p_non_inferior <= alpha:
        mv.state = "non_inferior"
    else:
        mv.state = "unknown"
    mv.ci = core._interval(b, it.ci, it.narrows, spec, mv)
    if math.isfinite(mv.estimate):
        mv.estimate = min(max(mv.estimate, mv.ci[0]), mv.ci[1])


@pytest.mark.parametrize("seed", range(6))
def test_array_evaluation_is_the_scalar_rule(seed):
    """core._evaluate against the scalar rule on random tests with every edge the rule has:
    missing, huge and tiny evidence, no running interval yet, infinite or missing raw
    intervals, an unknown control (relative tolerance), crossing intervals, each kind and
    direction of metric."""
    from bakeoff.judge import core
    from bakeoff.judge.metric_test import RunningBest
    from bakeoff.judge.verdict import MetricVerdict

    rng = np.random.default_rng(seed)
    cfg = config_from_dict(
        {
            "alpha": 0.05,
            "control": "mainline",
            "guardrails": [
                {"metric": "error_rate", "maxIncrease": 0.005},
                {"metric": "latency_p99", "maxIncreaseRatio": 0.1},
                {"metric": "conversion", "kind": "proportion", "maxDecreaseRatio": 0.1},
            ],
            "objective": {"metric": "revenue", "kind": "mean", "per": "request", "direction": "higher"},
        },
        "edge.yaml",
    )
    names = ("no_change", "better", "worse_than_control", "worse", "non_inferior")

    def value():
        return float(rng.choice([rng.normal(3, 4), rng.uniform(700, 800), -rng.uniform(0, 700), 0.0]))

    def end():
        return float(rng.choice([rng.normal(0, 0.05), math.nan, math.inf, -math.inf]))

    for spec in cfg.metrics:
        made = []
        for _ in range(400):
            ev = {n: value() for n in names if rng.random() < 0.7}
            lo = None if rng.random() < 0.3 else float(rng.normal(-0.02, 0.03))
            hi = None if lo is None else lo + float(rng.choice([rng.uniform(0, 0.08), -0.01]))
            control = float(rng.choice([rng.uniform(0.01, 0.5), math.nan]))
            a, z = end(), end()
            est = float(rng.choice([rng.normal(0, 0.05), math.nan]))
            made.append((ev, lo, hi, control, (a, z), est, bool(rng.random() < 0.7)))

        mult = float(rng.choice([1.0, 40.0, 4000.0]))  # one Bonferroni multiplier per metric

        def items(spec=spec, mult=mult, made=made):
            return [
                core._Item(
                    spec,
                    None,
                    None,
                    RunningBest(dict(ev), lo, hi),
                    MetricVerdict(metric=spec.name, role=spec.role, kind=spec.kind, control=control, estimate=est),
                    mult,
                    narrows,
                    ci,
                )
                for ev, lo, hi, control, ci, est, narrows in made
            ]

        want, got = items(), items()
        for it in want:
            _scalar_rule(spec, it, 0.05)
        core._evaluate(spec, got, mult, 0.05)
        for g, w in zip(got, want):
            assert g.mv.state == w.mv.state
            for f in ("p_value", "p_better", "p_worse", "p_non_inferior", "estimate"):
                x, y = getattr(g.mv, f), getattr(w.mv, f)
                assert x == pytest.approx(y, rel=1e-12, abs=0, nan_ok=True), (spec.name, f)
            assert g.mv.ci == pytest.approx(w.mv.ci, rel=1e-12, abs=0, nan_ok=True), spec.name
            assert (g.b.ci_lo, g.b.ci_hi) == pytest.approx((w.b.ci_lo, w.b.ci_hi), nan_ok=True)
    # Evidence far below zero (log Lambda < -709) is a p-value of 1 where the scalar rule's
    # math.exp overflowed (OverflowError out of step), on arrays and in a handful of tests.
    spec = cfg.metrics[0]
    for n in (1, 100):
        its = [
            core._Item(
                spec,
                None,
                None,
                RunningBest({"better": -900.0}),
                MetricVerdict(spec.name, spec.role, spec.kind),
                40.0,
                False,
            )
            for _ in range(n)
        ]
        core._evaluate(spec, its, 40.0, 0.05)
        assert {(it.mv.p_better, it.mv.state) for it in its} == {(1.0, "unknown")}


def test_a_look_adds_latency_batches_per_round_not_per_state(monkeypatch):
    """The latency batches of a look are added to the states' W, I on one matrix per metric
    (core._add_batches), one array addition per round -- a state's j-th batch -- rather than
    two per state and batch (k=6, R=16: on main 2 x 6 x 16 x 2 = 384 additions of a batch to
    a state per quantile and look, here 16 rounds); the sums are the same floating-point
    numbers as adding batch after batch to each state, bit for bit."""
    from bakeoff.judge import core

    seen: list[tuple[int, int]] = []
    orig = core._add_batches

    def spying(jobs, rows, dW, dI):
        before = {id(ls): (ls, ls.W.copy(), ls.I.copy()) for r in rows for ls in jobs[r][0]}
        want = {k: [w, i] for k, (_, w, i) in before.items()}
        for n, r in enumerate(rows):  # the reference: one state and batch at a time
            for ls in jobs[r][0]:
                want[id(ls)][0] = want[id(ls)][0] + dW[n]
                want[id(ls)][1] = want[id(ls)][1] + dI[n]
        orig(jobs, rows, dW, dI)
        for k, (ls, _, _) in before.items():
            assert np.array_equal(ls.W, want[k][0]) and np.array_equal(ls.I, want[k][1])
        seen.append(
            (len(rows), max(sum(any(x is ls for x in jobs[r][0]) for r in rows) for ls, _, _ in before.values()))
        )

    monkeypatch.setattr(core, "_add_batches", spying)
    state = JudgeState.new(config_from_dict(EVERY_KIND, "cost.yaml"))
    stream = _stream(6, 16)
    for _ in range(3):
        stream.advance(400)
        seen.clear()
        state, verdict = step(state, stream.snapshot(), stream.t)
    assert all(vv.eligible for vv in verdict.variants.values())
    # per quantile: 6 x 16 batches, each to its route's state and the whole-service state;
    # the whole-service state takes 16 of them: 16 rounds
    assert seen == [(6 * 16, 16), (6 * 16, 16)]


def test_the_padded_cumulative_counts_are_the_gathered_ones():
    """latency._padded (three slice copies) is the column gather it replaces, for every
    offset and width increments_rows uses, in 32 and 64 bits."""
    rng = np.random.default_rng(4)
    for nb in (1, 7, 300):
        cum = np.zeros((9, nb + 1), dtype=np.int64)
        np.cumsum(rng.integers(0, 50, (9, nb)), axis=1, out=cum[:, 1:])
        for left in (1, 3, 40):
            for width in (left + nb + 1, left + nb + 2, 2 * (left + nb) + 5):
                for dt in (np.int32, np.int64):
                    want = cum[:, np.clip(np.arange(width) - left, 0, nb)].astype(dt)
                    got = latency._padded(cum, left, width, dt)
                    assert got.dtype == want.dtype and np.array_equal(got, want)


def test_a_control_batch_is_stacked_once_for_every_candidate(monkeypatch):
    """The latency batches of a look compare each candidate's route batch with the same
    control batch of that route: prepare_batches stacks (and sums up) each control batch
    once, not once per candidate (k=6, R=16: on main 96 control rows a look, one per
    candidate and route; here 16)."""
    from bakeoff.judge import core

    shapes: list[tuple[int, int]] = []
    orig = core.prepare_batches

    def spying(pairs):
        prep = orig(pairs)
        shapes.append((prep.M, prep.cum_c.shape[0]))
        return prep

    monkeypatch.setattr(core, "prepare_batches", spying)
    state = JudgeState.new(config_from_dict(EVERY_KIND, "cost.yaml"))
    stream = _stream(6, 16)
    for _ in range(3):
        stream.advance(400)
        shapes.clear()
        state, verdict = step(state, stream.snapshot(), stream.t)
    assert all(vv.eligible for vv in verdict.variants.values())
    assert shapes == [(6 * 16, 16)]  # once for both quantiles
