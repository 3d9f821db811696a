"""The pure judge: ``step(state, snapshot, now) -> (state, verdict)``.

No I/O, no clocks, no globals: the caller passes the snapshot and the time,
and threads the returned :class:`JudgeState` into the next call (the input
state is never modified).  Like Kayenta's judge the core only turns data into
a verdict; sources (:mod:`bakeoff.judge.sources`) fetch the data.

Multiple comparisons (k candidates, G guardrails, an objective).  Every
decision the judge takes rests on one always-valid p-value:

- roll back candidate v: some guardrail's "worse than tolerated" test rejects;
- promote v: the objective's "better than control" test rejects *and* every
  guardrail's non-inferiority test rejects.

Bonferroni over the ``m = k * (G + 1)`` decision tests (G "worse" tests and
one promotion per candidate) bounds the family-wise false-decision rate by
``alpha`` at every time, because always-valid p-values satisfy
``P(exists t: p_t <= a) <= a`` for each test and the union bound needs no
independence.  The split may be weighted (``alphaWeight``: metric ``g`` at
``alpha/k * w_g/sum(w)``, Holm 1979), and a guardrail judged per route splits
its share over its ``R`` route tests and the stratified whole-service test
(:func:`metric_level`).  Promotion is an intersection-union test (Berger 1982; the
shipping rule of Schultzberg, Ankargren, Frånberg, "Risk-aware product
decisions in A/B tests with multiple metrics", 2024): promoting a variant
that is not better, or is worse than tolerated on some guardrail, needs at
least one false rejection among its own tests, so each of those tests runs at
the same level ``alpha/m`` and the non-inferiority tests cost nothing extra.
Bonferroni rather than Holm: Holm's first step *is* Bonferroni, so the time
of the first (and usually only) decision would be the same, while Holm's
later steps would have to be recomputed on every look and would make sticky
decisions order-dependent.  ``k`` is the larger of ``candidates`` in the
config and the number of candidates seen so far; set ``candidates`` when
variants join later so the split is fixed up front.

The objective's "worse than control" test only removes a candidate from the
contest ("out": it cannot win); when no candidate can win any more the judge
stops without a winner.  Neither keeps or changes anything the users see, so
these do not spend false-alarm budget.

Always-valid p-values are running minima over the looks at which both the
candidate and the control have ``minSamples`` requests; before that the
statistics accumulate but nothing is decided.
"""

from __future__ import annotations

import functools
import gc
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from bakeoff.judge.baselines import Baselines
from bakeoff.judge.config import JudgeConfig, MetricSpec
from bakeoff.judge.contrast import ContrastTest
from bakeoff.judge.counters import InvalidSnapshot, VariantCounters, parse_snapshot
from bakeoff.judge.latency import Batches, LatencyTest, beyond_grid, prepare_batches, quantile_values
from bakeoff.judge.metric_test import (
    LatencyState,
    RunningBest,
    Stratum,
    TestState,
    spec_tolerance_change,
    state_from_json,
)
from bakeoff.judge.verdict import (
    BETTER,
    CONTINUE,
    NON_INFERIOR,
    PROMOTE,
    ROLLBACK,
    STOP,
    UNKNOWN,
    WORSE,
    Decision,
    MetricVerdict,
    VariantVerdict,
    Verdict,
)

STATE_FORMAT = "bakeoff.judge-state/v3"


@functools.lru_cache(maxsize=256)
def _test_for(spec: MetricSpec) -> LatencyTest | ContrastTest:
    return LatencyTest(spec) if spec.kind == "latency" else ContrastTest(spec)


def _key(spec: MetricSpec, route: str | None = None) -> str:
    base = f"{spec.role}:{spec.name}"
    return base if route is None else f"{base}@{route}"


