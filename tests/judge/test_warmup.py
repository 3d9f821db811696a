"""spec.judge.warmup: a candidate's first seconds of traffic are never judged (judge/core.py _without_warming)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bakeoff.judge.config import JudgeConfigError
from bakeoff.judge.core import JudgeState, step
from bakeoff.judge.simulate import Arm, Stream
from tests.judge.conftest import make_config

WARM = Arm(median=0.1)
COLD = Arm(median=0.3)  # three times slower while its caches fill


def _cold_start(config, seed: int, cold_looks: int = 5, looks: int = 40):
    """A candidate slow for its first ``cold_looks`` looks (one second and 400 requests each), then
    as fast as the mainline; (the state and verdict of every look)."""
    stream = Stream({"mainline": WARM, "fresh": COLD}, np.random.default_rng(seed))
    state = JudgeState.new(config)
    out = []
    for look in range(looks):
        if look == cold_looks:
            stream.set_arm("fresh", WARM)
        stream.advance(400)
        state, verdict = step(state, stream.snapshot(), stream.t)
        out.append((state, verdict))
    return out


def test_a_cold_start_is_rolled_back_without_a_warmup_and_judged_from_when_it_ends_with_one():
    guard = [{"metric": "latency_p50", "maxIncreaseRatio": 0.2}, {"metric": "error_rate", "maxIncrease": 0.02}]
    cold = _cold_start(make_config(guardrails=guard, objective=None, minSamples=300), seed=3)
    assert "fresh" in cold[-1][0].rolled_back  # judged on its cold start: +200% p50 in its first looks
    warm = _cold_start(make_config(guardrails=guard, objective=None, minSamples=300, warmup="6s"), seed=3)
    state, verdict = warm[-1]
    assert "fresh" not in state.rolled_back
    # Its warm-up runs from the look that first saw its requests (t = 1 s) for 6 s: the looks at
    # t = 1..6 s; what it served until then is counted in no test; the mainline's requests all count.
    assert state.first_seen == {"fresh": 1.0}
    assert verdict.variants["fresh"].requests == 400 * (40 - 6)
    assert state.totals["mainline"].requests == 400 * 40
    assert [any("fresh: warming up" in n for n in v.notes) for _, v in warm[:7]] == [True] * 6 + [False] * 1
    assert "not judged for 6.0s more" in warm[0][1].notes[-1] and "for 1.0s more" in warm[5][1].notes[-1]
    # During the warm-up the candidate is listed, not yet judged.
    assert warm[2][1].variants["fresh"].requests == 0 and not warm[2][1].variants["fresh"].eligible


def test_the_warmup_survives_a_saved_state():
    config = make_config(warmup="10s")
    stream = Stream({"mainline": WARM, "fresh": WARM}, np.random.default_rng(1))
    state = JudgeState.new(config)
    for _ in range(3):
        stream.advance(100)
        state, _ = step(state, stream.snapshot(), stream.t)
    restored = JudgeState.from_json(json.loads(json.dumps(state.to_json())), config)
    assert restored.first_seen == {"fresh": 1.0}
    stream.advance(100)
    _, verdict = step(restored, stream.snapshot(), stream.t)
    assert any("fresh: warming up, not judged for 7.0s more" in n for n in verdict.notes)


@pytest.mark.parametrize("bad", ["soon", -5, "-1s", True])
def test_a_bad_warmup_names_the_field(bad):
    with pytest.raises(JudgeConfigError, match=r"test\.yaml: (spec\.judge\.)?warmup"):
        make_config(warmup=bad)


def test_a_candidate_in_its_warmup_says_so_and_holds_max_samples_open():
    config = make_config(warmup="30s", maxSamples=1000, minSamples=500)
    stream = Stream({"mainline": WARM, "fresh": WARM}, np.random.default_rng(2))
    state = JudgeState.new(config)
    for _ in range(5):  # the mainline passes maxSamples while the candidate warms up
        stream.advance(400)
        state, verdict = step(state, stream.snapshot(), stream.t)
    assert state.totals["mainline"].requests == 2000 and verdict.variants["fresh"].requests == 0
    assert verdict.decision.action != "stop", verdict.decision
    assert verdict.variants["fresh"].reason == "warming up: not judged for 26.0s more (warmup)"
