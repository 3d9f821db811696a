"""Smoke test of benchmarks/router_vs_nginx.py: one quick round end to end.

Needs nginx and wrk.  Without them the test is skipped on a workstation, but
fails in CI (CI=true), where .ci/run installs both.
"""

from __future__ import annotations

import json
import math
import os
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
