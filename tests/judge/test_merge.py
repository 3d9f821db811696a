"""Splitting the same requests across router replicas and merging their
snapshots gives exactly the verdicts one router would have produced."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bakeoff.contracts.histogram import bucket_value
from bakeoff.contracts.snapshot import merge_snapshots
from bakeoff.judge.core import JudgeState, step
from bakeoff.judge.simulate import Arm
from bakeoff.router.stats import RouterStats

from .conftest import make_config

ARMS = {"mainline": Arm(), "v2": Arm(median=0.125, error_rate=0.02), "v3": Arm(conversion=0.08)}
BUCKET_PROBS = {k: a.bucket_probs() for k, a in ARMS.items()}


def record(stats: RouterStats, variant: str, bucket: int, error: bool, converted: bool) -> None:
    vs = stats.variant(variant)
    vs.record_response(500 if error else 200, bucket_value(bucket))
    if converted:
        vs.record_metric("conversion", b"1")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    replicas=st.integers(1, 4),
    split_seed=st.integers(0, 2**32 - 1),
    data_seed=st.integers(0, 2**16),
    batch=st.integers(150, 400),
)
def test_split_and_merged_equals_single_router(replicas, split_seed, data_seed, batch):
    data = np.random.default_rng(data_seed)
    split = np.random.default_rng(split_seed)
    cfg = make_config(
        minSamples=300,
        guardrails=[
            {"metric": "error_rate", "maxIncrease": 0.0},
            {"metric": "latency_p50", "maxIncreaseRatio": 0.05},
            {"metric": "latency_p99", "maxIncreaseRatio": 0.1},
        ],
    )
    single = RouterStats(router_id="one")
    single.started_at = 0.0
    parts = []
    for i in range(replicas):
        r = RouterStats(router_id=f"replica-{i}")
        r.started_at = 0.0
        parts.append(r)
    s_single, s_merged = JudgeState.new(cfg), JudgeState.new(cfg)
    for look in range(6):
        for name, arm in ARMS.items():
            buckets = np.repeat(np.arange(len(BUCKET_PROBS[name])), data.multinomial(batch, BUCKET_PROBS[name]))
            errors = data.random(batch) < arm.error_rate
            conv = data.random(batch) < arm.conversion
            where = split.integers(0, replicas, size=batch)
            for b, e, c, w in zip(buckets.tolist(), errors.tolist(), conv.tolist(), where.tolist()):
                record(single, name, b, e, c)
                record(parts[w], name, b, e, c)
        one = single.snapshot()
        one["taken_at"] = float(look)
        merged_parts = []
        for p in parts:
            snap = p.snapshot()
            snap["taken_at"] = float(look)
            merged_parts.append(snap)
        merged = merge_snapshots(merged_parts)
        s_single, v_single = step(s_single, one, float(look))
        s_merged, v_merged = step(s_merged, merged, float(look))
        a, b = v_single.to_json(), v_merged.to_json()
        assert a == b
