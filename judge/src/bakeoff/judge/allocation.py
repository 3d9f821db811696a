"""Adaptive allocation: which share of the traffic each candidate gets next (pure, replayable).

``allocate(arms, previous, params) -> Allocation``: data in (each contender's
anytime-valid interval for its improvement over the mainline on the
allocation metric, the shares it has now), shares and retirements out.  No
I/O, no clock, no randomness: the same looks give the same shares, so a run's
allocation can be replayed from its journal.

The rule combines three results from best-arm identification:

- **Elimination** (successive elimination, Even-Dar, Mannor, Mansour,
  "Action elimination and stopping conditions for the multi-armed bandit and
  reinforcement learning problems", JMLR 7, 2006; the LUCB rule of
  Kalyanakrishnan, Tewari, Auer, Stone, "PAC subset selection in stochastic
  multi-armed bandits", ICML 2012; lil'UCB, Jamieson, Malloy, Nowak, Bubeck,
  COLT 2014): a contender whose upper confidence bound lies below the lower
  bound of another (or below zero: the mainline) cannot be the best and is
  retired.  The bounds are the judge's confidence sequences
  (:func:`bakeoff.judge.core._interval`), valid at every look and under
  *adaptive* sampling, because each look's shares are fixed from earlier looks
  only (a predictable allocation): the e-processes behind them stay
  supermartingales whatever the allocation (Howard, Ramdas, McAuliffe,
  Sekhon, "Time-uniform, nonparametric, nonasymptotic confidence sequences",
  Ann. Statist. 49(2), 2021, Section 2; Waudby-Smith, Ramdas, "Estimating
  means of bounded random variables by betting", JRSS B 86(1), 2024, and
  Waudby-Smith, Wu, Ramdas, Karampatziakis, Mineiro, "Anytime-valid
  off-policy inference for contextual bandits", 2022, for adaptively
  collected data).
- **Top-two Thompson sampling** (Russo, "Simple Bayesian algorithms for
  best-arm identification", Operations Research 68(6), 2020): the target
  share of contender ``i`` is the probability that top-two sampling with
  ``beta`` picks it, ``psi_i = p_i (beta + (1 - beta) sum_{j != i} p_j /
  (1 - p_j))`` (Russo 2020, Section 4), where ``p_i`` is the probability that
  ``i`` is the best under independent normal approximations centred at the
  judge's estimates.  Computed by quadrature, not by sampling, so it is
  deterministic.  The leader gets about ``beta`` of the candidates' traffic
  and the challengers the rest in proportion to their chance of winning;
  contenders that cannot plausibly win get only ``min_share`` (enough for the
  guardrails to keep judging them).
- **Bounded moves**: no share moves by more than ``max_step`` per interval,
  and only a candidate with no metric judged worse may grow (the ramp's rule
  of evidence); the router's weighted rendezvous hashing moves only the users
  whose variant changes.

Error guarantee: allocation changes who is sampled, not how a decision is
tested.  Promotion and rollback stay the judge's Bonferroni family of
anytime-valid tests, so the family-wise probability of promoting a candidate
worse than the mainline stays at most ``alpha`` under this allocation.
Retirement only ever removes a candidate from the contest: it cannot cause a
false promotion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import norm

from bakeoff.judge.verdict import MetricVerdict, Verdict

# The posterior scale is the interval's half-width over Z_WIDTH: a confidence sequence is wider than a
# fixed-sample interval, so this overstates the uncertainty (the allocation explores more, never less).
Z_WIDTH = 2.0
BETA = 0.5  # top-two Thompson sampling's leader share (Russo 2020 recommends 1/2)
_GRID = 2048


@dataclass(frozen=True)
class Arm:
    """A contender's improvement over the mainline on the allocation metric (higher is better).

    ``lo``/``hi``: the anytime-valid interval; ``est``: the estimate; nan when not judged yet.
    """

    name: str
    lo: float = math.nan
    est: float = math.nan
    hi: float = math.nan
    may_grow: bool = True  # False while a metric is judged worse (the share may only shrink)
    # may another contender be retired because it cannot beat this one (a rolled-back or
    # guardrail-worse candidate is no yardstick)
    yardstick: bool = True

    @property
    def judged(self) -> bool:
        return math.isfinite(self.est) and (math.isfinite(self.lo) or math.isfinite(self.hi))


@dataclass(frozen=True)
class Params:
    budget: float  # all candidates together (1 - the mainline's floor, capped by maxCandidateShare)
    max_step: float  # the most a share moves per interval
    start: float  # a newly admitted candidate's first share
    min_share: float = 0.01  # a contender's least share
    beta: float = BETA
    retire_below_control: bool = True  # False with promotion whenNoRegression (a candidate need not beat it)


@dataclass
class Allocation:
    shares: dict[str, float] = field(default_factory=dict)
    targets: dict[str, float] = field(default_factory=dict)
    best_probability: dict[str, float] = field(default_factory=dict)
    retire: dict[str, str] = field(default_factory=dict)  # name -> why ("Lost: cannot beat ...")


def improvement(mv: MetricVerdict) -> tuple[float, float, float]:
    """(lo, est, hi) of a metric's change oriented so that higher is better."""
    lo, hi = mv.ci
    if mv.harm == "increase":
        return (-hi, -mv.estimate, -lo)
    return (lo, mv.estimate, hi)


