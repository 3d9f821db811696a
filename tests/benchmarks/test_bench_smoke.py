"""Smoke test of benchmarks/router_vs_nginx.py: one quick round end to end.

Needs nginx and wrk.  Without them the test is skipped on a workstation, but
fails in CI (CI=true), where .ci/run installs both.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "router_vs_nginx.py"
KEYS = (
    "router_rps", "nginx_rps", "rps_ratio", "router_added_p50_us", "nginx_added_p50_us",
    "added_p50_ratio", "router_rss_mb_after",
)  # fmt: skip


def _require(tool: str) -> None:
    if shutil.which(tool) or any(os.access(f"{d}/{tool}", os.X_OK) for d in ("/usr/sbin", "/usr/bin")):
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{tool} is missing in CI: .ci/run must install it (apt-get install nginx-light wrk)")
    pytest.skip(f"{tool} is not installed")


@pytest.mark.serial
@pytest.mark.slow
def test_router_vs_nginx_quick() -> None:
    _require("nginx")
    _require("wrk")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{proc.stderr}"
    report = json.loads(lines[-1])
    missing = [k for k in KEYS if k not in report]
    assert not missing, f"missing keys {missing} in {lines[-1]}"
    for k in KEYS:
        assert isinstance(report[k], (int, float)) and math.isfinite(report[k]), (k, report[k])
    assert report["router_rps"] > 0
    assert report["nginx_rps"] > 0
    assert report["rps_ratio"] > 0
    assert report["router_rss_mb_after"] > 0
    assert report["router_requests_total"] > 0
    assert report["checks_ok"], proc.stdout


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


@pytest.mark.slow
def test_router_vs_nginx_reports_spread_cpu_ratio_builds_and_workers_side_by_side() -> None:
    """Issue 18 items 2-4: every router build and a 2-worker router measured in the same run, with spreads.

    The compiled router, the pure-Python fallback (BAKEOFF_PURE_PYTHON=1) and
    a router with 2 workers run beside nginx; the last line carries
    cpu_per_req_ratio, each ratio's median, min, max and IQR, which build each
    router ran, and the 2-worker router's throughput relative to 1 worker.
    """
    _require("nginx")
    _require("wrk")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--rounds", "2", "--compare-pure", "--workers-scaling"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["checks_ok"], proc.stdout
    assert _finite(report["cpu_per_req_ratio"]) and report["cpu_per_req_ratio"] > 0, report
    assert len(report["cpu_per_req_ratio_rounds"]) == report["rounds"] == 2
    for key in ("rps_ratio", "added_ratio", "cpu_ratio"):
        s = report["spread"][key]
        assert s["min"] <= s["q1"] <= s["median"] <= s["q3"] <= s["max"], (key, s)
    routers = report["routers"]
    assert set(routers) == {"router", "pure", "w2"}, routers
    assert routers["pure"]["hot_path"] == "pure Python (BAKEOFF_PURE_PYTHON=1)"
    if os.environ.get("CI") == "true":  # CI installs with a C compiler: the default router runs compiled
        assert routers["router"]["hot_path"] == "compiled (mypyc)", routers["router"]
    assert routers["w2"]["workers"] == 2 and routers["router"]["workers"] == 1
    for name, r in routers.items():
        assert r["rps"] > 0 and _finite(r["cpu_us_per_req"]), (name, r)
        # No error status ever; a socket error (a timeout, a reset) at most once in 10,000 requests on a
        # machine shared with the xdist pass (CI once counted one error there, its kind not recorded then;
        # 6 rounds beside a loaded machine here had none): this tests the benchmark's reporting, the
        # router's correctness is tests/router's.
        assert r["wrk_non_2xx"] == 0, (name, r, proc.stdout[-4000:])
        assert r["wrk_socket_errors"] <= max(1, r["requests"] // 10_000), (name, r, proc.stdout[-4000:])
    scaling = report["workers_scaling"]["w2"]
    assert _finite(scaling["median"]) and scaling["median"] > 0, scaling
    assert "steal time up to" in proc.stdout and _finite(report["max_steal_cpu_pct"])
    # The -c1 runs are interleaved slots (one per round with --quick): the added p50 is per slot, with its spread,
    # and its ratio is of the medians.
    assert report["latency_slots"] == 2, report["latency_slots"]
    for name in ("nginx", "router", "pure", "w2"):
        s = report["added_p50_us_spread"][name]
        assert s["min"] <= s["q1"] <= s["median"] <= s["q3"] <= s["max"], (name, s)
    assert report["router_added_p50_us"] == report["added_p50_us_spread"]["router"]["median"]
    assert report["added_p50_ratio"] == pytest.approx(
        report["router_added_p50_us"] / max(report["nginx_added_p50_us"], 1.0),
        abs=0.06,  # from rounded inputs
    )
    assert re.search(r"^rps w2/router per round: .*median [0-9.]+ \(min", proc.stdout, re.M), proc.stdout


@pytest.mark.slow
def test_router_vs_nginx_counts_instructions_per_request_for_nginx_and_each_router() -> None:
    """Issue 18: ``--instructions`` measures CPU per request as instructions (callgrind), repeatable on a busy machine.

    nginx and the router (and a 2-worker router, every process of it counted)
    each run alone under valgrind and get the same fixed stream of requests;
    the last line carries instructions per request and the router/nginx ratio.
    """
    _require("nginx")
    _require("valgrind")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--instructions", "--instr-requests", "200", "--instr-warmup", "40",
         "--instr-users", "40", "--workers-scaling"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["mode"] == "instructions"
    targets = report["targets"]
    assert set(targets) == {"nginx", "router", "w2"}, targets
    for name, t in targets.items():
        assert t["answered_200"] == t["requests"] == 200, (name, t)
        assert t["instructions_per_req"] > 1000, (name, t)  # a proxied request is thousands of instructions
    assert targets["nginx"]["processes"] == 1 and targets["router"]["processes"] == 1
    assert targets["w2"]["processes"] == 3, targets["w2"]  # the supervisor and its two workers
    ratio = report["cpu_per_req_ratio_instr"]
    assert ratio == pytest.approx(report["router_instr_per_req"] / report["nginx_instr_per_req"], rel=1e-2)
    assert re.search(r"^instructions per request router/nginx: [0-9.]+$", proc.stdout, re.M), proc.stdout


def test_router_vs_nginx_tracing_reports_cpu_per_request_off_1pct_and_100pct() -> None:
    """Issue 20 item 4: CPU per request with tracing propagating only, at 1% and at 100% sampling,
    beside the router without tracing (today's figure), in the last JSON line; the sampled spans
    really went out (the routers' own counts of spans exported to the benchmark's OTLP sink)."""
    _require("nginx")
    _require("wrk")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--rounds", "1", "--tracing"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["checks_ok"], proc.stdout
    tracing = report["tracing"]
    assert _finite(tracing["router_cpu_us_per_req"]), tracing
    assert {k: v["sample_ratio"] for k, v in tracing.items() if k != "router_cpu_us_per_req"} == {
        "trace0": 0.0,
        "trace1pct": 0.01,
        "trace100": 1.0,
    }, tracing
    for name in ("trace0", "trace1pct", "trace100"):
        t = tracing[name]
        assert _finite(t["cpu_us_per_req"]) and _finite(t["cpu_per_req_vs_router"]["median"]), (name, t)
    assert tracing["trace0"]["spans"]["exported"] == 0  # propagation only: no span recorded
    served = report["routers"]["trace100"]["rps"]
    assert served > 0 and tracing["trace100"]["spans"]["exported"] > 0, tracing["trace100"]
    assert 0 < tracing["trace1pct"]["spans"]["exported"] < tracing["trace100"]["spans"]["exported"], tracing
