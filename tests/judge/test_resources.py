"""Resource cost judged like the other metrics (cpu_per_request, memory): the meter's batch
statistics through judge.core.step, in simulation (fixed seeds) -- A/A false rollbacks under
continuous monitoring at the tolerance boundary, and power on clear increases."""

from __future__ import annotations

import numpy as np
import pytest

from bakeoff.contracts.snapshot import OUTCOMES, SNAPSHOT_FORMAT, SnapshotError, merge_snapshots, validate
from bakeoff.judge.config import JudgeConfigError, config_from_dict
from bakeoff.judge.core import JudgeState, step
from bakeoff.judge.sources.resources import ResourceMeter, ResourceSample, requests_of

from .conftest import binomial_slack

ALPHA = 0.05


def _config(**guard):
    raw = {
        "alpha": ALPHA,
        "minSamples": 500,
        "maxSamples": 30_000,
        "guardrails": [
            {"metric": "cpu_per_request", "maxIncreaseRatio": guard.get("cpu", 0.0)},
            {"metric": "memory", "maxIncreaseRatio": guard.get("memory", 0.0)},
        ],
    }
    return config_from_dict(raw, "test.yaml")


def _router(requests: dict[str, int]) -> dict:
    return {
        "format": SNAPSHOT_FORMAT,
        "taken_at": 0.0,
        "sources": [{"router_id": "r", "pid": 1, "started_at": 1.0}],
        "histogram": validate_layout(),
        "routes": {"version": 0, "weights": {}},
        "variants": {
            n: {"requests": c, "outcomes": {**dict.fromkeys(OUTCOMES, 0), "2xx": c}, "latency": {}, "metrics": {}}
            for n, c in requests.items()
        },
    }


def validate_layout() -> dict:
    from bakeoff.contracts.histogram import LAYOUT

    return dict(LAYOUT)


class Proc:
    """A simulated variant: per-request CPU cost Gamma(shape 2, mean ``cpu``) seconds plus a
    background tick, and memory an AR(1) around ``memory`` bytes (0.7 from one look to the next: autocorrelated, forgotten within a batch)."""

    def __init__(self, rng, cpu: float = 0.002, memory: float = 80e6):
        self.rng, self.cpu_mean, self.mem_mean = rng, cpu, memory
        self.cpu = 0.0
        self.mem = memory
        self.requests = 0

    def advance(self, n: int) -> ResourceSample:
        self.requests += n
        self.cpu += self.rng.gamma(2.0, self.cpu_mean / 2.0, size=n).sum() + self.rng.exponential(0.001)
        self.mem = self.mem_mean + 0.7 * (self.mem - self.mem_mean) + self.rng.normal(0, 0.02 * self.mem_mean)
        return ResourceSample(self.cpu, max(self.mem, 0.0))


def run(config, arms: dict[str, dict], seed: int, per_look: int = 150, max_looks: int = 400):
    """One bake-off: a look per simulated second, the meter beside the router's snapshot."""
    rng = np.random.default_rng(seed)
    procs = {n: Proc(rng, **kw) for n, kw in arms.items()}
    meter = ResourceMeter(clock=lambda: 0.0)
    state = JudgeState.new(config)
    verdict = None
    for t in range(1, max_looks + 1):
        samples = {n: p.advance(int(rng.poisson(per_look))) for n, p in procs.items()}
        router = _router({n: p.requests for n, p in procs.items()})
        meter.observe(samples, requests_of(router))
        state, verdict = step(state, [router, meter.snapshot(float(t))], float(t))
        if verdict.decision.rollback or verdict.decision.action in ("promote", "stop"):
            break
    return verdict


@pytest.mark.slow
def test_aa_false_rollbacks_at_zero_tolerance_on_cpu_and_memory():
    runs = 200
    alarms = 0
    for r in range(runs):
        v = run(_config(), {"mainline": {}, "candidate": {}}, 40_000 + r)
        alarms += bool(v.decision.rollback)
    rate = alarms / runs
    print(f"A/A false rollbacks: {alarms}/{runs} = {rate:.3f} (alpha {ALPHA})")
    assert rate <= binomial_slack(ALPHA, runs)


