"""Issue 18 item 6: 64 routes per snapshot and 20 variants per bake-off are judged.

Through the real entry point (``python -m bakeoff judge`` on a snapshot file):
before, a snapshot with more than 16 routes was refused by the snapshot format
("by_route has 65 routes, at most 16 and 'other'") and nothing was judged.
"""

from __future__ import annotations

import numpy as np

from bakeoff.judge.simulate import Arm, Route, Stream

from .test_intake_cli import judge_look


def test_twenty_variants_and_sixty_four_routes_are_judged(tmp_path):
    routes = {f"r{i:02d}": Route(share=1.0) for i in range(64)} | {"other": Route(share=1.0)}
    arms = {"mainline": Arm()} | {f"v{i:02d}": Arm() for i in range(1, 20)}
    stream = Stream(arms, np.random.default_rng(7), routes=routes)
    stream.advance(640)
    out = judge_look(tmp_path, stream.snapshot(), min_samples=10)
    assert not [n for n in out["notes"] if n.startswith("ignored")], out["notes"]
    assert sorted(out["variants"]) == sorted(a for a in arms if a != "mainline")
    v = out["variants"]["v19"]
    assert v["requests"] == 640
    per_route = {m["route"] for m in v["metrics"].values() if m["metric"] == "latency_p50" and m["route"]}
    assert per_route == set(routes), sorted(set(routes) - per_route)
    # Bonferroni over 19 candidates x (64 routes, other, the stratified test) per routed guardrail
    assert out["tests_in_family"] >= 19 * 66
