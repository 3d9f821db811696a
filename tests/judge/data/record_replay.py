"""Record the judge replay cases (tests/judge/test_replay.py): run once, commit the output.

Each case is a sequence of looks generated with :mod:`bakeoff.judge.simulate`
(k candidates, routes, every metric kind, regressions, restarts, several
routers, a variant joining late), saved with the verdict of every look and the
judge state (``bakeoff.judge-state/v3``) after a middle look, as computed by the
judge of the commit that recorded them.  The replay test feeds the saved
snapshots to today's judge and compares every number, so a refactor or a
speed-up that changes any statistic fails it.  Re-record only when a change of
the statistics is intended (and say so in the commit):

    .venv/bin/python tests/judge/data/record_replay.py
"""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import numpy as np

from bakeoff.judge.config import config_from_dict
from bakeoff.judge.core import JudgeState, step
from bakeoff.judge.simulate import Arm, Route, Stream

HERE = Path(__file__).parent

EVERY_KIND = {
    "alpha": 0.05,
    "control": "mainline",
    "minSamples": 400,
    "maxSamples": 200_000,
    "guardrails": [
        {"metric": "error_rate", "maxIncrease": 0.005},
        {"metric": "latency_p99", "maxIncreaseRatio": 0.1},
        {"metric": "latency_p50", "maxIncreaseRatio": 0.05, "alphaWeight": 2},
        {"metric": "revenue", "kind": "mean", "per": "value", "maxDecreaseRatio": 0.1},
        {"metric": "conversion", "kind": "proportion", "maxDecrease": 0.01},
    ],
    "objective": {"metric": "revenue", "kind": "mean", "per": "request", "direction": "higher"},
}


def _routes(n: int) -> dict[str, Route]:
    rng = np.random.default_rng(n)
    shares = rng.dirichlet(np.ones(n))
    return {
        f"r{i:02d}": Route(share=float(s), median_factor=float(f))
        for i, (s, f) in enumerate(zip(shares, rng.uniform(0.3, 3.0, n)))
    }


def _arms(k: int) -> dict[str, Arm]:
    arms = {"mainline": Arm()}
    kinds = [
        Arm(conversion=0.07),  # better objective
        Arm(error_rate=0.03),  # errors
        Arm(median=0.12),  # slower
        Arm(tail_factor=1.5),  # slower tail
        Arm(conversion=0.045, revenue_mean=18.0),  # worse business
        Arm(),  # same
    ]
    for i in range(k):
        arms[f"v{i + 1:02d}"] = kinds[i % len(kinds)]
    return arms


def case_plain(name: str, k: int, n_routes: int, looks: int, batch: int, seed: int) -> dict:
    """k candidates and n_routes routes, one router, a regression part-way through."""
    routes = _routes(n_routes) if n_routes else None
    arms = _arms(k)
    route_arms = {}
    if routes:
        first = next(iter(routes))
        route_arms[("v06" if k >= 6 else "v01", first)] = Arm(median=0.1 * routes[first].median_factor * 1.4)
    stream = Stream(arms, np.random.default_rng(seed), routes=routes, route_arms=route_arms)
    looks_out = []
    for j in range(looks):
        if j == looks // 2:
            stream.set_arm("v01", Arm(conversion=0.06, error_rate=0.02))
        stream.advance({v: batch * (2 if v == "mainline" else 1) for v in arms})
        looks_out.append({"snapshot": stream.snapshot(), "now": stream.t})
    # The states of the big cases would make the files large; the others test loading.
    return {"name": name, "config": EVERY_KIND, "looks": looks_out, "keep_state": k * n_routes < 100}