@pytest.mark.slow
def test_power_cpu_per_request_plus_50_percent_is_rolled_back_on_cpu():
    runs = 40
    hits, looks = 0, []
    for r in range(runs):
        v = run(_config(cpu=0.1, memory=0.5), {"mainline": {}, "candidate": {"cpu": 0.003}}, 50_000 + r)
        mv = v.variants["candidate"].metrics["cpu_per_request"]
        if v.decision.rollback == ["candidate"] and mv.state == "worse":
            hits += 1
            looks.append(v.look)
    print(f"power, CPU +50% at tolerance +10%: {hits}/{runs}, median look {np.median(looks) if looks else None}")
    assert hits >= 0.9 * runs


@pytest.mark.slow
def test_power_memory_plus_40_percent_is_rolled_back_on_memory():
    runs = 40
    hits = 0
    for r in range(runs):
        v = run(_config(cpu=0.5, memory=0.1), {"mainline": {}, "candidate": {"memory": 112e6}}, 60_000 + r)
        mv = v.variants["candidate"].metrics["memory"]
        hits += v.decision.rollback == ["candidate"] and mv.state == "worse"
    print(f"power, memory +40% at tolerance +10%: {hits}/{runs}")
    assert hits >= 0.9 * runs


def test_equal_cost_within_tolerance_is_shown_non_inferior_and_kept():
    v = run(_config(cpu=0.2, memory=0.2), {"mainline": {}, "candidate": {}}, 7, max_looks=200)
    assert not v.decision.rollback
    assert v.variants["candidate"].metrics["cpu_per_request"].state == "non_inferior"
    assert v.variants["candidate"].metrics["memory"].state == "non_inferior"


def test_meter_batches_cpu_per_request_and_memory():
    m = ResourceMeter(cpu_batch=2, memory_batch=2, warmup=1, clock=lambda: 5.0)
    m.observe({"a": ResourceSample(0.0, 900.0)}, {"a": 0})  # opens the warm-up batch
    m.observe({"a": ResourceSample(0.5, 900.0)}, {"a": 5})
    m.observe({"a": ResourceSample(1.0, 100.0)}, {"a": 10})  # the warm-up is left out; a batch opens
    assert not m.cpu and not m.memory
    m.observe({"a": ResourceSample(1.5, 200.0)}, {"a": 60})
    m.observe({"a": ResourceSample(2.0, 400.0)}, {"a": 110})  # closes it: 1.0 s / 100 requests
    assert m.cpu["a"].count == 1 and m.cpu["a"].sum == pytest.approx(0.01)
    assert m.memory["a"].sum == pytest.approx(300.0)
    # a restarted process (CPU going down) starts a new batch, nothing negative is counted
    m.observe({"a": ResourceSample(0.1, 50.0)}, {"a": 120})
    for i in range(4):
        m.observe({"a": ResourceSample(0.2 + i, 50.0)}, {"a": 130 + i * 100})
    assert m.cpu["a"].count == 2 and m.cpu["a"].sum == pytest.approx(0.01 + 0.01)
    snap = validate(m.snapshot())
    assert snap["variants"]["a"]["resources"]["cpu_per_request"]["count"] == 2
    merged = merge_snapshots([snap, snap])
    assert merged["variants"]["a"]["resources"]["memory"]["sum"] == pytest.approx(2 * m.memory["a"].sum)


def test_bad_resource_config_and_snapshot_name_the_field():
    with pytest.raises(JudgeConfigError, match=r"guardrails\[0\].maxDecreaseRatio: cpu_per_request is guarded"):
        config_from_dict({"guardrails": [{"metric": "cpu_per_request", "maxDecreaseRatio": 0.1}]}, "b.yaml")
    with pytest.raises(JudgeConfigError, match=r"guardrails\[0\].per must be omitted for memory"):
        config_from_dict({"guardrails": [{"metric": "memory", "per": "value", "maxIncreaseRatio": 0.1}]}, "b.yaml")
    snap = _router({"a": 1})
    snap["variants"]["a"]["resources"] = {"cpu": {"count": 1, "sum": 0.1, "sum_sq": 0.01}}
    with pytest.raises(SnapshotError, match=r"variants.a.resources.cpu: unknown kind"):
        validate(snap, "s.json")
