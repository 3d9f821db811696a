"""The decision logic of the controller: pure, data in and actions out.

``reconcile(policy, state, observations) -> Plan`` looks at what the user
asked for (the :class:`Policy` taken from the Bakeoff and Variant resources),
what the controller already did (:class:`ControllerState`, rebuilt from the
journal after a restart), and what it sees now (:class:`Observations`: which
workloads are healthy or have failed, gate results, the judge's latest
decision, approvals), and returns the new state, the actions a platform
carries out (start a workload, set the traffic split, retire a workload) and
the events to record.  No I/O, no clock: tests feed it tables of situations.

Rules, in the order they are applied on every pass:

1. A workload that failed (crashed, or never became healthy) is out of the
   split at once; a candidate that failed is rolled back (``failed`` set).
2. A Pending candidate whose gate blocks it becomes Gated and never gets
   traffic; otherwise its workload is started, and once healthy it is
   admitted (Serving) on the first ramp step.
3. The judge's verdict: every candidate it rolls back leaves the split; a
   promotion makes the winner the mainline (all traffic; every other workload
   retired) — with ``promotion: manual`` the winner first waits (phase
   Winner) for an approval; a stop leaves the mainline with all traffic.
   With ``promotion: whenNoRegression`` a candidate the judge finds within
   tolerance on every guardrail (after minSamples; no improvement needed) is
   promoted even while the judge itself would go on.
   A halt (a person's abort, or load that fails on every variant) stops the
   bake-off without a winner.
4. When no candidate is left that could still win, the bake-off stops
   without a winner.
5. Serving candidates move up one ramp step only on evidence: at least
   ``stepInterval`` on their step, the judge has counted at least
   ``minSamples`` of their requests since the step began, and no metric is
   judged worse.  Missing evidence holds the ramp; a candidate whose judged
   request count has not grown for ``noDataTimeout`` (no router data, or no
   request reaches it) is rolled back, saying so.  A candidate's share is its
   step, capped so that all candidates together stay within
   ``maxCandidateShare``.

Promotions and stops are final: once the state says so, reconcile only keeps
the final split in place.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from bakeoff.judge.allocation import Arm, Params, allocate, describe, eliminate, improvement

# Variant phases (the resource schema's status.phase)
PENDING, GATED, SERVING, WINNER, PROMOTED, ROLLED_BACK, LOST = (
    "Pending",
    "Gated",
    "Serving",
    "Winner",
    "Promoted",
    "RolledBack",
    "Lost",
)
ACTIVE = (PENDING, SERVING, WINNER)
# Bakeoff phases
RUNNING, AWAITING_APPROVAL, DONE_PROMOTED, DONE_STOPPED = "Running", "AwaitingApproval", "Promoted", "Stopped"
FINAL = (DONE_PROMOTED, DONE_STOPPED)
SHARE_EPSILON = 1e-9


@dataclass(frozen=True)
class Policy:
    """The parts of the Bakeoff spec the decision logic needs."""

    mainline: str
    steps: tuple[float, ...] = (0.05, 0.1, 0.2)
    step_interval: float = 60.0
    max_candidate_share: float = 0.5
    promotion: str = "auto"  # auto | manual | whenNoRegression
    min_samples: int = 0  # judged requests a candidate needs on its step before the next (spec.judge.minSamples)
    no_data_timeout: float | None = 300.0  # seconds without new evidence before a rollback (None: never)
    allocation: str = "fixed"  # fixed (the ramp of steps) | adaptive (bakeoff.judge.allocation)
    mainline_floor: float = 0.5  # adaptive: the mainline's least share
    max_step: float = 0.1  # adaptive: the most a candidate's share moves per stepInterval
    tie_break: str | None = None  # the metric whose estimate picks among several promotable candidates


@dataclass
class VariantState:
    name: str
    phase: str = PENDING
    step: int = -1  # index into Policy.steps; -1 before admission
    step_since: float | None = None
    share: float = 0.0
    reason: str = ""
    failed: bool = False
    # Evidence for the ramp: the judge's request count for this candidate when its step began, the
    # count last seen, and when that count last grew (or the step began).
    step_requests: int = 0
    seen_requests: int = 0
    progress_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "phase": self.phase,
            "step": self.step,
            "share": self.share,
            "reason": self.reason,
            "failed": self.failed,
        }


@dataclass
class ControllerState:
    bakeoff: str
    mainline: str  # the variant that is mainline now (the winner after a promotion)
    variants: dict[str, VariantState]
    phase: str = RUNNING
    decision: dict[str, Any] | None = None  # {"action", "winner", "reason", "at"} once final
    weights: dict[str, float] = field(default_factory=dict)  # the split last asked for
    started: set[str] = field(default_factory=set)  # runtime only: workloads asked to start
    retired: set[str] = field(default_factory=set)  # runtime only: workloads asked to stop
    mainline_failed: str | None = None

    @classmethod
    def new(cls, bakeoff: str, mainline: str, candidates: list[str]) -> ControllerState:
        return cls(bakeoff=bakeoff, mainline=mainline, variants={n: VariantState(n) for n in candidates})

    def to_json(self) -> dict[str, Any]:
        return {
            "bakeoff": self.bakeoff,
            "phase": self.phase,
            "mainline": self.mainline,
            "decision": self.decision,
            "weights": self.weights,
            "mainline_failed": self.mainline_failed,
            "variants": {n: v.to_json() for n, v in self.variants.items()},
        }


@dataclass(frozen=True)
class JudgeDecision:
    """What reconcile needs of a judge verdict (judge.verdict.Decision plus reasons)."""

    action: str = "continue"  # continue | rollback | promote | stop
    rollback: tuple[str, ...] = ()
    winner: str | None = None
    reason: str = ""
    reasons: dict[str, str] = field(default_factory=dict)  # per rolled-back variant
    # candidates being judged (minSamples reached) whose every guardrail is within tolerance
    no_regression: tuple[str, ...] = ()
    requests: dict[str, int] = field(default_factory=dict)  # requests judged so far, per variant
    worse: frozenset[str] = frozenset()  # candidates with a metric judged worse
    # candidates with a guardrail judged worse, and why: acted on in every phase (the judge itself
    # stops adding rollbacks once it has picked a winner, which may wait for approval)
    guardrail_worse: dict[str, str] = field(default_factory=dict)
    # per candidate judged (minSamples reached) and metric (whole service): its change oriented so
    # that higher is better, (lo, estimate, hi) of the anytime-valid interval -- adaptive allocation
    # and the tie-break read these
    improvements: dict[str, dict[str, tuple[float, float, float]]] = field(default_factory=dict)
    metric_kinds: dict[str, tuple[str, str]] = field(default_factory=dict)  # metric -> (kind, harm)
    objective: str | None = None

    @classmethod
    def from_verdict(cls, verdict: Any) -> JudgeDecision:
        d = verdict.decision
        reasons = {n: vv.reason for n, vv in verdict.variants.items() if vv.reason}
        passing = tuple(
            n
            for n, vv in verdict.variants.items()
            if vv.status in ("judging", "winner")
            and any(mv.role == "guardrail" for mv in vv.metrics.values())
            # the whole-service (route-stratified) tests decide promotion; a route's own test can
            # only roll back (a quiet route such as "other" may never gather evidence)
            and all(
                mv.state in ("better", "non_inferior")
                for mv in vv.metrics.values()
                if mv.role == "guardrail" and getattr(mv, "route", None) is None
            )
        )
        requests = {n: int(vv.requests) for n, vv in verdict.variants.items()}
        worse = frozenset(
            n for n, vv in verdict.variants.items() if any(m.state == "worse" for m in vv.metrics.values())
        )
        guardrail_worse = {
            n: f"worse than tolerated: {', '.join(vv.regressions) or 'a guardrail'} in variant {n}"
            for n, vv in verdict.variants.items()
            if any(m.state == "worse" and m.role == "guardrail" for m in vv.metrics.values())
        }
        improvements: dict[str, dict[str, tuple[float, float, float]]] = {}
        kinds: dict[str, tuple[str, str]] = {}
        objective = None
        for n, vv in verdict.variants.items():
            for mv in vv.metrics.values():
                if getattr(mv, "route", None) is not None:
                    continue
                kinds.setdefault(mv.metric, (mv.kind, mv.harm))
                if mv.role == "objective":
                    objective = mv.metric
                if vv.eligible and (mv.role == "objective" or mv.metric not in improvements.get(n, {})):
                    improvements.setdefault(n, {})[mv.metric] = improvement(mv)
        return cls(
            d.action,
            tuple(d.rollback),
            d.winner,
            d.reason,
            reasons,
            passing,
            requests,
            worse,
            guardrail_worse,
            improvements,
            kinds,
            objective,
        )


@dataclass(frozen=True)
class Observations:
    now: float
    ready: frozenset[str] = frozenset()  # workloads started and healthy
    failed: dict[str, str] = field(default_factory=dict)  # workload -> why it failed
    gates: dict[str, str | None] = field(default_factory=dict)  # candidate -> None (passed) or why blocked
    verdict: JudgeDecision | None = None
    approved: frozenset[str] = frozenset()  # winners a person approved (promotion: manual)
    halt: str | None = None  # stop without a winner: why (a person's abort, load failing everywhere)
    halt_cause: str = "aborted"  # aborted | traffic (the exit code tells them apart)
    no_data: str = ""  # why the latest look brought no data ("" when it did); the verdict is then stale


@dataclass(frozen=True)
class Action:
    kind: str  # start | route | retire
    variant: str | None = None
    weights: dict[str, float] | None = None
    reason: str = ""


@dataclass
class Plan:
    state: ControllerState
    actions: list[Action] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


def candidate_shares(policy: Policy, state: ControllerState, ready: frozenset[str]) -> dict[str, float]:
    """Each serving, healthy candidate's share: its step, capped so the total stays within the cap
    (with allocation: adaptive, the share the allocation gave it)."""
    live = [v for v in state.variants.values() if v.phase in (SERVING, WINNER) and v.name in ready and v.step >= 0]
    if not live:
        return {}
    if policy.allocation == "adaptive":
        return {v.name: v.share for v in live}
    cap = policy.max_candidate_share / len(live)
    return {v.name: min(policy.steps[min(v.step, len(policy.steps) - 1)], cap) for v in live}


def reconcile(policy: Policy, state: ControllerState, obs: Observations) -> Plan:
    st = copy.deepcopy(state)
    plan = Plan(st)
    now = obs.now

    def event(kind: str, variant: str | None, reason: str = "", **extra: Any) -> None:
        plan.events.append({"type": kind, "variant": variant, "reason": reason, **extra})

    def retire(name: str, reason: str) -> None:
        if name not in st.retired:
            st.retired.add(name)
            plan.actions.append(Action("retire", name, reason=reason))

    def start(name: str) -> None:
        if name not in st.started and name not in obs.failed:
            st.started.add(name)
            plan.actions.append(Action("start", name))

    # 0. the mainline's workload
    if st.mainline in obs.failed and st.mainline_failed is None:
        st.mainline_failed = obs.failed[st.mainline]
        event("mainline_failed", st.mainline, obs.failed[st.mainline])
    start(st.mainline)

    if st.phase not in FINAL:
        # 1. failed workloads leave the split
        for name, why in obs.failed.items():
            v = st.variants.get(name)
            if v is not None and v.phase in ACTIVE and not v.failed:
                was = v.phase
                v.phase, v.failed, v.reason, v.share = ROLLED_BACK, True, f"failed: {why}", 0.0
                event("failed", name, why, previous=was, phase=ROLLED_BACK)
                retire(name, "failed")

        # 2. gates, start, admission
        for v in st.variants.values():
            if v.phase == PENDING:
                blocked = obs.gates.get(v.name)
                if blocked:
                    v.phase, v.reason = GATED, blocked
                    event("gated", v.name, blocked, phase=GATED)
                    continue
                if v.name not in obs.gates:
                    continue  # gate not evaluated yet
                start(v.name)
                if v.name in obs.ready:
                    v.phase, v.step, v.step_since, v.reason = SERVING, 0, now, ""
                    n = obs.verdict.requests.get(v.name, 0) if obs.verdict is not None else 0
                    v.step_requests = v.seen_requests = n
                    v.progress_at = now
                    event("admitted", v.name, "healthy and gate passed", phase=SERVING, step=0)
            elif v.phase in (SERVING, WINNER):
                start(v.name)  # after a restart: bring the workload back up

        # 3. the judge's verdict (or a halt)
        d = obs.verdict
        if obs.halt:
            _stop(st, obs.halt, now, event, retire, cause=obs.halt_cause)
            d = None
        if d is not None and policy.promotion == "whenNoRegression" and d.action in ("continue", "rollback"):
            ok = [n for n in d.no_regression if n not in d.rollback and n in obs.ready]
            ok = [n for n in ok if n in st.variants and st.variants[n].phase == SERVING]
            pick, why = _tie_break(policy, st, d, ok, obs) if ok else (None, "")
            if pick is not None:
                d = JudgeDecision(  # the rollbacks of this verdict still apply (below)
                    "promote",
                    d.rollback,
                    pick,
                    f"{pick} is within tolerance on every guardrail (promotion: whenNoRegression){why}",
                    d.reasons,
                    d.no_regression,
                )
        if d is not None:
            # guardrails act in every phase: a candidate (even a winner waiting for approval) that
            # the judge finds worse on one is rolled back, whatever else is waiting
            extra = [n for n in d.guardrail_worse if n not in d.rollback]
            for name in (*d.rollback, *extra):
                v = st.variants.get(name)
                if v is not None and v.phase in (SERVING, WINNER, PENDING):
                    why = d.reasons.get(name) or d.guardrail_worse.get(name) or "judged worse than tolerated"
                    v.phase, v.reason, v.share = ROLLED_BACK, why, 0.0
                    event("rolled_back", name, why, phase=ROLLED_BACK)
                    retire(name, "rolled back")
            if d.action == "promote" and d.winner and policy.allocation == "adaptive" and st.phase == RUNNING:
                # the candidates the allocation already rules out leave with that reason (their bound
                # on the objective), not as "<winner> won", whichever of the two a look reaches first
                _retire_lost(policy, st, obs, event, retire, keep=d.winner)
            if d.action == "promote" and d.winner:
                w = st.variants.get(d.winner)
                if w is not None and w.phase in (SERVING, WINNER) and d.winner in obs.ready:
                    if policy.promotion == "manual" and d.winner not in obs.approved:
                        if w.phase != WINNER:
                            w.phase, w.reason = WINNER, d.reason
                            st.phase = AWAITING_APPROVAL
                            event("winner", w.name, d.reason + "; waiting for approval", phase=WINNER)
                    else:
                        _promote(st, w, d.reason, now, event, retire)
                elif st.phase != DONE_STOPPED:
                    why = (
                        f"the judge picked {d.winner}, which is no longer serving "
                        f"({w.phase if w else 'unknown'}); {st.mainline} stays"
                    )
                    _stop(st, why, now, event, retire)
            elif d.action == "stop":
                _stop(st, d.reason or "the judge stopped without a winner", now, event, retire)

        # 3b. evidence: a candidate that brings none for noDataTimeout is rolled back
        if st.phase == RUNNING:
            for v in st.variants.values():
                if v.phase == SERVING and _no_evidence(policy, v, obs):
                    assert policy.no_data_timeout is not None
                    why = f"no evidence for {policy.no_data_timeout:g}s (spec.routing.noDataTimeout): " + (
                        obs.no_data or f"the judge counted no new request of {v.name}"
                    )
                    v.phase, v.reason, v.share = ROLLED_BACK, why, 0.0
                    event("rolled_back", v.name, why, phase=ROLLED_BACK)
                    retire(v.name, "no evidence")

        # 4. nobody left who could win
        if (
            st.phase == RUNNING
            and st.variants
            and all(v.phase in (GATED, ROLLED_BACK, LOST) for v in st.variants.values())
        ):
            _stop(st, f"no candidate left that could win; {st.mainline} stays", now, event, retire)

        # 5. ramp (or, with allocation: adaptive, the allocation of bakeoff.judge.allocation)
        if st.phase == RUNNING and policy.allocation == "adaptive":
            _adapt(policy, st, obs, event, retire)
        elif st.phase == RUNNING:
            last = len(policy.steps) - 1
            for v in st.variants.values():
                if v.phase != SERVING or v.name not in obs.ready or v.step >= last:
                    continue
                if v.step_since is None:
                    v.step_since = now
                elif now - v.step_since >= policy.step_interval:
                    held = _ramp_held(policy, v, obs)
                    if held:
                        v.reason = held
                        continue
                    judged = v.seen_requests - v.step_requests
                    # the time it actually spent there (longer than stepInterval after a failover or a hold)
                    held_for = now - v.step_since
                    v.step, v.step_since, v.reason = v.step + 1, now, ""
                    v.step_requests, v.progress_at = v.seen_requests, now
                    event(
                        "ramped",
                        v.name,
                        f"{round(held_for, 1):g}s (stepInterval {policy.step_interval:g}s) and {judged} judged "
                        f"requests on the previous step",
                        step=v.step,
                    )

    # 6. the split
    if st.phase == DONE_PROMOTED:
        weights = {st.mainline: 1.0} if st.mainline in obs.ready else {}
    elif st.mainline not in obs.ready:
        weights = {}  # nothing to send traffic to yet
    elif st.phase == DONE_STOPPED:
        weights = {st.mainline: 1.0}
    else:
        shares = candidate_shares(policy, st, obs.ready)
        weights = {st.mainline: round(max(0.0, 1.0 - sum(shares.values())), 9), **shares}
        weights = {k: w for k, w in weights.items() if w > SHARE_EPSILON} or {st.mainline: 1.0}
    for v in st.variants.values():
        v.share = weights.get(v.name, 0.0)
    if weights and not _same(weights, st.weights):
        st.weights = weights
        plan.actions.append(Action("route", weights=dict(weights)))
    for e in plan.events:
        if e["type"] in ("admitted", "ramped") and e["variant"] in st.variants:
            e["share"] = st.variants[e["variant"]].share
    return plan


def adaptive_budget(policy: Policy) -> float:
    """All candidates together under allocation: adaptive: at most maxCandidateShare, and the mainline
    keeps at least mainlineFloor."""
    return max(0.0, min(policy.max_candidate_share, 1.0 - policy.mainline_floor))


def allocation_metric(policy: Policy, d: JudgeDecision | None) -> str | None:
    """The metric adaptive allocation compares candidates on: the objective, else the tie-break metric."""
    if d is not None and d.objective:
        return d.objective
    return policy.tie_break


def _adapt(policy: Policy, st: ControllerState, obs: Observations, event, retire) -> None:
    """allocation: adaptive (bakeoff.judge.allocation): retire the candidates that can no longer win,
    and once per stepInterval move each remaining share toward its target by at most maxStep.
    A newly admitted candidate starts at the first step (within the budget) at once."""
    now = obs.now
    arms, live = _retire_lost(policy, st, obs, event, retire)
    if not live:
        return
    budget = adaptive_budget(policy)
    metric = allocation_metric(policy, obs.verdict)
    new = [v for v in live if v.share <= SHARE_EPSILON]
    old = [v for v in live if v.share > SHARE_EPSILON]
    if new:
        room = max(0.0, budget - sum(v.share for v in old))
        first = min(policy.steps[0], budget / len(live), room / len(new))
        for v in new:
            v.share, v.step, v.step_since = round(first, 6), max(v.step, 0), now
    since = [v.step_since for v in old if v.step_since is not None]
    if not old or (since and now - max(since) < policy.step_interval):
        return
    params = Params(
        budget=budget,
        max_step=policy.max_step,
        start=policy.steps[0],
        min_share=min(0.01, budget / (4 * len(live))),
        retire_below_control=policy.promotion != "whenNoRegression",
    )
    before = {v.name: v.share for v in live}
    alloc = allocate(arms, before, params)
    for v in live:
        v.share, v.step_since = alloc.shares.get(v.name, v.share), now
    if not _same({v.name: v.share for v in live}, before):
        moved = ", ".join(f"{v.name} {before[v.name]:.1%}->{v.share:.1%}" for v in live if v.share != before[v.name])
        event(
            "allocated",
            None,
            f"adaptive allocation on {metric or 'no metric yet'}: {moved}",
            shares={v.name: v.share for v in live},
            targets={k: round(x, 6) for k, x in alloc.targets.items()},
            best_probability={k: round(x, 4) for k, x in alloc.best_probability.items()},
        )


def _retire_lost(
    policy: Policy, st: ControllerState, obs: Observations, event, retire, keep: str | None = None
) -> tuple[dict[str, Arm], list[VariantState]]:
    """The elimination half of allocation: adaptive: retire (phase Lost, ``retired_by: allocation``)
    the serving candidates that can no longer win, except ``keep``; the remaining arms and variants."""
    d = obs.verdict
    live = [v for v in st.variants.values() if v.phase == SERVING and v.name in obs.ready]
    metric = allocation_metric(policy, d)
    fresh = d is not None and not obs.no_data
    arms: dict[str, Arm] = {}
    for v in live:
        held = not fresh or (d is not None and v.name in d.worse)
        yard = d is not None and v.name not in d.guardrail_worse and v.name not in d.rollback
        imp = d.improvements.get(v.name, {}).get(metric) if fresh and d is not None and metric else None
        arms[v.name] = Arm(v.name, *imp, may_grow=not held, yardstick=yard) if imp else Arm(v.name, may_grow=not held)
    if fresh and d is not None and metric:
        kind, harm = d.metric_kinds.get(metric, ("proportion", "decrease"))
        lost = eliminate(
            arms, metric, st.mainline, kind=kind, harm=harm, below_control=policy.promotion != "whenNoRegression"
        )
        for name, why in lost.items():
            if name == keep:
                continue
            v = st.variants[name]
            v.phase, v.reason, v.share = LOST, why, 0.0
            event("lost", name, why, phase=LOST, retired_by="allocation")
            retire(name, "lost")
            arms.pop(name)
            live.remove(v)
    return arms, live


def _tie_break(
    policy: Policy, st: ControllerState, d: JudgeDecision, ok: list[str], obs: Observations
) -> tuple[str | None, str]:
    """With promotion: whenNoRegression, the candidate to promote among those within tolerance
    (``ok``), by the tie-break metric's estimate (spec.promotion.tieBreak, else the objective);
    (None, "") while another serving candidate is already shown better on that metric than the
    pick (its lower bound above the pick's upper bound) and may still qualify."""
    metric = policy.tie_break or d.objective
    if not metric:
        return ok[0], ""
    nan = (float("nan"),) * 3

    def imp(n: str) -> tuple[float, float, float]:
        return d.improvements.get(n, {}).get(metric) or nan

    def key(n: str) -> tuple[float, str]:
        est = imp(n)[1]
        return (-est if est == est else float("inf"), n)

    ranked = sorted(ok, key=key)
    pick = ranked[0]
    _, _, hi = imp(pick)
    for v in st.variants.values():
        if (
            v.phase != SERVING
            or v.name in ok
            or v.name not in obs.ready
            or v.name in d.guardrail_worse
            or v.name in d.rollback
        ):
            continue
        lo = imp(v.name)[0]
        if lo == lo and hi == hi and lo > hi:
            return None, ""  # a candidate surely better on the tie-break metric may still qualify: wait for it
    if len(ranked) == 1:
        return pick, ""
    kind, _harm = d.metric_kinds.get(metric, ("", "increase"))
    sign = 1.0 if _harm == "decrease" else -1.0
    others = ", ".join(f"{n} {describe(sign * imp(n)[1], kind)}" for n in ranked[1:])
    return pick, f"; chosen by tieBreak {metric} (estimate {describe(sign * imp(pick)[1], kind)}; {others})"


def _no_evidence(policy: Policy, v: VariantState, obs: Observations) -> bool:
    """Track the candidate's judged request count; True once it has not grown for noDataTimeout."""
    n = obs.verdict.requests.get(v.name) if obs.verdict is not None and not obs.no_data else None
    if n is not None:
        if n < v.step_requests:  # the judge started afresh (its config changed): count from here
            v.step_requests = n
        if n > v.seen_requests or v.progress_at is None:
            v.progress_at = obs.now
        v.seen_requests = n
    elif v.progress_at is None:
        v.progress_at = obs.now
    return policy.no_data_timeout is not None and obs.now - v.progress_at >= policy.no_data_timeout


def _ramp_held(policy: Policy, v: VariantState, obs: Observations) -> str:
    """Why the candidate may not move up a step now ("" when it may)."""
    d = obs.verdict
    if obs.no_data or d is None or v.name not in d.requests:
        return "ramp held: no judge data" + (f" ({obs.no_data})" if obs.no_data else "")
    if v.name in d.worse:
        return "ramp held: a metric is judged worse"
    if v.seen_requests - v.step_requests < policy.min_samples:
        return f"ramp held: waiting for {policy.min_samples} judged requests on this step"
    return ""


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) <= SHARE_EPSILON for k in a)


