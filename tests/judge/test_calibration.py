"""Calibration of the contrast tests at unequal traffic shares (issue 12 item 1).

A/A streams where the candidate gets 5%, 20% or 50% of the traffic.  The
plug-in variance used to include the batch being tested, which made a
low-traffic arm look like it had fewer errors and fewer conversions
(one-sided rates 0.125 vs ~0 at a 5-10% share).  With predictable
(pre-batch) variances the final z statistic is centred and both one-sided
sequential tests stay within their level.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bakeoff.judge.contrast import ContrastTest
from bakeoff.judge.counters import VariantCounters
from bakeoff.judge.sequential import log_one_sided

from .conftest import binomial_slack, make_config

RUNS = 300
LOOKS = 30
PER_LOOK = 2000  # requests per look over both arms
LEVEL = 0.05


def _spec(metric: str):
    if metric == "error_rate":
        cfg = make_config(guardrails=[{"metric": "error_rate", "maxIncrease": 0.0}], objective=None)
        return cfg.guardrails[0]
    cfg = make_config(objective={"metric": "conversion", "kind": "proportion", "direction": "higher"})
    return cfg.objective


def _batch(rng, n: int, p: float, metric: str) -> VariantCounters:
    x = int(rng.binomial(n, p))
    if metric == "error_rate":
        return VariantCounters(requests=n, errors=x)
    return VariantCounters(requests=n, metrics={"conversion": (n, float(x), float(x))})


def run(metric: str, share: float, seed: int, p: float) -> tuple[float, bool, bool]:
    """(final z, ever "candidate higher" at LEVEL, ever "candidate lower" at LEVEL)."""
    spec = _spec(metric)
    test = ContrastTest(spec)
    rng = np.random.default_rng(seed)
    st = test.new_state()
    tot_t, tot_c = VariantCounters(), VariantCounters()
    up = down = False
    thr = math.log(1 / LEVEL)
    for _ in range(LOOKS):
        n_t = int(rng.binomial(PER_LOOK, share))
        inc_t, inc_c = _batch(rng, n_t, p, metric), _batch(rng, PER_LOOK - n_t, p, metric)
        test.update(st, inc_t, inc_c, tot_t, tot_c)
        tot_t.add(inc_t)
        tot_c.add(inc_c)
        w, i = st.diff
        tau2 = test._tau2(st, "diff", tot_t, tot_c)
        if i > 0 and math.isfinite(tau2):
            up |= log_one_sided(w, i, tau2) >= thr
            down |= log_one_sided(-w, i, tau2) >= thr
    w, i = st.diff
    return w / math.sqrt(i), up, down


@pytest.mark.parametrize("metric,p", [("error_rate", 0.01), ("conversion", 0.05)])
@pytest.mark.parametrize("share", [0.05, 0.2, 0.5])
def test_aa_is_calibrated_at_unequal_shares(metric, p, share):
    res = [run(metric, share, 1000 * int(share * 100) + r, p) for r in range(RUNS)]
    z = np.array([r[0] for r in res])
    # Centred: the mean of the final z is 0 within 3 standard errors (the bias was ~ -0.4 at 5%).
    assert abs(z.mean()) <= 3 / math.sqrt(RUNS), (metric, share, z.mean())
    # Fixed-horizon one-sided rates at the end, both directions.
    assert np.mean(z > 1.645) <= binomial_slack(0.05, RUNS)
    assert np.mean(z < -1.645) <= binomial_slack(0.05, RUNS)
    # Sequential one-sided tests (always-valid): false alarms in either direction within level.
    assert np.mean([r[1] for r in res]) <= binomial_slack(LEVEL, RUNS)
    assert np.mean([r[2] for r in res]) <= binomial_slack(LEVEL, RUNS)
