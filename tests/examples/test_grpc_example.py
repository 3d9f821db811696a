"""examples/grpc through the real entry point: `python -m bakeoff run ... --locustfile ... --headless`.

Three implementations of a gRPC service (quotes.Quotes) behind the router's
HTTP/2 side, driven by grpcio clients in locust; the one whose Search method
answers UNAVAILABLE is rolled back on that method's error rate.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "grpc"

pytestmark = [pytest.mark.slow, pytest.mark.serial]


def test_the_grpc_bake_off_rolls_back_the_one_failing_one_method(tmp_path):
    state = tmp_path / "state"
    r = subprocess.run(
        [sys.executable, "-m", "bakeoff", "run", str(EXAMPLE / "bakeoff.yaml"), "--locustfile",
         str(EXAMPLE / "locustfile.py"), "--headless", "--exit-on-decision", "--state-dir", str(state)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    status = json.loads((state / "status.json").read_text())
    assert status["variants"]["flaky"]["phase"] == "RolledBack", status["variants"]["flaky"]
    assert "error_rate" in status["variants"]["flaky"]["reason"]
    assert status["decision"]["action"] == "promote" and status["decision"]["winner"] == "memo", status["decision"]
    snap = json.loads((state / "report.json").read_text())
    codes = snap["status_codes"]
    # gRPC calls were counted by grpc-status: the mainline's all OK, flaky's UNAVAILABLE as 5xx
    assert codes["mainline"]["2xx"] > 100 and codes["mainline"].get("5xx", 0) == 0, codes
    assert codes["flaky"].get("5xx", 0) > 0, codes