@dataclass
class JudgeState:
    """Everything the judge remembers between looks (serialisable with to_json).

    ``baselines``: the last counters seen per source and variant
    (:class:`bakeoff.judge.baselines.Baselines`); ``totals``: each variant's
    judged requests so far; ``tests``: per variant and metric key
    (``role:name`` or ``role:name@route``) the state of its
    :class:`bakeoff.judge.metric_test.MetricTest`; ``best``: per variant and
    key the running maxima of the evidence and the intersected interval.
    """

    config: JudgeConfig
    look: int = 0
    started_at: float | None = None
    last_taken_at: float | None = None
    baselines: Baselines = field(default_factory=Baselines)
    totals: dict[str, VariantCounters] = field(default_factory=dict)
    tests: dict[str, dict[str, TestState]] = field(default_factory=dict)  # variant -> metric key -> state
    best: dict[str, dict[str, RunningBest]] = field(default_factory=dict)  # running max log Lambda, CI
    rolled_back: dict[str, str] = field(default_factory=dict)
    out: dict[str, str] = field(default_factory=dict)
    seen_candidates: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    final: dict[str, Any] | None = None
    resets: int = 0
    first_seen: dict[str, float] = field(default_factory=dict)  # candidate -> the look that first had its requests

    @classmethod
    def new(cls, config: JudgeConfig) -> JudgeState:
        return cls(config=config)

    def copy(self) -> JudgeState:
        return replace(
            self,
            baselines=self.baselines.copy(),
            totals={k: v.copy() for k, v in self.totals.items()},
            tests={v: {m: s.copy() for m, s in ms.items()} for v, ms in self.tests.items()},
            best={v: {m: b.copy() for m, b in ms.items()} for v, ms in self.best.items()},
            rolled_back=dict(self.rolled_back),
            out=dict(self.out),
            seen_candidates=list(self.seen_candidates),
            routes=list(self.routes),
            final=None if self.final is None else dict(self.final),
            first_seen=dict(self.first_seen),
        )

    def _successor(self) -> JudgeState:
        """The copy :func:`step` works on: like :meth:`copy`, but sharing what a look never
        modifies in place -- latency states' arrays (every update binds a new array), the
        baselines' counters (a look replaces a source's :class:`Baseline`) and the totals
        (``step`` replaces the counters of a variant with new requests) -- so a look does
        not copy every histogram of every candidate and route."""
        return replace(
            self,
            baselines=Baselines(dict(self.baselines.by_source)),
            totals=dict(self.totals),
            tests={v: {m: _successor_state(s) for m, s in ms.items()} for v, ms in self.tests.items()},
            best={v: {m: b.copy() for m, b in ms.items()} for v, ms in self.best.items()},
            rolled_back=dict(self.rolled_back),
            out=dict(self.out),
            seen_candidates=list(self.seen_candidates),
            routes=list(self.routes),
            final=None if self.final is None else dict(self.final),
            first_seen=dict(self.first_seen),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "look": self.look,
            "started_at": self.started_at,
            "last_taken_at": self.last_taken_at,
            "baselines": self.baselines.to_json(),
            "totals": {k: v.to_json() for k, v in self.totals.items()},
            "tests": {v: {m: s.to_json() for m, s in ms.items()} for v, ms in self.tests.items()},
            "best": {v: {m: b.to_json() for m, b in ms.items()} for v, ms in self.best.items()},
            "rolled_back": self.rolled_back,
            "out": self.out,
            "seen_candidates": self.seen_candidates,
            "routes": self.routes,
            "final": self.final,
            "resets": self.resets,
            "first_seen": self.first_seen,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], config: JudgeConfig) -> JudgeState:
        if d.get("format") != STATE_FORMAT:
            raise ValueError(f"judge state: format {d.get('format')!r}, expected {STATE_FORMAT!r}")
        return cls(
            config=config,
            look=d["look"],
            started_at=d["started_at"],
            last_taken_at=d["last_taken_at"],
            baselines=Baselines.from_json(d["baselines"]),
            totals={k: VariantCounters.from_json(v) for k, v in d["totals"].items()},
            tests={v: {m: state_from_json(s) for m, s in ms.items()} for v, ms in d["tests"].items()},
            best={v: {m: RunningBest.from_json(b) for m, b in ms.items()} for v, ms in d["best"].items()},
            rolled_back=dict(d["rolled_back"]),
            out=dict(d["out"]),
            seen_candidates=list(d["seen_candidates"]),
            routes=list(d.get("routes", [])),
            final=d["final"],
            resets=d.get("resets", 0),
            first_seen=dict(d.get("first_seen", {})),
        )


def _without_warming(
    st: JudgeState, increments: dict[str, VariantCounters], now: float, notes: list[str]
) -> dict[str, VariantCounters]:
    """This look's increments less those of candidates still in their warm-up (``spec.judge.warmup``).

    A candidate's warm-up starts at the first look that brings requests of it and lasts
    ``warmup`` seconds; what it served until then went into the baselines already, so it is
    never judged.  The rule looks only at the clock, never at the data, so what is judged
    afterwards keeps the tests' guarantees (a stopping rule or a sample chosen without
    looking at the outcomes leaves a test's error rate as it was).  Spinnaker's Kayenta
    canary stage waits out a warm-up the same way (``beginCanaryAnalysisAfterMins``), as do
    Argo Rollouts' analyses (``initialDelay``).
    """
    ctrl, warmup = st.config.control, st.config.warmup
    warming: list[str] = []
    for name, inc in increments.items():
        if name == ctrl or inc.requests <= 0:
            continue
        st.first_seen.setdefault(name, float(now))
        left = _warmup_left(st, name, now)
        if left > 0:
            warming.append(name)
            notes.append(f"{name}: warming up, not judged for {left:.1f}s more (warmup {warmup:g}s)")
    if not warming:
        return increments
    return {n: inc for n, inc in increments.items() if n not in warming}


def _warmup_left(st: JudgeState, name: str, now: float) -> float:
    """Seconds of ``name``'s warm-up still to run at ``now`` (<= 0: over); it must be in ``first_seen``."""
    return st.config.warmup - (now - st.first_seen[name])


def _successor_state(s: TestState) -> TestState:
    return LatencyState(s.W, s.I, s.A, s.B) if isinstance(s, LatencyState) else s.copy()


def _weights(config: JudgeConfig) -> float:
    return sum(g.alpha_weight for g in config.guardrails) + (config.objective.alpha_weight if config.objective else 0.0)


def metric_level(config: JudgeConfig, spec: MetricSpec, n_candidates: int, n_routes: int = 0) -> float:
    """The level each of ``spec``'s tests runs at: weighted Bonferroni.

    Candidate ``v`` gets ``alpha / k``; within it metric ``g`` gets the share
    ``w_g / sum(w)`` of its ``alphaWeight`` (Holm 1979, Section 3: weighted
    Bonferroni keeps the family-wise error at ``alpha`` for any positive
    weights, because ``sum_g alpha w_g / sum(w) = alpha``).  A guardrail judged
    per route splits its share again over the routes and the stratified
    whole-service test (``n_routes + 1`` tests).
    """
    k = max(1, n_candidates)
    share = config.alpha * spec.alpha_weight / (k * _weights(config))
    if n_routes and per_route(spec):
        share /= n_routes + 1
    return share


def per_route(spec: MetricSpec) -> bool:
    """Judged per route when the snapshot has ``by_route``: the guardrails the router
    records per route (errors and latency; business metrics are whole-service only)."""
    return spec.role == "guardrail" and spec.kind in ("error_rate", "latency")