def _promote(st: ControllerState, w: VariantState, reason: str, now: float, event, retire) -> None:
    old = st.mainline
    w.phase, w.reason, w.share = PROMOTED, reason, 1.0
    for v in st.variants.values():
        if v is not w and v.phase in ACTIVE:
            v.phase, v.reason = LOST, f"{w.name} won"
            event("lost", v.name, v.reason, phase=LOST)
            retire(v.name, "lost")
    st.phase = DONE_PROMOTED
    st.mainline = w.name
    st.decision = {"action": "promote", "winner": w.name, "previous_mainline": old, "reason": reason, "at": now}
    event("promoted", w.name, reason, phase=PROMOTED, previous_mainline=old)
    retire(old, f"replaced by {w.name}")


def _stop(st: ControllerState, reason: str, now: float, event, retire, cause: str = "judge") -> None:
    for v in st.variants.values():
        if v.phase in ACTIVE:
            v.phase, v.reason = LOST, "stopped without a winner"
            event("lost", v.name, v.reason, phase=LOST)
            retire(v.name, "lost")
    st.phase = DONE_STOPPED
    st.decision = {"action": "stop", "winner": None, "reason": reason, "at": now, "cause": cause}
    event("stopped", None, reason, cause=cause)


def replay(state: ControllerState, events: list[dict[str, Any]]) -> ControllerState:
    """Rebuild the state from journal events (after a restart)."""
    st = copy.deepcopy(state)
    for e in events:
        kind, name = e.get("type"), e.get("variant")
        v = st.variants.get(name) if name else None
        if kind == "admitted" and v is not None:
            v.phase, v.step = SERVING, int(e.get("step", 0))
        elif kind == "ramped" and v is not None:
            v.step = int(e.get("step", v.step + 1))
        elif kind in ("rolled_back", "failed") and v is not None:
            v.phase, v.reason, v.failed = ROLLED_BACK, e.get("reason", ""), kind == "failed"
        elif kind == "gated" and v is not None:
            v.phase, v.reason = GATED, e.get("reason", "")
        elif kind == "winner" and v is not None:
            v.phase = WINNER
            st.phase = AWAITING_APPROVAL
        elif kind == "lost" and v is not None:
            v.phase, v.reason = LOST, e.get("reason", "")
        elif kind == "promoted" and v is not None:
            v.phase = PROMOTED
            st.phase, st.mainline = DONE_PROMOTED, str(name)
            st.decision = {
                "action": "promote",
                "winner": name,
                "previous_mainline": e.get("previous_mainline"),
                "reason": e.get("reason", ""),
                "at": e.get("at"),
            }
        elif kind == "stopped":
            st.phase = DONE_STOPPED
            st.decision = {
                "action": "stop",
                "winner": None,
                "reason": e.get("reason", ""),
                "at": e.get("at"),
                "cause": e.get("cause", "judge"),
            }
        elif kind == "allocated":
            for n, share in (e.get("shares") or {}).items():
                if n in st.variants and isinstance(share, (int, float)):
                    st.variants[n].share = float(share)
        elif kind == "mainline_failed":
            pass  # a new run starts the mainline afresh
    st.started, st.retired, st.weights = set(), set(), {}
    return st


def attribute(events: list[dict[str, Any]], commit_of: Any) -> None:
    """Name the change behind each rollback in its reason ("... in variant slow, commit 3f2a9c1").

    The judge names metric, route and variant; only the caller knows the Variant's
    ``spec.change.commit``, so every figure a release engineer reads is attributable.
    """
    for e in events:
        if e.get("type") in ("rolled_back", "failed") and e.get("variant"):
            commit = commit_of(e["variant"])
            if commit and f"commit {commit}" not in (e.get("reason") or ""):
                e["reason"] = f"{e.get('reason') or 'rolled back'}, commit {commit}"