def case_messy(seed: int) -> dict:
    """Two routers (a list of snapshots), one restarting, a late variant, a variant missing
    from some looks, a bad snapshot, an older snapshot, a look without the control,
    maxDuration and a fixed ``candidates``."""
    rng = np.random.default_rng(seed)
    routes = _routes(4)
    arms = {"mainline": Arm(), "fast": Arm(median=0.08, conversion=0.08), "late": Arm(error_rate=0.02)}
    a = Stream(dict(arms), rng, router_id="a", started_at=0.0, routes=routes)
    b = Stream(dict(arms), rng, router_id="b", started_at=0.0, routes=routes)
    cfg = {**EVERY_KIND, "candidates": 3, "maxDuration": "30s", "maxSamples": 50_000}
    looks_out = []
    for j in range(36):
        per = {"mainline": 300, "fast": 200, "late": 150 if j >= 8 else 0}
        a.advance(per)
        b.advance({k: v // 2 for k, v in per.items()})
        sa, sb = a.snapshot(), b.snapshot()
        if j < 8:
            for s in (sa, sb):
                s["variants"].pop("late")
        if j in (12, 13):
            sb["variants"].pop("fast")
        if j == 20:  # router b restarts: counters from zero
            b = Stream(dict(arms), rng, router_id="b", started_at=b.t, routes=routes)
            b.t = a.t
            b.advance({k: v // 2 for k, v in per.items()})
            sb = b.snapshot()
        snap: object = [sa, sb]
        if j == 5:
            snap = [sa, {"format": "nonsense"}]
        if j == 16:
            older = copy.deepcopy(sa)
            older["taken_at"] = sa["taken_at"] - 100.0
            snap = older
        if j == 3:
            snap = [{**sa, "variants": {k: v for k, v in sa["variants"].items() if k != "mainline"}}]
        if j == 27:
            snap = []
        looks_out.append({"snapshot": snap, "now": a.t + (0.5 if j == 30 else 0.0)})
    return {"name": "messy", "config": cfg, "looks": looks_out}


def case_promote(seed: int) -> dict:
    """A winner on a proportion objective (the promotion path), then looks after the decision."""
    cfg = {**EVERY_KIND, "objective": {"metric": "conversion", "kind": "proportion", "direction": "higher"}}
    cfg["guardrails"] = [
        {"metric": "error_rate", "maxIncrease": 0.03},
        {"metric": "latency_p90", "maxIncreaseRatio": 0.5},
        {"metric": "revenue", "kind": "mean", "per": "value", "maxDecreaseRatio": 0.5},
    ]
    arms = {"mainline": Arm(), "good": Arm(conversion=0.1), "meh": Arm(conversion=0.055)}
    stream = Stream(arms, np.random.default_rng(seed), routes=_routes(3))
    looks_out = []
    for _ in range(30):
        stream.advance(500)
        looks_out.append({"snapshot": stream.snapshot(), "now": stream.t})
    return {"name": "promote", "config": cfg, "looks": looks_out}


def record(case: dict) -> dict:
    config = config_from_dict(case["config"], f"{case['name']}.yaml")
    state = JudgeState.new(config)
    verdicts = []
    middle = len(case["looks"]) // 2
    saved = None
    for j, look in enumerate(case["looks"]):
        state, verdict = step(state, look["snapshot"], look["now"])
        verdicts.append(verdict.to_json())
        if j == middle and case.get("keep_state", True):
            saved = state.to_json()
    return {
        **case,
        "state_after_look": middle,
        "state": saved if case.get("keep_state", True) else None,
        "verdicts": verdicts,
    }


CASES = [
    lambda: case_plain("k2_r0", 2, 0, 40, 300, 1),
    lambda: case_plain("k6_r10", 6, 10, 16, 400, 2),
    lambda: case_plain("k12_r16", 12, 16, 6, 600, 3),
    lambda: case_messy(4),
    lambda: case_promote(5),
]


def main() -> None:
    for make in CASES:
        out = record(make())
        path = HERE / f"replay_{out['name']}.json.gz"
        with gzip.open(path, "wt", encoding="utf-8") as f:
            json.dump(out, f, allow_nan=False, separators=(",", ":"))
        print(path.name, path.stat().st_size, "bytes,", len(out["looks"]), "looks")


if __name__ == "__main__":
    main()