def family_size(config: JudgeConfig, n_candidates: int, n_routes: int = 0) -> int:
    """Number of decision tests (what ``alpha`` is split over)."""
    per_variant = sum(n_routes + 1 if n_routes and per_route(g) else 1 for g in config.guardrails)
    per_variant += 1 if config.objective else 0
    return max(1, n_candidates) * max(1, per_variant)


def step(state: JudgeState, snapshot: Any, now: float) -> tuple[JudgeState, Verdict]:
    """Consume one look; return the new state and the verdict. Never raises on bad data.

    ``snapshot``: one snapshot (possibly already merged from several routers)
    or a list of them, one per router process, each with its own baseline.

    The cyclic garbage collector is paused for the look (and restored as it was): a look
    builds the next state (tens of thousands of small containers with k = 20 candidates and
    64 routes), which set off full collections that traverse every object of both states --
    about a quarter of a look's time -- while none of it forms a reference cycle (reference
    counting frees the old state).  Whatever cycle anything else makes meanwhile is collected
    after the look.
    """
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        return _step(state, snapshot, now)
    finally:
        if paused:
            gc.enable()


def _step(state: JudgeState, snapshot: Any, now: float) -> tuple[JudgeState, Verdict]:
    st = state._successor()
    st.look += 1
    cfg = st.config
    notes: list[str] = []
    parts = snapshot if isinstance(snapshot, list) else [snapshot]
    parsed = []
    proportions = {spec.name for spec in cfg.metrics if spec.kind == "proportion"}
    for part in parts:
        try:
            parsed.append(parse_snapshot(part, proportions))
        except InvalidSnapshot as e:
            notes.append(f"ignored: {e}")
    if not parsed:
        if not parts:
            notes.append("ignored: no snapshot")
        return st, _verdict(st, now, notes, fresh=False)

    if not isinstance(now, (int, float)) or not math.isfinite(now):
        notes.append("ignored: time is not a finite number")
        return st, _verdict(st, now if isinstance(now, (int, float)) else math.nan, notes, fresh=False)

    # A round judged on long-lived routers: what they counted before its first look belongs to
    # earlier rounds, so that look is a baseline only.
    baseline_only = cfg.baseline_first_look and not st.baselines.by_source
    intake = st.baselines.consume(parsed, st.look, baseline_only=baseline_only)
    notes += intake.notes
    st.resets += intake.resets
    if intake.last_taken_at is not None:
        st.last_taken_at = max(st.last_taken_at or intake.last_taken_at, intake.last_taken_at)
    increments, present = intake.increments, intake.present

    if baseline_only and st.baselines.by_source:
        notes.append("first look: the routers' counters so far are the baseline (earlier requests are not judged)")
    if cfg.entrants is not None:
        # Only the round's own entrants (and the control) are judged; the others stay in the
        # baselines, so that if one enters later only its new requests count.
        allowed = {cfg.control, *cfg.entrants}
        increments = {n: inc for n, inc in increments.items() if n in allowed}
        present = {n for n in present if n in allowed}
    if cfg.warmup > 0:
        increments = _without_warming(st, increments, now, notes)
    if not any(inc.requests > 0 for inc in increments.values()):
        if not present:
            notes.append("no variants in the snapshot yet")
        return st, _verdict(st, now, notes, fresh=False)
    if st.started_at is None:
        st.started_at = float(now)

    ctrl = cfg.control
    for name in present:
        if name != ctrl and name not in st.seen_candidates:
            st.seen_candidates.append(name)
    for inc in increments.values():
        for r in inc.routes:
            if r not in st.routes:
                st.routes.append(r)
    # The totals before this look: the state's own counters, which are replaced, not added to.
    prior = {name: st.totals.get(name) or VariantCounters() for name in increments}
    for name, inc in increments.items():
        st.totals[name] = prior[name].plus(inc)

    if ctrl not in st.totals:
        notes.append(f"control {ctrl!r} is not in the snapshot: nothing to compare with")
        return st, _verdict(st, now, notes, fresh=False)

    inc_c = increments.get(ctrl, VariantCounters())
    pri_c = prior.get(ctrl, VariantCounters())
    # Latency batches of every candidate and route are computed together, per metric
    # (LatencyTest.increments_many): (the states a batch goes to, candidate, control).
    latency_jobs: dict[MetricSpec, list[tuple[list[LatencyState], np.ndarray, np.ndarray]]] = {}
    for v in st.seen_candidates:
        if v in st.rolled_back or v not in increments:
            continue
        inc_v, pri_v = increments[v], prior.get(v, VariantCounters())
        tests = st.tests.setdefault(v, {})
        shared = [r for r in inc_v.routes if r in inc_c.routes]
        # The routes with new requests of both arms: only they can change a test (a batch
        # without a request on one side adds nothing: no latency batch, no contrast row).
        live = [r for r in shared if inc_v.routes[r].requests > 0 and inc_c.routes[r].requests > 0]
        for spec in cfg.metrics:
            t = _test_for(spec)
            ts = _state(tests, _key(spec), t)
            if shared and per_route(spec):
                # Stratified by route: each route's batch is compared with the same route's
                # batch of the control and the evidence of the routes adds up -- pooling of
                # independent strata as in Mantel & Haenszel (JNCI 22, 1959) -- so a shift in
                # the traffic mix between routes is not mistaken for a change of the variant.
                # Counts and means weight each route by its share of the batch (direct
                # standardisation, ContrastTest.update_strata): weighting by inverse variance
                # let error-free routes outweigh the one that failed.  Latency's permutation
                # variances are already proportional to 1/requests of the route.
                strata: list[Stratum] = [
                    (inc_v.routes[r], inc_c.routes[r], _route(pri_v, r), _route(pri_c, r)) for r in live
                ]
                at = _key(spec) + "@"
                # every shared route has a test (and a line in the verdict); only the live
                # ones get a batch
                for r in shared:
                    _state(tests, at + r, t)
                route_states = [tests[at + r] for r in live]
                if isinstance(t, LatencyTest):
                    jobs = latency_jobs.setdefault(spec, [])
                    for (inc_rv, inc_rc, _, _), rts in zip(strata, route_states):
                        jobs.append(([ts, rts], inc_rv.latency, inc_rc.latency))  # type: ignore[list-item]
                else:
                    t.update_strata(ts, strata, route_states)  # type: ignore[arg-type]
            elif isinstance(t, LatencyTest):
                latency_jobs.setdefault(spec, []).append(([ts], inc_v.latency, inc_c.latency))  # type: ignore[list-item]
            else:
                t.update(ts, inc_v, inc_c, pri_v, pri_c)  # type: ignore[arg-type]
    # The latency quantiles judge the same batches: stacked once (prepare_batches).
    prepared: dict[tuple[int, ...], Batches] = {}
    for spec, jobs in latency_jobs.items():
        lt = _test_for(spec)
        assert isinstance(lt, LatencyTest)
        pairs = [(ct, cc) for _, ct, cc in jobs]
        same = tuple(id(a) for pair in pairs for a in pair)
        prep = prepared.get(same)
        if prep is None:
            prep = prepared[same] = prepare_batches(pairs)
        _add_batches(jobs, *lt.increments_rows(pairs, prep))
    return st, _verdict(st, now, notes, fresh=True)