def whole_service(vv: Any, metric: str) -> MetricVerdict | None:
    """The whole-service verdict of ``metric`` (the objective's entry when it is also a guardrail)."""
    found = None
    for mv in vv.metrics.values():
        if mv.metric == metric and getattr(mv, "route", None) is None:
            if mv.role == "objective":
                return mv
            found = found or mv
    return found


def arms_from_verdict(verdict: Verdict, metric: str, names: list[str] | None = None) -> dict[str, Arm]:
    """The contenders' arms on ``metric``, from a judge verdict."""
    out = {}
    for n, vv in verdict.variants.items():
        if names is not None and n not in names:
            continue
        mv = whole_service(vv, metric)
        worse = any(m.state == "worse" for m in vv.metrics.values())
        guard_worse = any(m.state == "worse" and m.role == "guardrail" for m in vv.metrics.values())
        if mv is None or not vv.eligible:
            out[n] = Arm(n, may_grow=not worse, yardstick=not guard_worse and vv.status != "rolled_back")
            continue
        lo, est, hi = improvement(mv)
        out[n] = Arm(n, lo, est, hi, may_grow=not worse, yardstick=not guard_worse and vv.status != "rolled_back")
    return out


def describe(x: float, kind: str, scale: str = "difference") -> str:
    """A change in the metric's units: points for rates, percent for ratios."""
    if not math.isfinite(x):
        return "unknown"
    if scale == "ratio" or kind == "latency":
        return f"{x * 100:+.1f}%"
    if kind in ("error_rate", "proportion"):
        return f"{x * 100:+.2f} points"
    return f"{x:+.4g}"


def eliminate(
    arms: dict[str, Arm],
    metric: str,
    control: str,
    *,
    kind: str = "proportion",
    harm: str = "decrease",
    below_control: bool = True,
) -> dict[str, str]:
    """The contenders that can no longer be the best, and why (successive elimination / LUCB).

    ``i`` is out when its upper bound is below zero (it cannot beat the mainline; only when
    ``below_control``) or below the lower bound of a yardstick contender ``j`` (it cannot beat
    ``j``).  The reason states the bounds in the metric's own direction.
    """
    judged = {n: a for n, a in arms.items() if a.judged}
    out: dict[str, str] = {}
    bound_word = "upper bound" if harm == "decrease" else "lower bound"

    def native(x: float) -> float:  # improvement back to the metric's change
        return x if harm == "decrease" else -x

    for n, a in judged.items():
        hi = a.hi if math.isfinite(a.hi) else math.inf
        if below_control and hi < 0:
            out[n] = (
                f"Lost: cannot beat {control} on {metric}, {bound_word} {describe(native(hi), kind)} "
                f"(the change's anytime-valid interval excludes no change)"
            )
            continue
        rivals = [
            (b.lo, m)
            for m, b in judged.items()
            if m != n and b.yardstick and math.isfinite(b.lo) and hi < b.lo and b.lo > -math.inf
        ]
        if rivals:
            lo_j, j = max(rivals)
            out[n] = (
                f"Lost: cannot beat {j} on {metric}, {bound_word} {describe(native(hi), kind)} "
                f"vs {j}'s {'lower' if harm == 'decrease' else 'upper'} bound {describe(native(lo_j), kind)}"
            )
    return out


