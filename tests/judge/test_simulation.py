"""Error rates in simulation (fixed seeds): A/A false alarms under continuous
monitoring (a look every 200 requests per variant) and power on clear effects."""

from __future__ import annotations

import numpy as np
import pytest

from bakeoff.judge.simulate import Arm

from .conftest import binomial_slack, make_config, run_stream

# Thousands of simulated bake-offs each: the slow tier (make test-fast leaves them out).
pytestmark = pytest.mark.slow

ALPHA = 0.05


def false_alarm_rate(config, k, runs, seed0, arm=None):
    arms = {"mainline": Arm(), **{f"v{i}": (arm or Arm()) for i in range(k)}}
    alarms = 0
    for r in range(runs):
        decision, _, _ = run_stream(config, arms, seed0 + r)
        alarms += bool(decision.rollback or decision.winner)
    return alarms / runs


# Zero tolerances put every "worse" test exactly at its null boundary in an A/A.
STRICT = dict(
    maxSamples=10000,
    guardrails=[
        {"metric": "error_rate", "maxIncrease": 0.0},
        {"metric": "latency_p99", "maxIncreaseRatio": 0.0},
        {"metric": "latency_p50", "maxIncreaseRatio": 0.0},
    ],
)
# Margins let an A/A variant be shown non-inferior, so a false "better" on the
# objective would promote it: this measures false promotions too.
MARGINS = dict(
    maxSamples=10000,
    guardrails=[
        {"metric": "error_rate", "maxIncrease": 0.01},
        {"metric": "latency_p99", "maxIncreaseRatio": 0.5},
        {"metric": "latency_p50", "maxIncreaseRatio": 0.2},
    ],
)


def test_aa_false_alarms_k1():
    runs = 200
    rate = false_alarm_rate(make_config(**STRICT), 1, runs, 10_000)
    assert rate <= binomial_slack(ALPHA, runs)


def test_aa_false_alarms_k4_family_wise():
    runs = 120
    rate = false_alarm_rate(make_config(**STRICT), 4, runs, 20_000)
    assert rate <= binomial_slack(ALPHA, runs)


def test_aa_false_promotions_k4():
    runs = 120
    cfg = make_config(**MARGINS)
    assert cfg.objective is not None
    rate = false_alarm_rate(cfg, 4, runs, 30_000)
    assert rate <= binomial_slack(ALPHA, runs)


def test_at_the_tolerance_boundary_latency_is_not_rolled_back():
    """Candidate median and p99 exactly 5% slower with a 5% tolerance: the null's edge."""
    cfg = make_config(
        maxSamples=10000,
        guardrails=[
            {"metric": "latency_p50", "maxIncreaseRatio": 0.05},
            {"metric": "latency_p99", "maxIncreaseRatio": 0.05},
        ],
    )
    runs = 150
    rate = false_alarm_rate(cfg, 1, runs, 40_000, arm=Arm(median=0.105))
    assert rate <= binomial_slack(ALPHA, runs)


def test_aa_false_alarms_for_a_mean_objective():
    cfg = make_config(
        maxSamples=10000,
        guardrails=[{"metric": "error_rate", "maxIncrease": 0.01}],
        objective={"metric": "revenue", "kind": "mean", "direction": "higher"},
    )
    runs = 150
    assert false_alarm_rate(cfg, 2, runs, 50_000) <= binomial_slack(ALPHA, runs)


def power(config, arm, runs, seed0, batch=200):
    found, ns = 0, []
    for r in range(runs):
        decision, n, _ = run_stream(config, {"mainline": Arm(), "v2": arm}, seed0 + r, batch=batch)
        hit = decision.rollback == ["v2"] if arm is not None else False
        found += hit
        ns.append(n if hit else np.inf)
    return found / runs, float(np.median(ns))


def test_power_errors_1_to_3_percent():
    rate, median_n = power(make_config(maxSamples=5000), Arm(error_rate=0.03), 60, 60_000)
    assert rate >= 0.8
    assert median_n <= 3000


def test_power_median_latency_plus_20_percent():
    rate, median_n = power(make_config(maxSamples=2000), Arm(median=0.12), 60, 70_000)
    assert rate >= 0.8
    assert median_n <= 1200


def test_power_p99_only_plus_20_percent():
    rate, _ = power(make_config(maxSamples=10000), Arm(tail_factor=1.2), 40, 80_000)
    assert rate >= 0.8


def test_power_promotes_a_better_revenue_per_request():
    cfg = make_config(
        maxSamples=60000,
        guardrails=[{"metric": "error_rate", "maxIncrease": 0.005}],
        objective={"metric": "revenue", "kind": "mean", "direction": "higher"},
    )
    wins = 0
    for r in range(30):
        decision, _, _ = run_stream(cfg, {"mainline": Arm(), "v2": Arm(revenue_mean=30.0)}, 90_000 + r, batch=1000)
        wins += decision.winner == "v2"
    assert wins / 30 >= 0.8