def _add_batches(jobs: list[tuple[list[LatencyState], np.ndarray, np.ndarray]], rows: list[int], dW, dI) -> None:
    """Add each batch (row ``r`` of ``dW``, ``dI``: the batch of ``jobs[rows[r]]``) to the
    ``W``, ``I`` of the states it goes to: a route's state gets its own batch, the
    whole-service state the batches of all its routes.  On the states' sums stacked as one
    matrix, in rounds: round ``j`` adds every state's ``j``-th batch (in the order of the
    jobs), so each state's sum is formed in the same order as adding batch after batch to
    it -- the same floating-point numbers -- with one array addition per round instead of
    two per state and batch.  Each state then holds its row of the new matrix (a new array:
    the earlier state's arrays are left as they were)."""
    if not rows:
        return
    index: dict[int, int] = {}
    states: list[LatencyState] = []
    seen: list[int] = []  # batches added to each state so far
    rounds: list[tuple[list[int], list[int]]] = []  # per round: (states, batches)
    for r, j in enumerate(rows):
        for ls in jobs[j][0]:
            i = index.get(id(ls))
            if i is None:
                i = index[id(ls)] = len(states)
                states.append(ls)
                seen.append(0)
            n = seen[i]
            seen[i] = n + 1
            if n == len(rounds):
                rounds.append(([], []))
            rounds[n][0].append(i)
            rounds[n][1].append(r)
    # W and I side by side, one row per state: one addition per round for both
    g = dW.shape[1]
    WI = np.concatenate([a for ls in states for a in (ls.W, ls.I)]).reshape(len(states), 2 * g)
    dWI = np.concatenate((dW, dI), axis=1)
    src = rounds[0][1]  # every state has a first batch, in the order of the states
    WI += dWI[src] if len(src) < len(dWI) or src != list(range(len(dWI))) else dWI
    for to, src in rounds[1:]:
        WI[to] += dWI[src]  # (no state twice in a round)
    for ls, row in zip(states, WI):
        ls.W, ls.I = row[:g], row[g:]


def _state(tests: dict[str, TestState], key: str, t: LatencyTest | ContrastTest) -> TestState:
    """The state of ``key``, a new one of ``t`` when there is none yet."""
    ts = tests.get(key)
    if ts is None:
        ts = tests[key] = t.new_state()
    return ts


def _route(c: VariantCounters, route: str) -> VariantCounters:
    return c.routes.get(route) or VariantCounters()


def _p(log_lambda: float | None, mult: float) -> float:
    """Always-valid p-value ``1/Lambda`` scaled by the test's Bonferroni multiplier."""
    if log_lambda is None or not math.isfinite(log_lambda) and log_lambda < 0:
        return 1.0
    if log_lambda > 700:
        return 0.0
    if log_lambda < -700:  # 1/Lambda beyond any float (math.exp would overflow)
        return 1.0
    return min(1.0, math.exp(-log_lambda) * mult)


def _implied(spec: MetricSpec, state: str, control: float) -> tuple[float, float]:
    """The one-sided set a state's rejected test implies for the change (lo, hi): the set
    of parameters that test did not reject (test/confidence-set duality, e.g. Lehmann &
    Romano, Testing Statistical Hypotheses, Section 3.5)."""
    h = spec.harm
    if state == WORSE:
        bound = 0.0 if spec.role == "objective" else spec_tolerance_change(spec, control)
        return (bound, math.inf) if h > 0 else (-math.inf, bound)
    if state == NON_INFERIOR:
        bound = spec_tolerance_change(spec, control)
        return (-math.inf, bound) if h > 0 else (bound, math.inf)
    if state == BETTER:
        return (-math.inf, 0.0) if h > 0 else (0.0, math.inf)
    return (-math.inf, math.inf)


