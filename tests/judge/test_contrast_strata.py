"""ContrastTest.update_strata of a binary metric over many routes works on arrays
(contrast._MANY_STRATA): the sums it leaves are the scalar path's (_row, _add_rows) bit for
bit, with every edge a route can have -- no request on one side, no earlier data (the
tolerance variance unknown), no error at all, more errors than a tolerance allows."""

from __future__ import annotations

import numpy as np
import pytest

from bakeoff.judge import contrast
from bakeoff.judge.config import config_from_dict
from bakeoff.judge.contrast import ContrastTest
from bakeoff.judge.counters import VariantCounters


def _counters(rng, scale: int) -> VariantCounters:
    requests = int(rng.choice([0, 1, int(rng.integers(2, scale + 2))]))
    errors = int(rng.integers(0, requests + 1)) if rng.random() < 0.3 else int(rng.binomial(requests, 0.02))
    upgraded = int(rng.integers(0, requests - errors + 1)) if rng.random() < 0.1 else 0
    return VariantCounters(
        requests, errors, upgraded=upgraded, metrics={"conversion": (requests, float(rng.binomial(requests, 0.1)), 0.0)}
    )


def _scalar(t: ContrastTest, st, strata, route_states) -> None:
    rows = [t._row(stratum) for stratum in strata]
    t._add_rows(st, [r for r in rows if r is not None])
    for row, rs in zip(rows, route_states):
        if row is not None:
            t._add_rows(rs, [row])


@pytest.mark.parametrize(
    "guard",
    [
        {"metric": "error_rate", "maxIncrease": 0.005},
        {"metric": "error_rate", "maxIncreaseRatio": 0.2},
        {"metric": "conversion", "kind": "proportion", "maxDecrease": 0.01},
        {"metric": "conversion", "kind": "proportion", "maxDecreaseRatio": 0.1},
    ],
)
@pytest.mark.parametrize("seed", range(4))
def test_array_strata_are_the_scalar_ones(guard, seed):
    cfg = config_from_dict({"alpha": 0.05, "control": "mainline", "guardrails": [guard]}, "strata.yaml")
    t = ContrastTest(cfg.guardrails[0])
    assert t.binary
    rng = np.random.default_rng(seed)
    for n_routes in (contrast._MANY_STRATA, 40, 65):
        for _ in range(5):
            strata = [tuple(_counters(rng, s) for s in (300, 300, 5000, 5000)) for _ in range(n_routes)]
            a, b = t.new_state(), t.new_state()
            a.diff, a.tol = [0.5, 2.0], [-0.25, 3.0]
            b.diff, b.tol = list(a.diff), list(a.tol)
            ra = [t.new_state() for _ in strata]
            rb = [t.new_state() for _ in strata]
            t.update_strata(a, strata, ra)  # the array path
            _scalar(t, b, strata, rb)
            assert (a.diff, a.tol) == (b.diff, b.tol)
            assert [(s.diff, s.tol) for s in ra] == [(s.diff, s.tol) for s in rb]
