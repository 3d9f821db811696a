"""Rare events: tolerance tests of error rates and proportions use the variance
at the null boundary (Farrington & Manning 1990), not the plug-in p(1-p)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from bakeoff.judge.contrast import ContrastTest, rmle_difference, rmle_ratio
from bakeoff.judge.core import JudgeState, step
from bakeoff.judge.counters import VariantCounters
from bakeoff.judge.simulate import Arm, Stream

from .conftest import binomial_slack, make_config

ALPHA = 0.05


def _numeric_rmle(x1, n1, x2, n2, constraint, lo, hi):
    def nll(p2):
        p1 = constraint(p2)
        e = 1e-300
        return -(
            x1 * math.log(max(p1, e))
            + (n1 - x1) * math.log(max(1 - p1, e))
            + x2 * math.log(max(p2, e))
            + (n2 - x2) * math.log(max(1 - p2, e))
        )

    r = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12})
    return nll, r.fun


@pytest.mark.parametrize(
    "x1,n1,x2,n2,delta",
    [
        (0, 1000, 0, 1000, 0.01),
        (3, 500, 0, 800, 0.01),
        (12, 1000, 1, 1000, 0.01),
        (40, 2000, 55, 2100, -0.02),
        (0, 300, 7, 250, 0.005),
        (100, 100, 90, 100, -0.05),
    ],
)
def test_restricted_mle_of_a_difference_maximises_the_likelihood(x1, n1, x2, n2, delta):
    p1, p2 = rmle_difference(x1, n1, x2, n2, delta)
    assert p1 - p2 == pytest.approx(delta)
    nll, best = _numeric_rmle(x1, n1, x2, n2, lambda p: p + delta, max(0, -delta), min(1, 1 - delta))
    assert nll(p2) <= best + 1e-7


@pytest.mark.parametrize("x1,n1,x2,n2,phi", [(0, 1000, 0, 1000, 1.5), (5, 1000, 9, 900, 1.2), (30, 400, 10, 500, 0.8)])
def test_restricted_mle_of_a_ratio_maximises_the_likelihood(x1, n1, x2, n2, phi):
    p1, p2 = rmle_ratio(x1, n1, x2, n2, phi)
    assert p1 == pytest.approx(phi * p2)
    nll, best = _numeric_rmle(x1, n1, x2, n2, lambda p: phi * p, 0.0, min(1.0, 1.0 / phi))
    assert nll(p2) <= best + 1e-7


@pytest.mark.parametrize("metric", ["error_rate", "conversion"])
def test_no_events_on_either_side_is_not_astronomical_evidence(metric):
    """No errors (or conversions) at all in n requests per arm.  A candidate whose rate is
    exactly the tolerated 1% shows none with probability 0.99**n, so no valid p-value for
    "non-inferior" can be smaller than that (it was 1e-261 with the plug-in variance)."""
    guard = {"metric": metric, "maxIncrease": 0.01}
    if metric == "conversion":
        guard["kind"] = "proportion"
    cfg = make_config(guardrails=[guard], objective=None, minSamples=100)
    arm = Arm(error_rate=0.0, conversion=0.0)
    stream = Stream({"mainline": arm, "v": arm}, np.random.default_rng(0))
    state = JudgeState.new(cfg)
    for _ in range(30):
        stream.advance(100)
        state, verdict = step(state, stream.snapshot(), stream.t)
    mv = verdict.variants["v"].metrics[metric]
    n = 3000
    assert mv.p_non_inferior >= 0.99**n
    assert mv.state == "non_inferior"  # 3000 clean requests do rule out +1 point
    assert mv.p_worse == 1.0


def boundary_non_inferior_rate(p_control, tol, runs, seed0, batch=100, looks=200):
    """Share of runs declared non-inferior when the candidate's error rate is exactly at
    the tolerance, monitored every ``batch`` requests per arm.  Mirrors the core: running
    maximum of the evidence, compared with 1/alpha (one test, m = 1)."""
    spec = make_config(guardrails=[{"metric": "error_rate", "maxIncrease": tol}], objective=None).guardrails[0]
    test = ContrastTest(spec)
    threshold = math.log(1.0 / ALPHA)
    hits = 0
    for r in range(runs):
        rng = np.random.default_rng(seed0 + r)
        err_t = rng.binomial(batch, p_control + tol, looks)
        err_c = rng.binomial(batch, p_control, looks)
        st, tot_t, tot_c = test.new_state(), VariantCounters(), VariantCounters()
        for j in range(looks):
            inc_t, inc_c = VariantCounters(batch, int(err_t[j])), VariantCounters(batch, int(err_c[j]))
            tot_t.add(inc_t)
            tot_c.add(inc_c)
            test.update(st, inc_t, inc_c, tot_t, tot_c)
            if test.evidence(st, tot_t, tot_c).get("non_inferior", -math.inf) >= threshold:
                hits += 1
                break
    return hits / runs


@pytest.mark.parametrize("p_control,seed0", [(0.0, 150_000), (0.001, 160_000)])
def test_error_rate_exactly_at_the_tolerance_is_rarely_non_inferior(p_control, seed0):
    runs = 400
    assert boundary_non_inferior_rate(p_control, 0.01, runs, seed0) <= binomial_slack(ALPHA, runs)