def _interval(b: RunningBest, ci: tuple[float, float], update: bool, spec: MetricSpec, mv: MetricVerdict):
    """The reported confidence sequence: intersected over looks, and agreeing with the state.

    Running intersection: each look's interval is a confidence sequence, so
    their intersection covers whenever all of them do (Howard, Ramdas,
    McAuliffe, Sekhon 2021, Section 2).  Then it is intersected with the
    one-sided set of the state's rejected test (worse: above the tolerance,
    non-inferior: below it, better: below no change), so the printed interval
    always implies the state; by the union bound the result covers with
    probability at least ``1 - 3 x`` the test level.  Should the intersection
    be empty (the change itself moved during the run, e.g. a regression after
    a good start) the state's side wins and the other end is left open.
    """
    lo, hi = ci
    if update and math.isfinite(lo) and math.isfinite(hi):
        b.ci_lo = max(-math.inf if b.ci_lo is None else b.ci_lo, lo)
        b.ci_hi = min(math.inf if b.ci_hi is None else b.ci_hi, hi)
    if b.ci_lo is not None and b.ci_hi is not None and b.ci_lo <= b.ci_hi:
        lo, hi = b.ci_lo, b.ci_hi
    if not (math.isfinite(lo) or math.isfinite(hi)) and mv.state == UNKNOWN:
        return ci
    s_lo, s_hi = _implied(spec, mv.state, mv.control)
    if math.isfinite(s_lo) and not lo >= s_lo:
        lo = s_lo
        if not hi >= lo:
            hi = math.inf
    if math.isfinite(s_hi) and not hi <= s_hi:
        hi = s_hi
        if not lo <= hi:
            lo = -math.inf
    return _reach_tolerance(spec, mv, lo, hi)


def _reach_tolerance(spec: MetricSpec, mv: MetricVerdict, lo: float, hi: float) -> tuple[float, float]:
    """The converse of the state's one-sided set: a guardrail's interval lies wholly within
    the tolerance only when the state is non-inferior (or better), and wholly beyond it only
    when worse.  For error rates and proportions the tolerance tests weight batches by the
    variance at the tolerance (Farrington & Manning 1990) while the interval uses the plug-in
    variance of the difference, which is far smaller with few errors: 335 of 2,340 looks of an
    error-free A/A with routes showed an interval inside +1 point with the state unknown.
    Such an interval is widened just past the tolerance (a wider set still covers whatever
    the narrower one covered), so it reads "not shown" as the state does.
    """
    if spec.role != "guardrail":
        return (lo, hi)
    tol = spec_tolerance_change(spec, mv.control)
    if not math.isfinite(tol):
        return (lo, hi)
    up = spec.harm > 0
    if mv.state not in (NON_INFERIOR, BETTER):
        if up and hi <= tol:
            hi = math.nextafter(tol, math.inf)
        elif not up and lo >= tol:
            lo = math.nextafter(tol, -math.inf)
    if mv.state != WORSE:
        if up and lo >= tol:
            lo = math.nextafter(tol, -math.inf)
        elif not up and hi <= tol:
            hi = math.nextafter(tol, math.inf)
    return (lo, hi)


_STATES = np.array([UNKNOWN, WORSE, BETTER, NON_INFERIOR], dtype=object)
_FEW_TESTS = 24


def _scalar_rule(spec: MetricSpec, it: _Item, alpha: float) -> None:
    """One test's p-values (:func:`_p`), state and interval (:func:`_interval`): the rule
    :func:`_evaluate` applies on arrays."""
    mv, b, mult = it.mv, it.b, it.mult
    ev = b.evidence
    guard = spec.role == "guardrail"
    if ev:
        mv.p_value = _p(ev.get("no_change"), mult)
        mv.p_better = _p(ev.get("better"), mult)
        mv.p_worse = _p(ev.get("worse" if guard else "worse_than_control"), mult)
        mv.p_non_inferior = _p(ev.get("non_inferior"), mult) if guard else 1.0
    else:  # no evidence yet: every p-value is 1 (_p(None))
        mv.p_value = mv.p_better = mv.p_worse = mv.p_non_inferior = 1.0
    if mv.p_worse <= alpha:
        mv.state = WORSE
    elif mv.p_better <= alpha:
        mv.state = BETTER
    elif guard and mv.p_non_inferior <= alpha:
        mv.state = NON_INFERIOR
    else:
        mv.state = UNKNOWN
    mv.ci = _interval(b, it.ci, it.narrows, spec, mv)
    if math.isfinite(mv.estimate):
        mv.estimate = min(max(mv.estimate, mv.ci[0]), mv.ci[1])


