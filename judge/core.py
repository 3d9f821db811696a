"""The pure judge: ``step(state, snapshot, now) -> (state, verdict)``.

No I/O, no clocks, no globals: the caller passes the snapshot and the time,
and threads the returned :class:`JudgeState` into the next call (the input
state is never modified).  Like Kayenta's judge the core only turns data into
a verdict; sources (:mod:`judge.sources`) fetch the data.

Multiple comparisons (k candidates, G guardrails, an objective).  Every
decision the judge takes rests on one always-valid p-value:

- roll back candidate v: some guardrail's "worse than tolerated" test rejects;
- promote v: the objective's "better than control" test rejects *and* every
  guardrail's non-inferiority test rejects.

Bonferroni over the ``m = k * (G + 1)`` decision tests (G "worse" tests and
one promotion per candidate) bounds the family-wise false-decision rate by
``alpha`` at every time, because always-valid p-values satisfy
``P(exists t: p_t <= a) <= a`` for each test and the union bound needs no
independence.  Promotion is an intersection-union test (Berger 1982; the
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
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from bakeoff.judge.config import JudgeConfig, MetricSpec
from bakeoff.judge.contrast import ContrastTest
from bakeoff.judge.counters import InvalidSnapshot, VariantCounters, parse_snapshot
from bakeoff.judge.latency import LatencyTest
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

STATE_FORMAT = "bakeoff.judge-state/v2"


@functools.lru_cache(maxsize=256)
def _test_for(spec: MetricSpec):
    return LatencyTest(spec) if spec.kind == "latency" else ContrastTest(spec)


def _key(spec: MetricSpec) -> str:
    return f"{spec.role}:{spec.name}"


@dataclass
class JudgeState:
    """Everything the judge remembers between looks (serialisable with to_json)."""

    config: JudgeConfig
    look: int = 0
    started_at: float | None = None
    last_taken_at: float | None = None
    fingerprint: tuple = ()
    baseline: dict[str, VariantCounters] | None = None
    totals: dict[str, VariantCounters] = field(default_factory=dict)
    tests: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # variant -> metric key -> state
    best: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # running max log Lambda
    rolled_back: dict[str, str] = field(default_factory=dict)
    out: dict[str, str] = field(default_factory=dict)
    seen_candidates: list[str] = field(default_factory=list)
    final: dict[str, Any] | None = None
    resets: int = 0

    @classmethod
    def new(cls, config: JudgeConfig) -> JudgeState:
        return cls(config=config)

    def copy(self) -> JudgeState:
        def copy_test(d):
            return {k: (v.copy() if isinstance(v, np.ndarray) else _deep(v)) for k, v in d.items()}

        return replace(
            self,
            baseline=None if self.baseline is None else {k: v.copy() for k, v in self.baseline.items()},
            totals={k: v.copy() for k, v in self.totals.items()},
            tests={v: {m: copy_test(s) for m, s in ms.items()} for v, ms in self.tests.items()},
            best={v: {m: dict(s) for m, s in ms.items()} for v, ms in self.best.items()},
            rolled_back=dict(self.rolled_back),
            out=dict(self.out),
            seen_candidates=list(self.seen_candidates),
            final=None if self.final is None else dict(self.final),
        )

    def to_json(self) -> dict[str, Any]:
        def enc(x):
            if isinstance(x, np.ndarray):
                return {"__array__": x.tolist()}
            if isinstance(x, dict):
                return {k: enc(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [enc(v) for v in x]
            if isinstance(x, float) and not math.isfinite(x):
                return {"__float__": repr(x)}
            return x

        return {
            "format": STATE_FORMAT,
            "look": self.look,
            "started_at": self.started_at,
            "last_taken_at": self.last_taken_at,
            "fingerprint": [list(f) for f in self.fingerprint],
            "baseline": None if self.baseline is None else {k: v.to_json() for k, v in self.baseline.items()},
            "totals": {k: v.to_json() for k, v in self.totals.items()},
            "tests": enc(self.tests),
            "best": enc(self.best),
            "rolled_back": self.rolled_back,
            "out": self.out,
            "seen_candidates": self.seen_candidates,
            "final": self.final,
            "resets": self.resets,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], config: JudgeConfig) -> JudgeState:
        def dec(x):
            if isinstance(x, dict):
                if "__array__" in x:
                    return np.asarray(x["__array__"], dtype=float)
                if "__float__" in x:
                    return float(x["__float__"])
                return {k: dec(v) for k, v in x.items()}
            if isinstance(x, list):
                return [dec(v) for v in x]
            return x

        if d.get("format") != STATE_FORMAT:
            raise ValueError(f"judge state: format {d.get('format')!r}, expected {STATE_FORMAT!r}")
        return cls(
            config=config,
            look=d["look"],
            started_at=d["started_at"],
            last_taken_at=d["last_taken_at"],
            fingerprint=tuple(tuple(f) for f in d["fingerprint"]),
            baseline=None
            if d["baseline"] is None
            else {k: VariantCounters.from_json(v) for k, v in d["baseline"].items()},
            totals={k: VariantCounters.from_json(v) for k, v in d["totals"].items()},
            tests=dec(d["tests"]),
            best=dec(d["best"]),
            rolled_back=dict(d["rolled_back"]),
            out=dict(d["out"]),
            seen_candidates=list(d["seen_candidates"]),
            final=d["final"],
            resets=d.get("resets", 0),
        )


def _deep(x):
    if isinstance(x, dict):
        return {k: _deep(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_deep(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.copy()
    return x


def family_size(config: JudgeConfig, n_candidates: int) -> int:
    per_variant = len(config.guardrails) + (1 if config.objective else 0)
    return max(1, n_candidates) * max(1, per_variant)


def step(state: JudgeState, snapshot: Any, now: float) -> tuple[JudgeState, Verdict]:
    """Consume one snapshot; return the new state and the verdict. Never raises on bad data."""
    st = state.copy()
    st.look += 1
    cfg = st.config
    notes: list[str] = []
    try:
        counters, fingerprint, taken_at = parse_snapshot(snapshot)
    except InvalidSnapshot as e:
        notes.append(f"ignored: {e}")
        return st, _verdict(st, now, notes, fresh=False)

    if not isinstance(now, (int, float)) or not math.isfinite(now):
        notes.append("ignored: time is not a finite number")
        return st, _verdict(st, now if isinstance(now, (int, float)) else math.nan, notes, fresh=False)

    if taken_at is not None and st.last_taken_at is not None and taken_at < st.last_taken_at:
        notes.append("ignored: snapshot is older than the previous one")
        return st, _verdict(st, now, notes, fresh=False)

    base = st.baseline
    if base is not None:
        reset = fingerprint != st.fingerprint
        if not reset:
            reset = any(counters.get(name, VariantCounters()).went_backwards(b) for name, b in base.items())
        if reset:
            st.baseline, st.fingerprint, st.last_taken_at = counters, fingerprint, taken_at
            st.resets += 1
            notes.append("router restarted or counters went backwards: rebased, nothing consumed this look")
            return st, _verdict(st, now, notes, fresh=False)
    else:
        base = {}

    increments = {name: c.minus(base[name]) if name in base else c.copy() for name, c in counters.items()}
    st.baseline, st.fingerprint, st.last_taken_at = counters, fingerprint, taken_at

    if not any(inc.requests > 0 for inc in increments.values()):
        if not counters:
            notes.append("no variants in the snapshot yet")
        return st, _verdict(st, now, notes, fresh=False)
    if st.started_at is None:
        st.started_at = float(now)

    ctrl = cfg.control
    for name in counters:
        if name != ctrl and name not in st.seen_candidates:
            st.seen_candidates.append(name)
    prior = {name: st.totals.get(name, VariantCounters()).copy() for name in increments}
    for name, inc in increments.items():
        st.totals.setdefault(name, VariantCounters()).add(inc)

    if ctrl not in st.totals:
        notes.append(f"control {ctrl!r} is not in the snapshot: nothing to compare with")
        return st, _verdict(st, now, notes, fresh=False)

    inc_c = increments.get(ctrl, VariantCounters())
    for v in st.seen_candidates:
        if v in st.rolled_back or v not in increments:
            continue
        tests = st.tests.setdefault(v, {})
        for spec in cfg.metrics:
            t = _test_for(spec)
            ts = tests.setdefault(_key(spec), t.new_state())
            if spec.kind == "latency":
                t.update(ts, increments[v], inc_c, prior.get(v, VariantCounters()), prior.get(ctrl, VariantCounters()))
            else:
                t.update(ts, increments[v], inc_c, st.totals[v], st.totals[ctrl])
    return st, _verdict(st, now, notes, fresh=True)


def _p(log_lambda: float | None, m: int) -> float:
    if log_lambda is None or not math.isfinite(log_lambda) and log_lambda < 0:
        return 1.0
    if log_lambda > 700:
        return 0.0
    return min(1.0, math.exp(-log_lambda) * m)


def _verdict(st: JudgeState, now: float, notes: list[str], fresh: bool) -> Verdict:
    """Evaluate states and the decision. ``fresh``: new data was consumed this look
    (only then may p-values move and new decisions be taken)."""
    cfg = st.config
    k = max(cfg.candidates or 0, len(st.seen_candidates))
    m = family_size(cfg, k)
    alpha = cfg.alpha
    alpha_unit = alpha / m
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
    for v in st.seen_candidates:
        tot = st.totals.get(v, VariantCounters())
        eligible = tot.requests >= cfg.min_samples and ctrl_tot.requests >= cfg.min_samples
        vv = VariantVerdict(name=v, requests=tot.requests, eligible=eligible)
        verdict.variants[v] = vv
        best = st.best.setdefault(v, {})
        worse_metrics, ni_all, obj_better, obj_out, obj_bound = [], True, False, False, -math.inf
        for spec in cfg.metrics:
            key = _key(spec)
            t = _test_for(spec)
            ts = st.tests.get(v, {}).get(key)
            mv = MetricVerdict(
                metric=spec.name,
                role=spec.role,
                kind=spec.kind,
                tolerance=spec.tolerance,
                tolerance_relative=spec.relative,
                harm="increase" if spec.harm > 0 else "decrease",
            )
            vv.metrics[
                spec.name
                if spec.role == "guardrail"
                else f"{spec.name} (objective)"
                if any(g.name == spec.name for g in cfg.guardrails)
                else spec.name
            ] = mv
            b = best.setdefault(key, {})
            if ts is not None:
                if fresh and eligible and v not in st.rolled_back:
                    for name, val in t.evidence(ts, tot, ctrl_tot).items():
                        if math.isfinite(val):
                            b[name] = max(b.get(name, -math.inf), val)
                est = t.estimate(ts, tot, ctrl_tot, alpha_unit)
                mv.control, mv.candidate = est["control"], est["candidate"]
                mv.estimate, mv.ci, mv.scale = est["estimate"], tuple(est["ci"]), est["scale"]
                mv.relative_estimate = est["relative_estimate"]
            mv.p_value = _p(b.get("no_change"), m)
            mv.p_better = _p(b.get("better"), m)
            worse_key = "worse" if spec.role == "guardrail" else "worse_than_control"
            mv.p_worse = _p(b.get(worse_key), m)
            mv.p_non_inferior = _p(b.get("non_inferior"), m) if spec.role == "guardrail" else 1.0
            if mv.p_worse <= alpha:
                mv.state = WORSE
            elif mv.p_better <= alpha:
                mv.state = BETTER
            elif spec.role == "guardrail" and mv.p_non_inferior <= alpha:
                mv.state = NON_INFERIOR
            else:
                mv.state = UNKNOWN
            if spec.role == "guardrail":
                if mv.state == WORSE:
                    worse_metrics.append(spec.name)
                if mv.state not in (BETTER, NON_INFERIOR):
                    ni_all = False
            else:
                obj_better = mv.state == BETTER
                obj_out = mv.state == WORSE
                lo, hi = mv.ci
                bound = (lo if spec.harm < 0 else -hi) if mv.ci else -math.inf
                obj_bound = bound if isinstance(bound, float) and math.isfinite(bound) else -math.inf
        if st.final is None and fresh and eligible and v not in st.rolled_back and worse_metrics:
            st.rolled_back[v] = "worse than tolerated on " + ", ".join(worse_metrics)
        if st.final is None and fresh and eligible and v not in st.out and obj_out and v not in st.rolled_back:
            st.out[v] = f"significantly worse than {cfg.control} on the objective {cfg.objective.name}"
        if v in st.rolled_back:
            vv.status, vv.reason = "rolled_back", st.rolled_back[v]
        elif v in st.out:
            vv.status, vv.reason = "out", st.out[v]
        elif eligible:
            vv.status = "judging"
            if cfg.objective is not None and obj_better and ni_all and fresh:
                promotable.append((obj_bound, v))
        else:
            vv.status, vv.reason = "waiting", f"fewer than minSamples={cfg.min_samples} requests (it or the control)"

    d = verdict.decision
    d.rollback = sorted(st.rolled_back)
    if st.final is None and promotable:
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
        if st.seen_candidates and not remaining:
            st.final = {"action": STOP, "winner": None, "reason": "no candidate left that could win; mainline stays"}
        elif (
            remaining
            and cfg.max_samples is not None
            and all(st.totals.get(v, VariantCounters()).requests >= cfg.max_samples for v in remaining)
        ):
            st.final = {
                "action": STOP,
                "winner": None,
                "reason": f"maxSamples={cfg.max_samples} reached without a winner; mainline stays",
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
