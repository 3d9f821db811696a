"""Start-up through `bakeoff run`: a candidate that is still starting within its startTimeout is
waited for (the bake-off is not stopped because the candidates the judge has seen are all out),
and one that never becomes healthy says so and where its log is."""

from __future__ import annotations

import asyncio
import sys

import pytest

from tests.controller.conftest import SERVICE, bakeoff_doc, drive_load, variant_doc, write_docs

pytestmark = pytest.mark.slow


def late(seconds: float, behaviour: str) -> list[str]:
    # a service that needs `seconds` before it listens (a slow JIT warm-up, a cache load, ...)
    return ["sh", "-c", f"sleep {seconds} && exec {sys.executable} {SERVICE} --port {{port}} --behaviour {behaviour}"]


async def test_a_late_candidate_within_start_timeout_is_waited_for_and_a_never_healthy_one_says_so(tmp_path, runs):
    docs = [
        bakeoff_doc(),
        variant_doc("erroring", "error"),
        variant_doc("late", "better", command=late(8, "better"), startTimeout="40s"),
        variant_doc("never", "good", command=["sh", "-c", "sleep 120"], startTimeout="3s"),
    ]
    spec = write_docs(tmp_path / "bake.yaml", docs)
    run = runs(spec, tmp_path / "state", "--exit-on-decision")
    st = await run.wait_for(lambda s: s if s.get("router", {}).get("url") else None, 30, "the router")
    stop = asyncio.Event()
    load = asyncio.create_task(drive_load(st["router"]["url"], stop, users=30))
    try:
        st = await run.wait_for(
            lambda s: s if s["variants"]["erroring"]["phase"] == "RolledBack" else None, 30, "erroring rolled back"
        )
        st = await run.wait_for(
            lambda s: s if s["variants"]["never"]["phase"] == "RolledBack" else None, 30, "never rolled back"
        )
        # while `late` is starting, the judge has seen only candidates that are out: no stop yet
        assert st["decision"] is None, st["decision"]
        never = st["variants"]["never"]
        assert never["failed"]
        assert "never became healthy within 3s" in never["reason"] and "logs/never.log" in never["reason"]
        st = await run.wait_for(
            lambda s: s if s["variants"]["late"]["phase"] != "Pending" else None, 40, "late admitted"
        )
        assert st["variants"]["late"]["phase"] in ("Serving", "Promoted"), st["variants"]["late"]
        await run.wait_for(lambda s: s.get("decision"), 60, "a decision")
    finally:
        stop.set()
        await load
    final = run.status()
    assert run.proc.wait(20) in (0, 3), run.output()[-3000:]
    admitted = [e for e in run.journal() if e.get("type") == "admitted" and e.get("variant") == "late"]
    assert admitted, "late was admitted"
    stops = [e for e in run.journal() if e.get("type") == "stopped"]
    assert all(e["at"] >= admitted[0]["at"] for e in stops), (stops, admitted)
    assert final["decision"]["action"] in ("promote", "stop")