def _evaluate(spec: MetricSpec, items: list[_Item], mult: float, alpha: float) -> None:
    """p-values, state and reported interval of every test of one metric (all candidates and
    routes) at once: :func:`_p`, the state rule and :func:`_interval` element for element on
    arrays (the same arithmetic: the running minimum of ``1/Lambda`` scaled by the Bonferroni
    multiplier, Johari, Pekelis, Walsh 2022, Section 3; the running intersection of the
    confidence sequences, Howard, Ramdas, McAuliffe, Sekhon 2021, Section 2, then the
    one-sided set of the state's rejected test, Lehmann & Romano, Section 3.5).  Fills in
    each item's MetricVerdict and raises its RunningBest's interval where it narrows."""
    n = len(items)
    if n <= _FEW_TESTS:  # a handful (no routes): the scalar rule costs less than the array calls
        for it in items:
            _scalar_rule(spec, it, alpha)
        return
    guard = spec.role == "guardrail"
    wk = "worse" if guard else "worse_than_control"
    ninf = -math.inf
    evs = [it.b.evidence for it in items]
    L = np.array(
        [(e.get("no_change", ninf), e.get("better", ninf), e.get(wk, ninf), e.get("non_inferior", ninf)) for e in evs]
        if guard
        else [(e.get("no_change", ninf), e.get("better", ninf), e.get(wk, ninf), ninf) for e in evs],
        dtype=float,
    ).reshape(n, 4)
    with np.errstate(over="ignore", invalid="ignore"):
        P = np.where(L > 700, 0.0, np.fmin(1.0, np.exp(-L) * mult))
    P[np.isnan(L)] = 1.0
    p_no, p_better, p_worse, p_ni = P[:, 0], P[:, 1], P[:, 2], P[:, 3]
    is_worse = p_worse <= alpha
    is_better = ~is_worse & (p_better <= alpha)
    is_ni = ~is_worse & ~is_better & (p_ni <= alpha) if guard else np.zeros(n, dtype=bool)
    code = np.where(is_worse, 1, np.where(is_better, 2, np.where(is_ni, 3, 0)))
    # the raw interval of this look, and the running intersection where it narrows
    raw = np.array([it.ci for it in items], dtype=float).reshape(n, 2)
    b_lo = np.array([np.nan if it.b.ci_lo is None else it.b.ci_lo for it in items], dtype=float)
    b_hi = np.array([np.nan if it.b.ci_hi is None else it.b.ci_hi for it in items], dtype=float)
    r_lo, r_hi = raw[:, 0], raw[:, 1]
    narrows = np.array([it.narrows for it in items], dtype=bool) & np.isfinite(r_lo) & np.isfinite(r_hi)
    if narrows.any():
        b_lo = np.where(narrows, np.fmax(b_lo, r_lo), b_lo)  # fmax: a None (NaN) end is -inf
        b_hi = np.where(narrows, np.fmin(b_hi, r_hi), b_hi)
    use_b = b_lo <= b_hi  # both set and ordered
    lo = np.where(use_b, b_lo, r_lo)
    hi = np.where(use_b, b_hi, r_hi)
    untouched = ~(np.isfinite(lo) | np.isfinite(hi)) & (code == 0)  # _interval returns the raw ci
    control = np.array([it.mv.control for it in items], dtype=float)
    h = spec.harm
    if spec.kind == "latency" or not spec.relative:
        tol = np.full(n, h * spec.tolerance)
    else:
        with np.errstate(invalid="ignore"):
            tol = np.where(np.isfinite(control), h * spec.tolerance * control, np.nan)
    inf = math.inf
    worse_bound = np.zeros(n) if not guard else tol
    # the one-sided set of the state's rejected test (_implied)
    if h > 0:
        s_lo = np.where(code == 1, worse_bound, -inf)
        s_hi = np.where(code == 3, tol, np.where(code == 2, 0.0, inf))
    else:
        s_lo = np.where(code == 3, tol, np.where(code == 2, 0.0, -inf))
        s_hi = np.where(code == 1, worse_bound, inf)
    with np.errstate(invalid="ignore"):
        move = np.isfinite(s_lo) & ~(lo >= s_lo)
        lo = np.where(move, s_lo, lo)
        hi = np.where(move & ~(hi >= lo), inf, hi)
        move = np.isfinite(s_hi) & ~(hi <= s_hi)
        hi = np.where(move, s_hi, hi)
        lo = np.where(move & ~(lo <= hi), -inf, lo)
        if guard:  # _reach_tolerance
            ft = np.isfinite(tol)
            above, below = np.nextafter(tol, inf), np.nextafter(tol, -inf)
            shown = ft & (code != 3) & (code != 2)
            if h > 0:
                hi = np.where(shown & (hi <= tol), above, hi)
            else:
                lo = np.where(shown & (lo >= tol), below, lo)
            not_worse = ft & (code != 1)
            if h > 0:
                lo = np.where(not_worse & (lo >= tol), below, lo)
            else:
                hi = np.where(not_worse & (hi <= tol), above, hi)
    lo = np.where(untouched, r_lo, lo)
    hi = np.where(untouched, r_hi, hi)
    states = _STATES[code].tolist()
    cols = zip(
        p_no.tolist(),
        p_better.tolist(),
        p_worse.tolist(),
        p_ni.tolist() if guard else [1.0] * n,
        states,
        lo.tolist(),
        hi.tolist(),
    )
    for it, (pn, pb, pw, pi, state, a, z) in zip(items, cols):
        mv = it.mv
        mv.p_value, mv.p_better, mv.p_worse, mv.p_non_inferior, mv.state = pn, pb, pw, pi, state
        mv.ci = (a, z)
        est = mv.estimate
        if est == est and est not in (inf, -inf):
            mv.estimate = min(max(est, a), z)
    if narrows.any():
        for j, a, z in zip(np.flatnonzero(narrows).tolist(), b_lo[narrows].tolist(), b_hi[narrows].tolist()):
            b = items[j].b
            b.ci_lo, b.ci_hi = a, z


def _describe(mv: MetricVerdict) -> str:
    """'checkout latency_p99 +31%' (route, metric, observed change in the metric's units)."""
    where = f"{mv.route} " if mv.route else ""
    if not math.isfinite(mv.estimate):
        change = ""
    elif mv.scale == "ratio":
        # at the grid's edge the change is only known to lie beyond it: a bound, not a figure
        edge = {1: "> ", -1: "< "}.get(beyond_grid(mv.estimate), "")
        change = f" {edge}{mv.estimate * 100:+.0f}%"
    elif mv.kind in ("error_rate", "proportion"):
        change = f" {mv.estimate * 100:+.2f} points"
    elif mv.kind == "cpu_per_request":
        change = f" {mv.estimate * 1000:+.3g} ms CPU per request"
    elif mv.kind == "memory":
        change = f" {mv.estimate / 2**20:+.3g} MiB"
    else:
        change = f" {mv.estimate:+.4g}"
    return f"{where}{mv.metric}{change}"


