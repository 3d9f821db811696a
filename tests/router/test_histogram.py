"""The latency histogram: relative error, fixed memory, exact merging."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from bakeoff.contracts import histogram as h


def test_every_value_in_range_is_reported_within_one_percent():
    rng = random.Random(1)
    for _ in range(50_000):
        x = math.exp(rng.uniform(math.log(h.MIN_VALUE * 1.001), math.log(h.MAX_VALUE * 0.999)))
        v = h.bucket_value(h.bucket_index(x))
        assert abs(v - x) / x <= h.RELATIVE_ACCURACY + 1e-9, x


def test_quantiles_match_the_exact_ones_within_one_percent():
    rng = np.random.default_rng(2)
    values = rng.lognormal(mean=math.log(0.02), sigma=0.8, size=20_000)
    hist = h.LatencyHistogram()
    for v in values:
        hist.record(float(v))
    for q in (0.01, 0.5, 0.9, 0.99, 0.999):
        exact = float(np.quantile(values, q, method="lower"))
        assert hist.quantile(q) == pytest.approx(exact, rel=0.011), q
    assert hist.count == len(values)
    assert hist.total == pytest.approx(values.sum())


def test_memory_is_fixed_and_out_of_range_values_are_clamped():
    hist = h.LatencyHistogram()
    for x in (0.0, -1.0, 1e-12, 1e9, math.inf):
        hist.record(x)
    assert len(hist.counts) == h.NUM_BUCKETS
    assert hist.counts[0] == 3 and hist.counts[-1] == 2


def test_merge_is_exact_and_the_json_form_round_trips():
    rng = random.Random(3)
    a, b, both = h.LatencyHistogram(), h.LatencyHistogram(), h.LatencyHistogram()
    for _ in range(5000):
        x = rng.expovariate(50)
        (a if rng.random() < 0.3 else b).record(x)
        both.record(x)
    a.merge(b)
    assert a.counts == both.counts and a.count == both.count
    again = h.LatencyHistogram.from_json(a.to_json())
    assert again.counts == a.counts and again.count == a.count
    assert h.LatencyHistogram.from_json(h.LatencyHistogram().to_json()).count == 0
    assert math.isnan(h.LatencyHistogram().quantile(0.5))


def test_foreign_layout_is_rejected():
    with pytest.raises(ValueError, match="exceed the layout"):
        h.decode_counts({"offset": h.NUM_BUCKETS - 1, "counts": [1, 2]})


def test_router_stats_record_into_the_same_buckets_as_the_histogram() -> None:
    """The router's stats record latencies with their own (compiled) copy of the bucket arithmetic (issue 18).

    The copy must put every value in the bucket LatencyHistogram.record does --
    the layout is part of the snapshot format -- including the clamped ends
    and values on bucket boundaries, in whichever build runs (the compiled
    one, or the pure-Python one under BAKEOFF_PURE_PYTHON=1).
    """
    from bakeoff.router.stats import RouteStats

    rng = random.Random(18)
    values = [0.0, -1.0, h.MIN_VALUE, h.MIN_VALUE * 1.0000001, h.MAX_VALUE, h.MAX_VALUE * 2, 1e-3, 0.25, 1.0]
    values += [h.bucket_upper_bound(i) for i in range(h.NUM_BUCKETS)]
    values += [10 ** rng.uniform(-7, 4) for _ in range(20000)]
    for v in values:
        ref = h.LatencyHistogram()
        ref.record(v)
        stats = RouteStats()
        stats.record_response(200, v)
        assert stats.latency.counts == ref.counts, v
        assert (stats.latency.count, stats.latency.total) == (ref.count, ref.total), v
    stats = RouteStats()
    ref = h.LatencyHistogram()
    for v in values:
        stats.record_outcome(0, v)
        ref.record(v)
    assert stats.latency.to_json() == ref.to_json()
