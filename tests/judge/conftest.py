"""Shared helpers for the judge tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bakeoff.judge.config import config_from_dict
from bakeoff.judge.core import JudgeState, step
from bakeoff.judge.simulate import Arm, Stream
from bakeoff.judge.sources import SourceError
from tests.conftest import eventually_async


def make_config(**over):
    raw = {
        "alpha": 0.05,
        "control": "mainline",
        "minSamples": 500,
        "maxSamples": 20000,
        "guardrails": [
            {"metric": "error_rate", "maxIncrease": 0.0},
            {"metric": "latency_p99", "maxIncreaseRatio": 0.05},
            {"metric": "latency_p50", "maxIncreaseRatio": 0.02},
        ],
        "objective": {"metric": "conversion", "kind": "proportion", "direction": "higher"},
    }
    raw.update(over)
    return config_from_dict(raw, "test.yaml")


def run_stream(config, arms: dict[str, Arm], seed: int, batch: int = 200, max_looks: int = 10_000):
    """Look every ``batch`` requests per variant until promote/stop; return (decision, n, verdict)."""
    rng = np.random.default_rng(seed)
    stream = Stream(arms, rng)
    state = JudgeState.new(config)
    verdict = None
    for _ in range(max_looks):
        stream.advance(batch)
        state, verdict = step(state, stream.snapshot(), stream.t)
        if verdict.decision.action in ("promote", "stop"):
            break
    return verdict.decision, stream.state[config.control]["requests"], verdict


def binomial_slack(p: float, runs: int) -> float:
    """Upper one-sided 99% binomial bound for a rate whose true value is at most ``p``."""
    return p + 2.33 * (p * (1 - p) / runs) ** 0.5


async def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Wait until the Prometheus at ``url`` answers /-/ready; fail at once if it exits."""
    import aiohttp

    async with aiohttp.ClientSession() as s:

        async def ready() -> int:
            if proc.poll() is not None:
                raise AssertionError(f"prometheus exited with {proc.returncode}")
            async with s.get(url + "/-/ready") as r:
                return r.status

        await eventually_async(
            ready,
            until=lambda status: status == 200,
            timeout=timeout,
            what="prometheus to be ready",
            retry=(aiohttp.ClientError,),
        )


async def fetch_until(src, predicate, timeout: float = 30.0) -> dict:
    """Fetch from ``src`` until ``predicate`` holds for what it gives; that snapshot."""

    async def fetch() -> dict:
        return await src.fetch()

    return await eventually_async(
        fetch,
        until=predicate,
        timeout=timeout,
        interval=0.3,
        retry=(SourceError,),
        what="prometheus to show the expected data",
    )


@pytest.fixture
def prometheus_binary():
    """Path of the prometheus binary; skip without it, unless CI=true (then fail)."""
    path = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus is required when CI=true but was not found")
        pytest.skip("prometheus not installed")
    return path
