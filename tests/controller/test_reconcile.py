"""The decision logic on tables of situations: data in, actions out (no processes, no clock)."""

from __future__ import annotations

import pytest

from bakeoff.controller.reconcile import (
    ControllerState,
    JudgeDecision,
    Observations,
    Policy,
    VariantState,
    reconcile,
    replay,
)

P = Policy(mainline="main", steps=(0.05, 0.1, 0.2), step_interval=10.0, max_candidate_share=0.3)
ALL_GATES = {"a": None, "b": None, "c": None}


def state(phase="Running", mainline="main", **variants) -> ControllerState:
    st = ControllerState(bakeoff="shop", mainline=mainline, variants={}, phase=phase)
    for name, (ph, step, since) in variants.items():
        st.variants[name] = VariantState(name, phase=ph, step=step, step_since=since)
    st.started = {"main", *variants}
    return st


def kinds(plan):
    return [(e["type"], e["variant"]) for e in plan.events]


def actions(plan):
    return [(a.kind, a.variant) for a in plan.actions if a.kind != "route"]


def route(plan):
    r = [a.weights for a in plan.actions if a.kind == "route"]
    return r[-1] if r else None


SERVING = ("Serving", 0, 100.0)

CASES = [
    # (id, state, observations, expected events, expected non-route actions, expected route or None)
    (
        "pending gate blocks",
        state(a=("Pending", -1, None)),
        Observations(now=100, ready=frozenset({"main"}), gates={"a": "gate: 2 error finding(s)"}),
        [("gated", "a"), ("stopped", None)],
        [],
        {"main": 1.0},
    ),
    (
        "pending gate passed: start",
        ControllerState("shop", "main", {"a": VariantState("a")}, started={"main"}),
        Observations(now=100, ready=frozenset({"main"}), gates={"a": None}),
        [],
        [("start", "a")],
        {"main": 1.0},
    ),
    (
        "healthy: admitted on the first step",
        state(a=("Pending", -1, None)),
        Observations(now=100, ready=frozenset({"main", "a"}), gates={"a": None}),
        [("admitted", "a")],
        [],
        {"main": 0.95, "a": 0.05},
    ),
    (
        "not on the step long enough: no ramp",
        state(a=("Serving", 0, 95.0)),
        Observations(now=100, ready=frozenset({"main", "a"}), gates={}),
        [],
        [],
        {"main": 0.95, "a": 0.05},
    ),
    (
        "ramp after stepInterval, with judged requests",
        state(a=("Serving", 0, 90.0)),
        Observations(now=100, ready=frozenset({"main", "a"}), gates={}, verdict=JudgeDecision(requests={"a": 10})),
        [("ramped", "a")],
        [],
        {"main": 0.9, "a": 0.1},
    ),
    (
        "last step: stays",
        state(a=("Serving", 2, 0.0)),
        Observations(now=100, ready=frozenset({"main", "a"}), gates={}),
        [],
        [],
        {"main": 0.8, "a": 0.2},
    ),
    (
        "blast-radius cap shared by candidates",
        state(a=("Serving", 2, 0.0), b=("Serving", 2, 0.0), c=("Serving", 0, 100.0)),
        Observations(now=100, ready=frozenset({"main", "a", "b", "c"}), gates={}),
        [],
        [],
        {"main": 0.75, "a": 0.1, "b": 0.1, "c": 0.05},
    ),
    (
        "mainline not healthy yet: no traffic",
        state(a=("Serving", 0, 100.0)),
        Observations(now=100, ready=frozenset({"a"}), gates={}),
        [],
        [],
        None,
    ),
    (
        "crash: out of the split, marked failed",
        state(a=SERVING, b=SERVING),
        Observations(now=100, ready=frozenset({"main", "b"}), failed={"a": "exited with code 1"}),
        [("failed", "a")],
        [("retire", "a")],
        {"main": 0.95, "b": 0.05},
    ),
    (
        "judge rolls back",
        state(a=SERVING, b=SERVING),
        Observations(
            now=100,
            ready=frozenset({"main", "a", "b"}),
            verdict=JudgeDecision("rollback", ("a",), reasons={"a": "worse than tolerated on error_rate"}),
        ),
        [("rolled_back", "a")],
        [("retire", "a")],
        {"main": 0.95, "b": 0.05},
    ),
    (
        "judge promotes (auto)",
        state(a=SERVING, b=SERVING),
        Observations(
            now=100, ready=frozenset({"main", "a", "b"}), verdict=JudgeDecision("promote", (), "b", "b is better")
        ),
        [("lost", "a"), ("promoted", "b")],
        [("retire", "a"), ("retire", "main")],
        {"b": 1.0},
    ),
    (
        "judge stops",
        state(a=SERVING),
        Observations(now=100, ready=frozenset({"main", "a"}), verdict=JudgeDecision("stop", (), None, "maxDuration")),
        [("lost", "a"), ("stopped", None)],
        [("retire", "a")],
        {"main": 1.0},
    ),
    (
        "winner crashed just before the promotion: stop, mainline stays",
        state(a=SERVING),
        Observations(
            now=100, ready=frozenset({"main"}), failed={"a": "exited"}, verdict=JudgeDecision("promote", (), "a", "")
        ),
        [("failed", "a"), ("stopped", None)],
        [("retire", "a")],
        {"main": 1.0},
    ),
    (
        "every candidate out: stop without a winner",
        state(a=("RolledBack", 0, None), b=("Gated", -1, None)),
        Observations(now=100, ready=frozenset({"main"})),
        [("stopped", None)],
        [],
        {"main": 1.0},
    ),
    (
        "promoted is final: a later verdict changes nothing",
        state(phase="Promoted", mainline="b", b=("Promoted", 0, None)),
        Observations(now=100, ready=frozenset({"b"}), verdict=JudgeDecision("promote", (), "b", "")),
        [],
        [],
        {"b": 1.0},
    ),
    (
        "stopped is final",
        state(phase="Stopped", a=("Lost", 0, None)),
        Observations(now=100, ready=frozenset({"main"}), verdict=JudgeDecision("promote", (), "a", "")),
        [],
        [],
        {"main": 1.0},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_reconcile_table(case):
    _, st, obs, events, acts, weights = case
    before = repr(st)
    plan = reconcile(P, st, obs)
    assert kinds(plan) == events
    assert actions(plan) == acts
    assert route(plan) == (pytest.approx(weights) if weights else None)
    assert repr(st) == before  # the input state is never modified


def test_manual_promotion_waits_for_approval_then_promotes_once():
    pol = Policy(mainline="main", steps=(0.1,), step_interval=1, max_candidate_share=0.5, promotion="manual")
    st = state(a=SERVING)
    v = JudgeDecision("promote", (), "a", "a is better")
    plan = reconcile(pol, st, Observations(now=1, ready=frozenset({"main", "a"}), verdict=v))
    assert kinds(plan) == [("winner", "a")] and plan.state.phase == "AwaitingApproval"
    assert route(plan) == {"main": 0.9, "a": 0.1}
    plan2 = reconcile(pol, plan.state, Observations(now=2, ready=frozenset({"main", "a"}), verdict=v))
    assert kinds(plan2) == []  # still waiting, no repeated event
    plan3 = reconcile(
        pol, plan2.state, Observations(now=3, ready=frozenset({"main", "a"}), verdict=v, approved=frozenset({"a"}))
    )
    assert kinds(plan3) == [("promoted", "a")] and route(plan3) == {"a": 1.0}
    plan4 = reconcile(
        pol, plan3.state, Observations(now=4, ready=frozenset({"main", "a"}), verdict=v, approved=frozenset({"a"}))
    )
    assert kinds(plan4) == []


def test_replay_rebuilds_the_state_and_a_recorded_promotion_is_final():
    base = ControllerState.new("shop", "main", ["a", "b"])
    events = [
        {"type": "admitted", "variant": "a", "step": 0},
        {"type": "admitted", "variant": "b", "step": 0},
        {"type": "ramped", "variant": "a", "step": 1},
        {"type": "rolled_back", "variant": "b", "reason": "worse"},
        {"type": "promoted", "variant": "a", "reason": "better", "previous_mainline": "main"},
    ]
    st = replay(base, events[:4])
    assert (st.variants["a"].phase, st.variants["a"].step) == ("Serving", 1)
    assert st.variants["b"].phase == "RolledBack" and st.phase == "Running"
    st = replay(base, events)
    assert st.phase == "Promoted" and st.mainline == "a" and st.decision["winner"] == "a"
    # after a restart the winner is started again, gets all traffic, and nothing is promoted twice
    plan = reconcile(P, st, Observations(now=1, ready=frozenset(), verdict=JudgeDecision("promote", (), "a", "")))
    assert actions(plan) == [("start", "a")] and kinds(plan) == []
    plan = reconcile(P, plan.state, Observations(now=2, ready=frozenset({"a"})))
    assert route(plan) == {"a": 1.0} and kinds(plan) == []


def test_a_failed_mainline_is_recorded_once():
    st = state(a=SERVING)
    obs = Observations(now=1, ready=frozenset({"a"}), failed={"main": "exited with code 1"})
    plan = reconcile(P, st, obs)
    assert kinds(plan) == [("mainline_failed", "main")]
    assert kinds(reconcile(P, plan.state, obs)) == []


def test_when_no_regression_promotes_a_candidate_within_every_guardrail_without_improvement():
    pol = Policy(mainline="main", steps=(0.5,), step_interval=1, max_candidate_share=1.0, promotion="whenNoRegression")
    ready = frozenset({"main", "a", "b"})
    st = state(a=SERVING, b=SERVING)
    # not yet: the judge has nobody within tolerance on every guardrail
    waiting = JudgeDecision("continue", (), None, "not enough evidence yet")
    assert kinds(reconcile(pol, st, Observations(now=1, ready=ready, verdict=waiting))) == []
    # b is rolled back in the same verdict in which a passes every guardrail: b leaves, a is promoted
    v = JudgeDecision("rollback", ("b",), None, "b: worse", {"b": "worse on latency_p50"}, no_regression=("a",))
    plan = reconcile(pol, st, Observations(now=2, ready=ready, verdict=v))
    assert kinds(plan) == [("rolled_back", "b"), ("promoted", "a")]
    assert "whenNoRegression" in plan.state.decision["reason"] and route(plan) == {"a": 1.0}
    # the same verdict under auto promotion promotes nobody: auto needs an improvement on the objective
    auto = Policy(mainline="main", steps=(0.5,), step_interval=1, max_candidate_share=1.0)
    assert kinds(reconcile(auto, st, Observations(now=2, ready=ready, verdict=v))) == [("rolled_back", "b")]


def test_a_halt_stops_without_a_winner_and_records_its_cause():
    st = state(a=SERVING)
    plan = reconcile(
        P, st, Observations(now=5, ready=frozenset({"main", "a"}), halt="most requests failed", halt_cause="traffic")
    )
    assert kinds(plan) == [("lost", "a"), ("stopped", None)]
    assert plan.state.decision["cause"] == "traffic" and route(plan) == {"main": 1.0}
    again = replay(state(a=SERVING), [{"type": "stopped", "variant": None, "reason": "x", "cause": "traffic"}])
    assert again.decision["cause"] == "traffic" and again.phase == "Stopped"


# -- the ramp moves on evidence only (issue 10 item 2) ------------------------------------
EP = Policy(mainline="main", steps=(0.05, 0.1, 0.2), step_interval=10.0, min_samples=300, no_data_timeout=120.0)
READY = frozenset({"main", "a"})


def serving(step_requests=0, seen=0, progress_at=90.0, step_since=90.0) -> ControllerState:
    st = state(a=("Serving", 0, step_since))
    v = st.variants["a"]
    v.step_requests, v.seen_requests, v.progress_at = step_requests, seen, progress_at
    return st


def judged(n: int, worse: bool = False) -> JudgeDecision:
    return JudgeDecision(requests={"main": 10 * n, "a": n}, worse=frozenset({"a"} if worse else ()))


@pytest.mark.parametrize(
    ("why", "obs", "held"),
    [
        ("no verdict yet", Observations(now=100, ready=READY), "no judge data"),
        (
            "the look failed: the last verdict is stale",
            Observations(now=100, ready=READY, verdict=judged(5000), no_data="no router endpoints"),
            "no judge data (no router endpoints)",
        ),
        ("too few requests on this step", Observations(now=100, ready=READY, verdict=judged(299)), "waiting for 300"),
        ("a metric is worse", Observations(now=100, ready=READY, verdict=judged(5000, worse=True)), "judged worse"),
    ],
)
def test_the_ramp_holds_without_evidence(why, obs, held):
    plan = reconcile(EP, serving(), obs)
    a = plan.state.variants["a"]
    assert a.step == 0 and a.phase == "Serving" and held in a.reason, why
    assert not any(e["type"] == "ramped" for e in plan.events)
    assert route(plan) == {"main": 0.95, "a": 0.05}


def test_the_ramp_counts_requests_since_the_step_began():
    # 1000 judged before this step, 250 on it: not enough; 300 on it: the next step
    st = serving(step_requests=1000, seen=1000)
    plan = reconcile(EP, st, Observations(now=100, ready=READY, verdict=judged(1250)))
    assert plan.state.variants["a"].step == 0
    plan = reconcile(EP, plan.state, Observations(now=101, ready=READY, verdict=judged(1300)))
    a = plan.state.variants["a"]
    assert a.step == 1 and a.step_requests == 1300 and a.step_since == 101 and a.reason == ""
    assert [e["type"] for e in plan.events] == ["ramped"] and "300 judged requests" in plan.events[0]["reason"]
    # the next step needs its own 300
    plan = reconcile(EP, plan.state, Observations(now=200, ready=READY, verdict=judged(1500)))
    assert plan.state.variants["a"].step == 1


def test_no_evidence_for_no_data_timeout_rolls_back_and_says_why():
    st = serving(progress_at=100.0)
    obs = Observations(now=219, ready=READY, verdict=None, no_data="no router endpoints")
    plan = reconcile(EP, st, obs)
    assert plan.state.variants["a"].phase == "Serving"  # 119 s: held
    plan = reconcile(EP, plan.state, Observations(now=220, ready=READY, no_data="no router endpoints"))
    a = plan.state.variants["a"]
    assert a.phase == "RolledBack" and not a.failed
    assert "noDataTimeout" in a.reason and "no router endpoints" in a.reason and "120s" in a.reason
    assert ("rolled_back", "a") in kinds(plan) and ("retire", "a") in actions(plan)
    assert route(plan) == {"main": 1.0}
    assert plan.state.phase == "Stopped"  # it was the only candidate


def test_growing_evidence_keeps_a_slow_candidate_alive():
    st = serving(seen=10, progress_at=0.0)
    # a request more than last time, just before the timeout: the clock restarts
    plan = reconcile(EP, st, Observations(now=119, ready=READY, verdict=judged(11)))
    assert plan.state.variants["a"].progress_at == 119
    plan = reconcile(EP, plan.state, Observations(now=200, ready=READY, verdict=judged(11)))
    assert plan.state.variants["a"].phase == "Serving"
    plan = reconcile(EP, plan.state, Observations(now=239, ready=READY, verdict=judged(11)))
    a = plan.state.variants["a"]
    assert a.phase == "RolledBack" and "the judge counted no new request of a" in a.reason


def test_no_timeout_configured_holds_forever():
    pol = Policy(mainline="main", steps=(0.05, 0.1), step_interval=10.0, min_samples=300, no_data_timeout=None)
    plan = reconcile(pol, serving(progress_at=0.0), Observations(now=10**6, ready=READY))
    assert plan.state.variants["a"].phase == "Serving" and plan.state.variants["a"].step == 0


def test_the_ramped_event_says_how_long_the_step_lasted():
    """Issue 16 item 15: after a failover (the new leader resumes from the recorded stepSince) the
    candidate spent longer than stepInterval on its step; the Ramped event says how long."""
    st = serving(step_requests=1000, seen=1000, step_since=40.0)  # the old leader started the step at 40
    plan = reconcile(EP, st, Observations(now=100, ready=READY, verdict=judged(1300)))
    (e,) = [e for e in plan.events if e["type"] == "ramped"]
    assert e["reason"].startswith("60s (stepInterval 10s) and 300 judged requests"), e["reason"]


# --- issue 19: whenNoRegression's tie-break, adaptive allocation -------------------------------


def _nr_decision(improvements, no_regression=("a", "b")):
    return JudgeDecision(
        "continue",
        no_regression=tuple(no_regression),
        requests={n: 1000 for n in improvements},
        improvements={n: {"latency_p50": imp} for n, imp in improvements.items()},
        metric_kinds={"latency_p50": ("latency", "increase")},
    )


def test_when_no_regression_several_within_tolerance_the_tie_break_metric_picks_not_the_order():
    policy = Policy(mainline="main", promotion="whenNoRegression", tie_break="latency_p50")
    st = state(a=SERVING, b=SERVING)
    # b is 35% faster than the mainline, a 2%; a comes first in every listing
    d = _nr_decision({"a": (-0.01, 0.02, 0.05), "b": (0.30, 0.35, 0.40)})
    plan = reconcile(policy, st, Observations(now=200, ready=frozenset({"main", "a", "b"}), gates={}, verdict=d))
    assert plan.state.decision["winner"] == "b", plan.state.decision
    assert "chosen by tieBreak latency_p50 (estimate -35.0%; a -2.0%)" in plan.state.decision["reason"]


def test_when_no_regression_waits_for_a_candidate_shown_better_on_the_tie_break_metric():
    policy = Policy(mainline="main", promotion="whenNoRegression", tie_break="latency_p50")
    st = state(a=SERVING, b=SERVING)
    # only a is within tolerance so far, but b is already surely faster: wait for b
    d = _nr_decision({"a": (-0.01, 0.02, 0.05), "b": (0.30, 0.35, 0.40)}, no_regression=("a",))
    plan = reconcile(policy, st, Observations(now=200, ready=frozenset({"main", "a", "b"}), gates={}, verdict=d))
    assert plan.state.decision is None and plan.state.phase == "Running"
    # once b is rolled back (worse on a guardrail), a is promoted
    d2 = JudgeDecision(
        "rollback",
        rollback=("b",),
        reasons={"b": "worse than tolerated: error_rate"},
        no_regression=("a",),
        improvements=d.improvements,
        metric_kinds=d.metric_kinds,
    )
    plan = reconcile(
        policy, plan.state, Observations(now=210, ready=frozenset({"main", "a", "b"}), gates={}, verdict=d2)
    )
    assert plan.state.decision["winner"] == "a"


def test_adaptive_allocation_retires_a_loser_moves_shares_by_max_step_and_replays():
    policy = Policy(
        mainline="main",
        allocation="adaptive",
        step_interval=10.0,
        max_candidate_share=0.6,
        mainline_floor=0.5,
        max_step=0.05,
    )
    st = state(a=SERVING, b=SERVING, c=SERVING)
    for v in st.variants.values():
        v.share = 0.1
    ready = frozenset({"main", "a", "b", "c"})
    d = JudgeDecision(
        "continue",
        requests={"a": 5000, "b": 5000, "c": 5000},
        improvements={
            "a": {"conversion": (0.004, 0.01, 0.016)},
            "b": {"conversion": (-0.004, 0.001, 0.006)},
            "c": {"conversion": (-0.006, -0.002, 0.003)},
        },
        metric_kinds={"conversion": ("proportion", "decrease")},
        objective="conversion",
    )
    plan = reconcile(policy, st, Observations(now=200, ready=ready, gates={}, verdict=d))
    lost = [e for e in plan.events if e["type"] == "lost"]
    assert [e["variant"] for e in lost] == ["c"] and lost[0]["retired_by"] == "allocation"
    assert (
        lost[0]["reason"]
        == "Lost: cannot beat a on conversion, upper bound +0.30 points vs a's lower bound +0.40 points"
    )
    assert ("retire", "c") in actions(plan)
    shares = route(plan)
    assert shares["main"] >= 0.5 and "c" not in shares
    assert shares["a"] == pytest.approx(0.15)  # the leader grows, one maxStep
    assert abs(shares["b"] - 0.1) <= 0.05 + 1e-9
    alloc = [e for e in plan.events if e["type"] == "allocated"]
    assert alloc and alloc[0]["shares"] == {"a": shares["a"], "b": shares["b"]}
    # within stepInterval nothing moves
    again = reconcile(policy, plan.state, Observations(now=205, ready=ready, gates={}, verdict=d))
    assert route(again) is None and not [e for e in again.events if e["type"] == "allocated"]
    # after a restart the journal's records give the shares back
    fresh = ControllerState.new("shop", "main", ["a", "b", "c"])
    events = [{"type": "admitted", "variant": n, "step": 0} for n in "abc"] + plan.events
    back = replay(fresh, events)
    assert back.variants["a"].share == shares["a"] and back.variants["c"].phase == "Lost"


def test_adaptive_a_loser_ruled_out_at_the_winners_look_leaves_with_its_bound_not_as_beaten():
    """The look that promotes the winner may be the first to rule a loser out: the loser's journal
    record says why it could not win (retired by the allocation), and the others still serving
    leave as "<winner> won"."""
    policy = Policy(mainline="main", allocation="adaptive", step_interval=10.0, max_candidate_share=0.6)
    st = state(better=SERVING, worse=SERVING, close=SERVING)
    for v in st.variants.values():
        v.share = 0.2
    d = JudgeDecision(
        "promote",
        winner="better",
        reason="better converts more",
        requests={"better": 5000, "worse": 5000, "close": 5000},
        improvements={
            "better": {"conversion": (0.01, 0.05, 0.09)},
            "worse": {"conversion": (-0.12, -0.08, -0.03)},
            "close": {"conversion": (-0.02, 0.01, 0.04)},
        },
        metric_kinds={"conversion": ("proportion", "decrease")},
        objective="conversion",
    )
    ready = frozenset({"main", "better", "worse", "close"})
    plan = reconcile(policy, st, Observations(now=200, ready=ready, gates={}, verdict=d))
    assert plan.state.decision["winner"] == "better"
    lost = {e["variant"]: e for e in plan.events if e["type"] == "lost"}
    assert lost["worse"]["retired_by"] == "allocation", lost
    assert lost["worse"]["reason"].startswith("Lost: cannot beat main on conversion, upper bound -3.00 points")
    assert "retired_by" not in lost["close"] and plan.state.variants["close"].phase == "Lost"
    # with the fixed ramp the same look keeps the plain reason for every loser
    fixed = reconcile(Policy(mainline="main"), st, Observations(now=200, ready=ready, gates={}, verdict=d))
    assert not [e for e in fixed.events if e.get("retired_by")]