@dataclass(slots=True)
class _Item:
    """One test of one candidate in a look: its metric, route, state, running best, the
    verdict being filled in, the Bonferroni multiplier and this look's raw interval."""

    spec: MetricSpec
    route: str | None
    ts: TestState | None
    b: RunningBest
    mv: MetricVerdict
    mult: float
    narrows: bool  # this look's interval intersects the running one (updated, with a state)
    ci: tuple[float, float] = (math.nan, math.nan)


def _verdict(st: JudgeState, now: float, notes: list[str], fresh: bool) -> Verdict:
    """Evaluate states and the decision. ``fresh``: new data was consumed this look
    (only then may p-values move and new decisions be taken)."""
    cfg = st.config
    k = max(cfg.candidates or 0, len(st.seen_candidates))
    n_routes = len(st.routes)
    m = family_size(cfg, k, n_routes)
    alpha = cfg.alpha
    ctrl_tot = st.totals.get(cfg.control, VariantCounters())
    verdict = Verdict(
        at=float(now),
        look=st.look,
        control=cfg.control,
        alpha=alpha,
        tests_in_family=m,
        decision=Decision(),
        notes=notes,
    )
    promotable: list[tuple[float, str]] = []
    # 1. One MetricVerdict per candidate x metric x route, in report order; the tests that
    # have a state are grouped by metric so that step 2 evaluates each metric's tests of
    # every candidate and route together (LatencyTest/ContrastTest.assess_many).
    specs = []
    for spec in cfg.metrics:
        level = metric_level(cfg, spec, k, n_routes)
        label = (
            spec.name
            if spec.role == "guardrail"
            else f"{spec.name} (objective)"
            if any(g.name == spec.name for g in cfg.guardrails)
            else spec.name
        )
        proto = MetricVerdict(
            metric=spec.name,
            role=spec.role,
            kind=spec.kind,
            tolerance=spec.tolerance,
            tolerance_relative=spec.relative,
            harm="increase" if spec.harm > 0 else "decrease",
            alpha_weight=spec.alpha_weight,
        )
        base = _key(spec)
        # each route's test key and verdict line, formatted once a look (not per candidate)
        on_routes = [(r, f"{base}@{r}", f"{label} @{r}") for r in st.routes] if per_route(spec) else []
        specs.append((spec, level, alpha / level, label, proto.__dict__, base, on_routes))
    ctrl_routes = {r: _route(ctrl_tot, r) for r in st.routes}
    # (a list per metric, not a dict keyed by it: hashing a MetricSpec per test costs)
    group_lists: list[list[tuple[_Item, VariantCounters, VariantCounters, bool]]] = [[] for _ in specs]
    by_spec: list[list[_Item]] = [[] for _ in specs]  # every test of the metric, in report order
    looked: list[tuple[str, VariantVerdict, VariantCounters, bool, bool, list[_Item]]] = []
    for v in st.seen_candidates:
        tot = st.totals.get(v, VariantCounters())
        eligible = tot.requests >= cfg.min_samples and ctrl_tot.requests >= cfg.min_samples
        vv = VariantVerdict(name=v, requests=tot.requests, eligible=eligible)
        verdict.variants[v] = vv
        best = st.best.setdefault(v, {})
        update = fresh and eligible and v not in st.rolled_back
        vtests = st.tests.get(v, {})
        items: list[_Item] = []
        for (spec, _level, mult, label, fields, base, on_routes), jobs_of_spec, of_spec in zip(
            specs, group_lists, by_spec
        ):
            routes: list[tuple[str | None, str, str]] = [(None, base, label)]
            if on_routes:
                routes += [rk for rk in on_routes if rk[1] in vtests]
            for route, key, line in routes:
                ts = vtests.get(key)
                # MetricVerdict(metric=..., route=route) without running __init__ for each of
                # the thousands of tests of a look: a copy of the metric's fields
                mv = MetricVerdict.__new__(MetricVerdict)
                mv.__dict__.update(fields)
                mv.route = route
                vv.metrics[line] = mv
                b = best.get(key)
                if b is None:
                    b = best[key] = RunningBest()
                item = _Item(spec, route, ts, b, mv, mult, update and ts is not None)
                items.append(item)
                of_spec.append(item)
                if ts is not None:
                    tot_v = tot if route is None else _route(tot, route)
                    tot_c = ctrl_tot if route is None else ctrl_routes[route]
                    jobs_of_spec.append((item, tot_v, tot_c, update))
        looked.append((v, vv, tot, eligible, update, items))
    groups = {spec: jobs for (spec, *_), jobs in zip(specs, group_lists) if jobs}
    # 2. Evidence (raising the running maxima) and estimates, per metric; the latency
    # quantiles of the totals of every latency metric at once.
    lat_specs = [spec for spec in groups if spec.kind == "latency"]
    quantiles: dict[float, list[float]] = {}
    if lat_specs:
        arrays = [tv.latency for spec in lat_specs for _, tv, tc, _ in groups[spec]]
        arrays += [tc.latency for spec in lat_specs for _, tv, tc, _ in groups[spec]]
        quantiles = quantile_values(arrays, tuple({float(spec.quantile) for spec in lat_specs}))  # type: ignore[arg-type]
    offset = 0
    n_lat = sum(len(groups[spec]) for spec in lat_specs)
    for spec, jobs in groups.items():
        t = _test_for(spec)
        level = metric_level(cfg, spec, k, n_routes)
        states = [it.ts for it, _, _, _ in jobs]
        updates = [u for _, _, _, u in jobs]
        if isinstance(t, LatencyTest):
            results = t.assess_many(
                states,  # type: ignore[arg-type]
                [tv.latency for _, tv, _, _ in jobs],
                [tc.latency for _, _, tc, _ in jobs],
                updates,
                level,
                (
                    quantiles[float(spec.quantile)][offset : offset + len(jobs)],  # type: ignore[arg-type]
                    quantiles[float(spec.quantile)][n_lat + offset : n_lat + offset + len(jobs)],  # type: ignore[arg-type]
                ),
            )
            offset += len(jobs)
        else:
            results = t.assess_many(
                states,  # type: ignore[arg-type]
                [tv for _, tv, _, _ in jobs],
                [tc for _, _, tc, _ in jobs],
                updates,
                level,
            )
        for (it, _, _, _), (ev, est) in zip(jobs, results):
            if ev:
                best_ev = it.b.evidence  # RunningBest.raise_to, inlined: the running maxima
                for name, val in ev.items():
                    if math.isfinite(val):
                        old = best_ev.get(name)
                        if old is None or val > old:
                            best_ev[name] = val
            mv = it.mv
            mv.control, mv.candidate = est.control, est.candidate
            mv.estimate, it.ci, mv.scale = est.estimate, (est.ci[0], est.ci[1]), est.scale
            mv.relative_estimate = est.relative_estimate
    # 3. p-values, states and intervals of every test, per metric on arrays (_evaluate).
    for (spec, _level, mult, *_), its in zip(specs, by_spec):
        if its:
            _evaluate(spec, its, mult, alpha)
    # 4. Decisions per candidate.
    for v, vv, tot, eligible, _update, items in looked:
        worse: list[MetricVerdict] = []
        ni_all, obj_better, obj_out, obj_bound = True, False, False, -math.inf
        for it in items:
            spec, route, mv = it.spec, it.route, it.mv
            if spec.role == "guardrail":
                if mv.state == WORSE:
                    worse.append(mv)
                # Promotion needs the whole-service (stratified) test non-inferior; a
                # route shown worse rolls back instead.
                if route is None and mv.state not in (BETTER, NON_INFERIOR):
                    ni_all = False
            else:
                obj_better = mv.state == BETTER
                obj_out = mv.state == WORSE
                lo, hi = mv.ci
                bound = lo if spec.harm < 0 else -hi
                obj_bound = bound if math.isfinite(bound) else -math.inf
        vv.regressions = [_describe(mv) for mv in worse]
        if st.final is None and fresh and eligible and v not in st.rolled_back and worse:
            st.rolled_back[v] = f"worse than tolerated: {', '.join(vv.regressions)} in variant {v}"
        if st.final is None and fresh and eligible and v not in st.out and obj_out and v not in st.rolled_back:
            assert cfg.objective is not None
            st.out[v] = f"significantly worse than {cfg.control} on the objective {cfg.objective.name}"
        if v in st.rolled_back:
            vv.status, vv.reason = "rolled_back", st.rolled_back[v]
        elif v in st.out:
            vv.status, vv.reason = "out", st.out[v]
        elif eligible:
            vv.status = "judging"
            if cfg.objective is not None and obj_better and ni_all and fresh:
                promotable.append((obj_bound, v))
        elif tot.requests == 0 and v in st.first_seen:
            left = max(_warmup_left(st, v, now), 0.0)
            vv.status, vv.reason = "waiting", f"warming up: not judged for {left:.1f}s more (warmup)"
        elif tot.requests == 0:
            vv.status, vv.reason = "waiting", "no traffic yet (maxSamples does not wait for it)"
        else:
            vv.status, vv.reason = "waiting", f"fewer than minSamples={cfg.min_samples} requests (it or the control)"

    d = verdict.decision
    d.rollback = sorted(st.rolled_back)
    if st.final is None and promotable:
        assert cfg.objective is not None
        promotable.sort(key=lambda x: (-x[0], x[1]))
        winner = promotable[0][1]
        st.final = {
            "action": PROMOTE,
            "winner": winner,
            "reason": f"{winner} is better than {cfg.control} on {cfg.objective.name} and within "
            f"tolerance on every guardrail",
        }
    if st.final is None and fresh:
        remaining = [v for v in st.seen_candidates if v not in st.rolled_back and v not in st.out]
        # A candidate the router lists but that has had no request at all brings no
        # evidence and must not hold the run open: maxSamples counts the candidates with
        # traffic, or the control when none has any (it had maxSamples requests and the
        # candidates nothing).
        # (one in its warm-up has had traffic: it is waited for)
        idle = [v for v in remaining if st.totals.get(v, VariantCounters()).requests == 0 and v not in st.first_seen]
        served = [v for v in remaining if v not in idle]
        if st.seen_candidates and not remaining:
            st.final = {"action": STOP, "winner": None, "reason": "no candidate left that could win; mainline stays"}
        elif (
            remaining
            and cfg.max_samples is not None
            and all(st.totals.get(v, VariantCounters()).requests >= cfg.max_samples for v in served or [cfg.control])
        ):
            st.final = {
                "action": STOP,
                "winner": None,
                "reason": f"maxSamples={cfg.max_samples} reached without a winner; mainline stays"
                + (f" ({', '.join(idle)}: no traffic)" if idle else ""),
            }
        elif cfg.max_duration is not None and st.started_at is not None and now - st.started_at >= cfg.max_duration:
            st.final = {
                "action": STOP,
                "winner": None,
                "reason": f"maxDuration={cfg.max_duration:g}s reached without a winner; mainline stays",
            }
    if st.final is not None:
        d.action, d.winner, d.reason = st.final["action"], st.final["winner"], st.final["reason"]
        if d.winner in verdict.variants:
            verdict.variants[d.winner].status = "winner"
    elif st.rolled_back:
        d.action = ROLLBACK
        d.reason = "; ".join(f"{v}: {r}" for v, r in sorted(st.rolled_back.items()))
    else:
        d.action = CONTINUE
        d.reason = "not enough evidence yet" if st.seen_candidates else "no candidates yet"
    return verdict
