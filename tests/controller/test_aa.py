"""A/A: identical builds are never rolled back; false promotions and "out" marks stay within alpha.

100 simulated bake-offs of a mainline against k=4 identical candidates go
through the real judge and the real reconcile loop (admission, ramp, the
shares it sets decide how much traffic each variant gets), with the router
snapshots drawn by bakeoff.judge.simulate from the same distribution for every
variant.  The judge's family-wise error bound is alpha (anytime-valid tests,
Bonferroni over the candidates: Howard, Ramdas, McAuliffe, Sekhon,
"Time-uniform, nonparametric, nonasymptotic confidence sequences", 2021), so
at alpha=0.05 at most about 5 of 100 runs may be expected to false-alarm.
No A/A run may roll a candidate back; a promotion of a twin (a false "better"
on the objective) counts against the same family-wise bound as "out".  A
candidate marked "out" on the objective (it cannot win; users see nothing) is
a one-sided test at the Bonferroni level, so "out" runs are allowed at the
family-wise rate alpha and no more: the count must not exceed what
Binomial(100, alpha) reaches with probability 0.001 (a judge whose out rate
were four times alpha fails this with probability 0.95).

The real-process A/A runs (examples/quotes' mainline against copies of
itself through the router) are in benchmarks/aa_real.py: they take minutes.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from bakeoff.controller.reconcile import ControllerState, JudgeDecision, Observations, reconcile
from bakeoff.controller.resources import parse_documents
from bakeoff.controller.runner import policy_of
from bakeoff.judge.core import JudgeState, step
from bakeoff.judge.simulate import Arm, Stream

K = 4
RUNS = 100
RATE = 600  # requests per second through the router
LOOKS = 60  # one a second; maxDuration 60s


def resources():
    docs = [
        {
            "apiVersion": "bakeoff.dev/v1alpha1",
            "kind": "Bakeoff",
            "metadata": {"name": "aa"},
            "spec": {
                "mainline": {"command": ["true"]},
                "routing": {"steps": [0.05, 0.1, 0.15], "stepInterval": "10s", "maxCandidateShare": 0.6},
                "judge": {
                    "alpha": 0.05,
                    "minSamples": 300,
                    "maxDuration": f"{LOOKS}s",
                    "guardrails": [
                        {"metric": "error_rate", "maxIncrease": 0.01},
                        {"metric": "latency_p50", "maxIncreaseRatio": 0.1},
                        {"metric": "latency_p99", "maxIncreaseRatio": 0.25},
                    ],
                    "objective": {"metric": "conversion", "kind": "proportion", "direction": "higher"},
                },
            },
        }
    ] + [
        {
            "apiVersion": "bakeoff.dev/v1alpha1",
            "kind": "Variant",
            "metadata": {"name": f"twin{i}"},
            "spec": {"bakeoff": "aa", "command": ["true"]},
        }
        for i in range(K)
    ]
    return parse_documents(docs, "aa.yaml")


def one_run(res, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    names = [res.bakeoff.mainline_name] + [v.name for v in res.variants]
    arm = Arm(median=0.02, sigma=0.6, error_rate=0.01, conversion=0.05)
    stream = Stream(dict.fromkeys(names, arm), rng)
    policy = policy_of(res)
    state = ControllerState.new("aa", res.bakeoff.mainline_name, [v.name for v in res.variants])
    judge = JudgeState.new(res.bakeoff.judge)
    ready = frozenset(names)
    gates = dict.fromkeys(state.variants)
    events: list[dict] = []
    verdict = None
    for t in range(LOOKS + 1):
        plan = reconcile(policy, state, Observations(now=float(t), ready=ready, gates=gates, verdict=verdict))
        state = plan.state
        events += plan.events
        if state.decision is not None:
            break
        stream.advance({n: int(rng.poisson(RATE * w)) for n, w in state.weights.items()})
        judge, v = step(judge, stream.snapshot(), float(t))
        verdict = JudgeDecision.from_verdict(v)
        events += [{"type": "out", "variant": n} for n, vv in v.variants.items() if vv.status == "out"]
    return events


@pytest.mark.slow
def test_an_aa_bake_off_with_four_identical_candidates_never_rolls_back_nor_marks_out():
    res = resources()
    bad, out = [], []
    for seed in range(RUNS):
        events = one_run(res, seed)
        assert sum(e["type"] == "admitted" for e in events) == K
        alarms = [e for e in events if e["type"] in ("rolled_back", "failed", "promoted")]
        if alarms:
            bad.append((seed, alarms[:3]))
        if any(e["type"] == "out" for e in events):
            out.append(seed)
    limit = int(binom.isf(0.001, RUNS, res.bakeoff.judge.alpha))
    # A rollback or a promotion of an identical build is a false alarm of the family the judge
    # bounds by alpha; with these seeds none rolled back and at most one was promoted.
    assert len(bad) <= limit, f"{len(bad)} of {RUNS} A/A runs rolled back or promoted an identical build: {bad[:5]}"
    assert not any(a["type"] in ("rolled_back", "failed") for _, alarms in bad for a in alarms), bad
    assert len(out) <= limit, f"{len(out)} of {RUNS} runs marked a twin out (limit {limit}): {out}"