def best_probabilities(arms: list[Arm], z: float = Z_WIDTH) -> dict[str, float]:
    """P(arm i is the best) under independent normal approximations N(est_i, s_i^2), with ``s_i``
    from the interval's width (half-width / ``z``); by quadrature on a grid."""
    if not arms:
        return {}
    mu = np.array([a.est for a in arms], dtype=float)
    sd = []
    for a in arms:
        if math.isfinite(a.lo) and math.isfinite(a.hi):
            w = (a.hi - a.lo) / 2
        else:
            w = abs((a.hi if math.isfinite(a.hi) else a.lo) - a.est)
        sd.append(max(w / z, 1e-12))
    s = np.array(sd)
    if len(arms) == 1:
        return {arms[0].name: 1.0}
    x = np.linspace(float(np.min(mu - 8 * s)), float(np.max(mu + 8 * s)), _GRID)
    dx = x[1] - x[0]
    zs = (x[None, :] - mu[:, None]) / s[:, None]
    log_cdf = norm.logcdf(zs)  # arms x grid
    pdf = norm.pdf(zs) / s[:, None]
    total = log_cdf.sum(axis=0)
    p = (pdf * np.exp(total[None, :] - log_cdf)).sum(axis=1) * dx
    p = np.clip(p, 0.0, None)
    if p.sum() <= 0:
        p = np.full(len(arms), 1.0 / len(arms))
    p = p / p.sum()
    return {a.name: float(v) for a, v in zip(arms, p)}


def top_two(p: dict[str, float], beta: float = BETA) -> dict[str, float]:
    """Top-two Thompson sampling's selection probabilities (Russo 2020, Section 4):
    ``psi_i = p_i (beta + (1 - beta) sum_{j != i} p_j / (1 - p_j))``, normalised."""
    if len(p) == 1:
        return {n: 1.0 for n in p}
    q = {n: min(v, 1 - 1e-12) for n, v in p.items()}
    odds = {n: v / (1 - v) for n, v in q.items()}
    total_odds = sum(odds.values())
    psi = {n: v * (beta + (1 - beta) * (total_odds - odds[n])) for n, v in q.items()}
    s = sum(psi.values())
    if s <= 0:
        return {n: 1.0 / len(p) for n in p}
    return {n: v / s for n, v in psi.items()}


def allocate(arms: dict[str, Arm], previous: dict[str, float], params: Params) -> Allocation:
    """The next shares of the contenders ``arms`` (retired ones already removed by the caller).

    Until every contender has an interval the target is an equal split (successive
    elimination's uniform phase); then top-two Thompson sampling's selection probabilities,
    each contender kept at ``min_share`` at least.  Each share moves toward its target by at
    most ``max_step``; one that may not grow keeps at most its share; the total stays within
    ``budget``.
    """
    out = Allocation()
    names = list(arms)
    if not names:
        return out
    n = len(names)
    budget = params.budget
    floor = min(params.min_share, budget / n)
    if all(arms[x].judged for x in names):
        p = best_probabilities([arms[x] for x in names])
        psi = top_two(p, params.beta)
        out.best_probability = p
        out.targets = {x: floor + (budget - n * floor) * psi[x] for x in names}
    else:
        out.targets = {x: budget / n for x in names}
    new: dict[str, float] = {}
    for x in names:
        prev = previous.get(x)
        if prev is None or prev <= 0:
            new[x] = min(params.start, budget / n)
            continue
        delta = max(-params.max_step, min(params.max_step, out.targets[x] - prev))
        if delta > 0 and not arms[x].may_grow:
            delta = 0.0
        new[x] = max(0.0, prev + delta)
    total = sum(new.values())
    if total > budget + 1e-12:
        # take the excess from the growth first, then from everyone in proportion
        grow = {x: new[x] - previous.get(x, 0.0) for x in names if new[x] > previous.get(x, 0.0)}
        excess = total - budget
        g = sum(grow.values())
        if g > 0:
            cut = min(1.0, excess / g)
            for x, d in grow.items():
                new[x] -= d * cut
            excess -= g * cut
        if excess > 1e-12:
            scale = budget / sum(new.values())
            new = {x: v * scale for x, v in new.items()}
    out.shares = {x: round(v, 6) for x, v in new.items()}
    return out
