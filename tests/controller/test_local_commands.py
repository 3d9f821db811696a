"""`bakeoff approve` and `bakeoff abort` from another shell reach a running `bakeoff run`."""

from __future__ import annotations

import asyncio
import getpass
import subprocess
import sys

import pytest

from tests.controller.conftest import ROOT, bakeoff_doc, drive_load, variant_doc, write_docs

pytestmark = pytest.mark.slow


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bakeoff", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


async def test_abort_stops_a_running_bake_off_without_a_winner_and_exit_3(tmp_path, runs):
    spec = write_docs(tmp_path / "bake.yaml", [bakeoff_doc(), variant_doc("a", "good")])
    state = tmp_path / "state"
    run = runs(spec, state, "--exit-on-decision")
    await run.wait_for(lambda s: s if s.get("weights", {}).get("a") else None, 30, "a serving")
    r = cli("abort", str(state), "--reason", "release freeze")
    assert r.returncode == 0, r.stderr
    st = await run.wait_for(lambda s: s if s.get("decision") else None, 10, "the abort")
    assert st["decision"]["action"] == "stop" and st["decision"]["cause"] == "aborted"
    assert "release freeze" in st["decision"]["reason"]
    aborted = [e for e in run.journal() if e["type"] == "aborted"]
    assert len(aborted) == 1 and aborted[0]["reason"] == "release freeze", aborted
    assert aborted[0]["user"] == getpass.getuser() and aborted[0]["at"] > 0, aborted
    assert run.proc.wait(20) == 3
    assert not (state / "abort").exists()


async def test_approve_promotes_a_manual_winner(tmp_path, runs):
    b = bakeoff_doc(promotion={"mode": "manual"})
    spec = write_docs(tmp_path / "bake.yaml", [b, variant_doc("better", "better")])
    state = tmp_path / "state"
    run = runs(spec, state, "--exit-on-decision")
    st = await run.wait_for(lambda s: s if s.get("router", {}).get("url") else None, 30, "the router")
    stop = asyncio.Event()
    load = asyncio.create_task(drive_load(st["router"]["url"], stop, users=30))
    try:
        await run.wait_for(lambda s: s if s["phase"] == "AwaitingApproval" else None, 60, "a winner waiting")
        r = cli("approve", str(state))
        assert r.returncode == 0 and "approved better" in r.stdout, r.stdout + r.stderr
        st = await run.wait_for(lambda s: s if s.get("decision") else None, 10, "the promotion")
    finally:
        stop.set()
        await load
    assert st["decision"]["winner"] == "better"
    assert run.proc.wait(20) == 0
