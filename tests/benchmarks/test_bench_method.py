"""The -c1 added-p50 figure of benchmarks/router_vs_nginx.py: its interval and when it is resolved.

A proxy's added p50 is its -c1 p50 minus the direct upstream's in the same
slot; the figure is the median over all slots.  Nothing in the method
subtracts more than the hop adds (same upstream, same slot, turning order),
so a negative median can only be noise.  ``median_ci`` gives the
distribution-free 95% interval for that median (Conover 1999, section 3.2)
and the script calls the figure resolved only when the interval lies above
zero.  Simulated here: its coverage, its A/A error rate (a hop that adds
nothing is called resolved at most 2.5% of the time) and its power.
"""

from __future__ import annotations

import importlib.util
import math
import random
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "router_vs_nginx.py"


def _bench():
    spec = importlib.util.spec_from_file_location("router_vs_nginx", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("router_vs_nginx", mod)
    spec.loader.exec_module(mod)
    return mod


def _slot(rng: random.Random, added: float) -> float:
    # One slot's difference: the hop's cost plus the noise of two -c1 p50s on a busy machine
    # (heavy-tailed: a burst of other work now and then lands on one run of the pair).
    noise = rng.gauss(0, 20) - rng.gauss(0, 20)
    if rng.random() < 0.1:
        noise += rng.choice((-1, 1)) * rng.expovariate(1 / 200)
    return added + noise


def test_median_ci_is_the_order_statistics_of_the_binomial() -> None:
    ci = _bench().median_ci
    xs = [float(x) for x in range(1, 21)]  # n = 20: P(Bin(20, 1/2) <= 5) = 0.0207 <= 0.025 < P(<= 6)
    assert ci(xs) == (6.0, 15.0)
    assert ci(list(reversed(xs))) == (6.0, 15.0)
    assert ci([3.0, 1.0, 2.0]) == (1.0, 3.0)  # too few for 95%: the whole range
    lo, hi = ci([])
    assert math.isnan(lo) and math.isnan(hi)


def test_aa_error_rate_coverage_and_power_by_simulation() -> None:
    ci = _bench().median_ci
    rng = random.Random(18)
    runs, slots = 4000, 20  # 5 rounds of 4 slots, the default run
    aa_resolved = covered = 0
    for _ in range(runs):
        lo, hi = ci([_slot(rng, 0.0) for _ in range(slots)])
        aa_resolved += lo > 0
        covered += lo <= 0.0 <= hi
    # The interval covers at least 95% (exactly 95.86% for n = 20, whatever the distribution);
    # a one-sided false "resolved" at most 2.5% (2.07% for n = 20). Binomial margins, 4000 runs: ~4 sd.
    assert covered / runs >= 0.9586 - 4 * math.sqrt(0.0414 * 0.9586 / runs)
    assert aa_resolved / runs <= 0.0207 + 4 * math.sqrt(0.0207 * 0.9793 / runs)
    # Power: a hop of 30 us (about one noise sd) is resolved in about 89% of runs of 20 slots, 60 us in all but a few.
    for added, least in ((30.0, 0.8), (60.0, 0.99)):
        resolved = sum(ci([_slot(rng, added) for _ in range(slots)])[0] > 0 for _ in range(1000))
        assert resolved / 1000 >= least, (added, resolved)
