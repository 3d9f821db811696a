"""`bakeoff run` end to end: real processes, the real router, real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import pytest

from tests.conftest import eventually_async
from tests.controller.conftest import alive, bakeoff_doc, drive_load, group_alive, variant_doc, write_docs

pytestmark = pytest.mark.slow


# Which of erroring's rollback and better's promotion comes first depends on the request rate: alone.
# And on the split: CI saw better promoted at 399 requests (observed 17.8% conversion) while a few dozen
# sticky ids had given erroring 245, under minSamples, so it left as "better won". Here every request
# comes under a new id (an even split) and better converts 14%, so it takes several looks more to be sure.
@pytest.mark.serial
async def test_rolls_back_the_bad_promotes_the_better_survives_a_crash(tmp_path, runs):
    spec = write_docs(
        tmp_path / "bake.yaml",
        [
            bakeoff_doc(),
            variant_doc("erroring", "error"),
            variant_doc("slow", "slow"),
            variant_doc("better", "somewhat-better"),
            variant_doc("doomed", "good"),
        ],
    )
    run = runs(spec, tmp_path / "state", "--exit-on-decision")
    st = await run.wait_for(lambda s: s if s.get("weights", {}).get("doomed") else None, 30, "doomed is serving")
    url = st["router"]["url"]
    stop = asyncio.Event()
    t0 = time.monotonic()
    # Kill one serving candidate's process mid-run, before the load starts (with load
    # the judge may decide within a second, before the crash is seen): it is marked
    # failed and leaves the split, and the run goes on to its decision.
    os.kill(st["workloads"]["doomed"]["pid"], signal.SIGKILL)
    st = await run.wait_for(
        lambda s: s if s["variants"]["doomed"]["phase"] == "RolledBack" else None, 10, "doomed marked failed"
    )
    assert st["variants"]["doomed"]["failed"] is True
    assert "doomed" not in st["weights"]
    assert st["decision"] is None
    load = asyncio.create_task(drive_load(url, stop, users=40, new_user=1.0))
    try:
        await run.wait_for(lambda s: s.get("decision"), 45, "a decision")
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
        sent = await load
    assert run.proc.wait(20) == 0, run.output()[-3000:]
    final = run.status()
    assert final["decision"]["action"] == "promote", final["decision"]
    assert final["decision"]["winner"] == "better"
    phases = {n: v["phase"] for n, v in final["variants"].items()}
    assert phases == {"erroring": "RolledBack", "slow": "RolledBack", "better": "Promoted", "doomed": "RolledBack"}, (
        phases
    )
    assert final["mainline"] == "better"
    assert elapsed < 45, elapsed
    assert sent > 1000
    journal = run.journal()
    kinds = [(e["type"], e.get("variant")) for e in journal]
    assert ("rolled_back", "erroring") in kinds and ("rolled_back", "slow") in kinds
    assert ("failed", "doomed") in kinds
    assert kinds.count(("promoted", "better")) == 1
    assert all(
        e.get("commit") == f"c0ffee-{e['variant']}" for e in journal if e.get("variant") not in (None, "mainline")
    )
    # every process is gone after --exit-on-decision
    for w in final["workloads"].values():
        assert not group_alive(w["pgid"]), w
    # reports
    report = json.loads((tmp_path / "state" / "report.json").read_text())
    assert report["decision"]["winner"] == "better"
    assert set(report["latency"]) >= {"mainline", "better", "slow"}
    assert report["latency"]["slow"]["quantiles_ms"]["p50"] > 12
    assert len(report["history"]) >= 2
    html = (tmp_path / "state" / "report.html").read_text()
    assert "<svg" in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    md = (tmp_path / "state" / "report.md").read_text()
    assert "Promoted `better`" in md
    out = run.output()
    assert "rolled_back  erroring" in out and "promoted     better" in out


async def _load_until(run, pred, timeout, what, users=24):
    st = await run.wait_for(lambda s: s if s.get("weights") and s.get("router") else None, 20, "routes")
    stop = asyncio.Event()
    load = asyncio.create_task(drive_load(st["router"]["url"], stop, users=users))
    try:
        return await run.wait_for(pred, timeout, what)
    finally:
        stop.set()
        await load


async def _variant_of(url: str) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.get(f"{url}/x", headers={"X-User-Id": "someone"}) as r:
            return r.headers["X-Bakeoff-Variant"]


async def test_restart_after_kill_9_never_promotes_twice_and_ctrl_c_leaves_nothing(tmp_path, runs):
    spec = write_docs(tmp_path / "bake.yaml", [bakeoff_doc(), variant_doc("better", "better")])
    state = tmp_path / "state"
    first = runs(spec, state)
    st = await _load_until(
        first, lambda s: s if s.get("decision") and s["weights"] == {"better": 1.0} else None, 40, "a promotion"
    )
    assert st["decision"]["winner"] == "better"
    old_pids = [w["pid"] for w in st["workloads"].values()]
    first.proc.kill()  # kill -9 the run itself, right after the decision
    first.proc.wait(10)
    promoted = [e for e in first.journal() if e["type"] == "promoted"]
    assert len(promoted) == 1

    second = runs(spec, state)
    st = await second.wait_for(
        lambda s: (
            s
            if s.get("running") and s.get("weights") == {"better": 1.0} and s["router"]["url"] != st["router"]["url"]
            else None
        ),
        20,
        "the restarted run serving the winner",
    )
    assert st["phase"] == "Promoted" and st["mainline"] == "better"
    assert st["variants"]["better"]["phase"] == "Promoted"
    assert set(st["workloads"]) == {"better"}  # the old mainline is not started again
    assert await _variant_of(st["router"]["url"]) == "better"
    # Nothing to wait for: a few reconcile passes in which a second promotion must NOT happen.
    await asyncio.sleep(1.5)
    journal = second.journal()
    assert [e["type"] for e in journal].count("promoted") == 1
    assert journal[-1]["type"] == "run_started" and journal[-1]["resumed"] is True
    # the first run's workloads died with it (SIGTERM from the kernel on the parent's death)
    await eventually_async(
        lambda: [p for p in old_pids if alive(p)],
        until=lambda left: left == [],
        what="the first run's workloads to die",
    )

    # Ctrl-C: everything stops, nothing is left behind
    pgids = [w["pgid"] for w in st["workloads"].values()]
    second.proc.send_signal(signal.SIGINT)
    assert second.proc.wait(20) == 0  # after a decision Ctrl-C exits with the decision's code (promoted: 0)
    assert not any(group_alive(g) for g in pgids)
    assert second.status()["running"] is False


async def test_ctrl_c_mid_run_leaves_no_process_and_a_restart_resumes(tmp_path, runs):
    b = bakeoff_doc()
    b["spec"]["routing"]["stepInterval"] = "1s"
    b["spec"]["judge"]["minSamples"] = 50  # a step moves on judged requests only: the load brings them
    b["spec"]["load"] = {"users": 8, "think": "10ms", "requests": [{"path": "/checkout"}]}
    spec = write_docs(tmp_path / "bake.yaml", [b, variant_doc("v1", "good"), variant_doc("v2", "good")])
    state = tmp_path / "state"
    run = runs(spec, state)
    # A step moves on evidence only (and not for a candidate with a metric judged worse, which an
    # A/A run can show by chance): wait until one candidate has moved up.
    st = await run.wait_for(
        lambda s: s if len(s["variants"]) == 2 and any(v["step"] == 1 for v in s["variants"].values()) else None,
        20,
        "a candidate on step 2",
    )
    pgids = [w["pgid"] for w in st["workloads"].values()]
    assert len(pgids) == 3 and all(group_alive(g) for g in pgids)
    run.proc.send_signal(signal.SIGINT)
    assert run.proc.wait(20) == 130
    assert not any(group_alive(g) for g in pgids)
    final = run.status()
    assert final["decision"] is None
    before = {n: (v["phase"], v["step"]) for n, v in final["variants"].items()}
    assert all(phase == "Serving" for phase, _ in before.values()), before

    again = runs(spec, state)
    # Each resumed candidate rejoins the split once its new process is healthy: wait for both.
    st = await again.wait_for(
        lambda s: s if s.get("weights", {}).get("v1") and s.get("weights", {}).get("v2") else None, 20, "resumed split"
    )
    assert {n: (v["phase"], v["step"]) for n, v in st["variants"].items()} == before  # not back to step 1
    shares = {n: (0.1, 0.2)[step] for n, (_, step) in before.items()}
    assert st["weights"] == pytest.approx({"mainline": 1 - sum(shares.values()), **shares})
    assert [e["type"] for e in again.journal()].count("admitted") == 2  # not admitted again
    again.proc.send_signal(signal.SIGTERM)
    assert again.proc.wait(20) == 128 + signal.SIGTERM
    assert not any(group_alive(w["pgid"]) for w in again.status()["workloads"].values())
