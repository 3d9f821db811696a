"""The report's one sentence per variant (bakeoff.controller.report.model.why), on the cases the issue names."""

from __future__ import annotations

from bakeoff.controller.report.model import why

SPEC = [{"name": "latency_p50", "kind": "latency", "role": "guardrail", "harm": "increase", "tolerance": 0.3,
         "relative": True}]  # fmt: skip


def report(phase: str, state: str, ci: list[float], events: list[dict]) -> dict:
    mv = {"state": state, "estimate": sum(ci) / 2, "ci": ci, "scale": "ratio", "role": "guardrail"}
    return {
        "started_at": 100.0,
        "original_mainline": "mainline",
        "decision": None,
        "judge": {"metrics": SPEC},
        "variants": {"mainline": {"phase": "Mainline"}, "cand": {"phase": phase, "reason": "", "requests": 900}},
        "history": [{"at": 110.0, "variants": {"cand": {"requests": 640, "metrics": {"latency_p50": mv}}}}],
        "events": events,
    }


def test_what_blocked_a_stopped_run_is_the_interval_still_overlapping_the_tolerance():
    rep = report("Lost", "unknown", [0.105, 0.323], [])
    rep["variants"]["cand"]["reason"] = "stopped without a winner"
    w = why(rep, "cand")
    assert w["sentence"] == (
        "Lost: stopped without a winner, while latency_p50 interval [+10.5%, +32.3%] still overlaps the +30.0% tolerance."
    )


def test_a_rollback_says_which_interval_lay_beyond_the_tolerance_with_time_and_requests():
    ev = [{"at": 112.5, "type": "rolled_back", "variant": "cand", "reason": "worse than tolerated"}]
    w = why(report("RolledBack", "worse", [0.352, 0.61], ev), "cand")
    assert w["sentence"] == "Rolled back: latency_p50 interval [+35.2%, +61.0%] lies beyond the +30.0% tolerance."
    assert (w["after_s"], w["requests"]) == (12.5, 640)  # the look at the decision: 640 requests, not the 900 now
