"""`bakeoff demo` end to end: real shop processes, router, judge and load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from bakeoff.cli.demo import decisions_of
from bakeoff.controller.platforms.local import free_port
from tests.conftest import eventually

ROOT = Path(__file__).resolve().parents[2]


def test_decisions_are_timed_from_the_first_admission_and_count_requests_at_the_last_look():
    events = [
        {"type": "run_started", "at": 90.0},
        {"type": "admitted", "variant": "a", "at": 100.0},
        {"type": "admitted", "variant": "b", "at": 100.5},
        {"type": "rolled_back", "variant": "a", "at": 104.2},
        {"type": "lost", "variant": "c", "at": 130.0},
        {"type": "promoted", "variant": "b", "at": 130.0},
    ]
    history = [
        {"at": 103.0, "variants": {"a": {"requests": 250}, "b": {"requests": 240}}},
        {"at": 104.1, "variants": {"a": {"requests": 330}, "b": {"requests": 320}}},
        {"at": 129.9, "variants": {"b": {"requests": 5000}}},
        {"at": 131.0, "variants": {"b": {"requests": 5100}}},
    ]
    assert decisions_of(events, history) == {
        "decisions": [
            {"variant": "a", "action": "rollback", "after_s": 4.2, "requests": 330},
            {"variant": "b", "action": "promote", "after_s": 30.0, "requests": 5000},
        ],
        "winner": "b",
    }


@pytest.mark.slow
@pytest.mark.serial  # latency guardrails on real processes: needs the machine to itself (n-plus-one is +20-40% p50)
def test_the_demo_rolls_back_the_slow_and_buggy_builds_and_promotes_the_better_one(tmp_path):
    ui_port = free_port()
    out_file = tmp_path / "demo.out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bakeoff", "demo", "--headless", "--no-locust", "--state-dir", str(tmp_path / "state"),
         "--ui", "--ui-port", str(ui_port)],
        cwd=ROOT, stdout=open(out_file, "w"), stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    tmp_path = tmp_path / "state"
    try:
        # the live dashboard serves the demo's bake-off while it runs (before: --ui was refused, exit 2)
        def dashboard() -> str | None:
            if proc.poll() is not None:
                raise AssertionError(out_file.read_text()[-3000:])
            with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/", timeout=5) as r:
                return r.read().decode()

        page = eventually(dashboard, timeout=120, interval=0.5, retry=(OSError,), what="the demo's dashboard")
        assert 'data-bakeoff="shop"' in page, page[:2000]
        assert f"dashboard: http://127.0.0.1:{ui_port}/" in out_file.read_text()
        proc.wait(timeout=300)
        out = out_file.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    actions = {d["variant"]: d["action"] for d in summary["decisions"]}
    assert summary["winner"] == "better-checkout", out[-3000:]
    assert actions == {
        "n-plus-one": "rollback",
        "buggy": "rollback",
        "eager-recommendations": "rollback",  # on CPU per request (issue 20): its pages are as fast
        "better-checkout": "promote",
    }
    for d in summary["decisions"]:
        assert d["after_s"] < 180 and d["requests"] >= 300  # minSamples before any decision
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["load"] == "32 simulated shoppers (think 0.1s)"  # the load the demo drove, not "live traffic"
    report = json.loads((tmp_path / "report.json").read_text())
    assert report
    status = json.loads((tmp_path / "status.json").read_text())
    assert "cpu_per_request" in status["variants"]["eager-recommendations"]["reason"], status["variants"]
    # the report shows CPU per request and memory of every variant (each one's process tree)
    assert set(report["resources"]) == {"mainline", "cached", "n-plus-one", "buggy", "better-checkout",
                                        "eager-recommendations"}  # fmt: skip
    assert all(r["cpu_ms_per_request"] and r["memory_mib"] for r in report["resources"].values()), report["resources"]
    assert (tmp_path / "report.html").read_text().count("<svg") >= 1
    # Nothing of the demo is left running.
    leftovers = subprocess.run(["pgrep", "-f", str(ROOT / "examples" / "shop")], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""
