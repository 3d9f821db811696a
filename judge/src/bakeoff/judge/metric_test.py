"""One interface for every kind of metric test, and the typed state the judge keeps.

Like Kayenta's judge, which runs one classifier per metric (its
NetflixACAJudge hands each metric's control and experiment data to a
MetricClassifier and only aggregates the classifications), bakeoff's judge
hands each metric of each candidate to one :class:`MetricTest`: the latency
quantile test (:class:`bakeoff.judge.latency.LatencyTest`) or the contrast of
means and rates (:class:`bakeoff.judge.contrast.ContrastTest`).  A test owns
the state of its sequential statistics and turns it into evidence (log
Lambda of each decision test) and an estimate with its confidence sequence;
:mod:`bakeoff.judge.core` only combines them (Bonferroni split, running
maxima, decisions).

The state is typed (dataclasses, not dicts keyed "W", "I", "A", "B") and
still serialises to the judge-state format ``bakeoff.judge-state/v3``
unchanged, so a state file written before loads as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

from bakeoff.judge.config import MetricSpec
from bakeoff.judge.counters import VariantCounters

# The decision tests a MetricTest gives evidence for (log Lambda, before running maxima).
EVIDENCE = ("no_change", "better", "worse_than_control", "worse", "non_inferior")


def tolerance_change(harm: int, tolerance: float, relative: bool, control: float, ratio_scale: bool) -> float:
    """The tolerance as a change on the verdict's scale, signed (+ when the harm is an increase).

    The one definition of the tolerance rule: latency (the ``ratio`` scale) and
    absolute tolerances are the change itself; a relative tolerance of a rate or
    a mean is that fraction of the control's value (NaN while the control has
    none)."""
    if ratio_scale or not relative:
        return harm * tolerance
    return harm * tolerance * control if math.isfinite(control) else math.nan


def spec_tolerance_change(spec: MetricSpec, control: float) -> float:
    """:func:`tolerance_change` of a configured metric."""
    return tolerance_change(spec.harm, spec.tolerance, spec.relative, control, spec.kind == "latency")


def verdict_tolerance_change(mv: Any) -> float:
    """:func:`tolerance_change` of a reported :class:`bakeoff.judge.verdict.MetricVerdict`."""
    harm = 1 if mv.harm == "increase" else -1
    return tolerance_change(harm, mv.tolerance, mv.tolerance_relative, mv.control, mv.scale == "ratio")


def _enc_float(x: float) -> Any:
    return x if math.isfinite(x) else {"__float__": repr(x)}


def _dec_float(x: Any) -> float:
    return float(x["__float__"]) if isinstance(x, dict) else float(x)


@dataclass(slots=True)
class LatencyState:
    """A latency test's sums per grid ratio: ``W``, ``I`` (the mixture sums) and the running
    maxima of log Lambda with drift above (``A``) and below (``B``) the ratio."""

    W: np.ndarray
    I: np.ndarray  # noqa: E741 (the information, as in the papers)
    A: np.ndarray
    B: np.ndarray

    @classmethod
    def zeros(cls, n: int) -> LatencyState:
        return cls(np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n))

    def copy(self) -> LatencyState:
        return LatencyState(self.W.copy(), self.I.copy(), self.A.copy(), self.B.copy())

    def to_json(self) -> dict[str, Any]:
        return {k: {"__array__": getattr(self, k).tolist()} for k in ("W", "I", "A", "B")}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LatencyState:
        def arr(x: Any) -> np.ndarray:
            return np.asarray(x["__array__"] if isinstance(x, dict) else x, dtype=float)

        return cls(arr(d["W"]), arr(d["I"]), arr(d["A"]), arr(d["B"]))


@dataclass(slots=True)
class ContrastState:
    """A contrast test's sums: ``[W, I]`` of the plain difference (``diff``) and of the
    tolerance contrast (``tol``), and the mixing variances once fixed (``tau2``)."""

    diff: list[float] = field(default_factory=lambda: [0.0, 0.0])
    tol: list[float] = field(default_factory=lambda: [0.0, 0.0])
    tau2: dict[str, float] = field(default_factory=dict)

    def acc(self, name: str) -> list[float]:
        return self.diff if name == "diff" else self.tol

    def copy(self) -> ContrastState:
        return ContrastState(list(self.diff), list(self.tol), dict(self.tau2))

    def to_json(self) -> dict[str, Any]:
        return {
            "acc": {"diff": [_enc_float(x) for x in self.diff], "tol": [_enc_float(x) for x in self.tol]},
            "tau2": {k: _enc_float(v) for k, v in self.tau2.items()},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ContrastState:
        acc = d.get("acc", {})
        return cls(
            [_dec_float(x) for x in acc.get("diff", [0.0, 0.0])],
            [_dec_float(x) for x in acc.get("tol", [0.0, 0.0])],
            {k: _dec_float(v) for k, v in (d.get("tau2") or {}).items()},
        )


TestState = LatencyState | ContrastState


def state_from_json(d: dict[str, Any]) -> TestState:
    """A test state of the saved format, by its shape (latency: W/I/A/B; contrast: acc)."""
    return LatencyState.from_json(d) if "W" in d else ContrastState.from_json(d)


@dataclass(slots=True)
class RunningBest:
    """Per test key: the running maximum of each decision test's log Lambda (the always-valid
    p-value is its running minimum, Johari, Pekelis, Walsh 2022, Section 3) and the running
    intersection of the confidence sequence (``ci_lo``, ``ci_hi``)."""

    evidence: dict[str, float] = field(default_factory=dict)
    ci_lo: float | None = None
    ci_hi: float | None = None

    def raise_to(self, name: str, value: float) -> None:
        if math.isfinite(value):
            self.evidence[name] = max(self.evidence.get(name, -math.inf), value)

    def copy(self) -> RunningBest:
        return RunningBest(dict(self.evidence), self.ci_lo, self.ci_hi)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: _enc_float(v) for k, v in self.evidence.items()}
        if self.ci_lo is not None:
            d["ci_lo"] = _enc_float(self.ci_lo)
        if self.ci_hi is not None:
            d["ci_hi"] = _enc_float(self.ci_hi)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunningBest:
        ev = {k: _dec_float(v) for k, v in d.items() if k not in ("ci_lo", "ci_hi")}
        lo, hi = d.get("ci_lo"), d.get("ci_hi")
        return cls(ev, None if lo is None else _dec_float(lo), None if hi is None else _dec_float(hi))


@dataclass
class Estimate:
    """A test's estimate of the change and its confidence sequence at the test's level."""

    control: float
    candidate: float
    estimate: float
    ci: tuple[float, float]
    relative_estimate: float
    scale: str  # difference | ratio


# One stratum of a look: (increment of the candidate, of the control, their totals before it).
Stratum = tuple[VariantCounters, VariantCounters, VariantCounters, VariantCounters]

S = TypeVar("S", LatencyState, ContrastState)


class MetricTest(Protocol[S]):
    """What the judge needs of a metric's test (one per kind, like Kayenta's classifiers)."""

    spec: MetricSpec

    def new_state(self) -> S: ...

    def update(
        self,
        st: S,
        inc_t: VariantCounters,
        inc_c: VariantCounters,
        prior_t: VariantCounters,
        prior_c: VariantCounters,
    ) -> None:
        """Add one batch of new requests (``prior_*``: the totals before it)."""

    def update_strata(self, st: S, strata: list[Stratum], route_states: list[S] | None = None) -> None:
        """Add one batch made of routes to the whole-service state ``st`` (stratified), and
        each route's batch to its own state in ``route_states`` when given."""

    def evidence(self, st: S, tot_t: VariantCounters, tot_c: VariantCounters) -> dict[str, float]:
        """log Lambda of each decision test in :data:`EVIDENCE` that has information."""

    def estimate(self, st: S, tot_t: VariantCounters, tot_c: VariantCounters, alpha_ci: float) -> Estimate:
        """The estimate and its confidence sequence at level ``alpha_ci``."""
