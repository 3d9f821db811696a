"""A/A through the real router: examples/quotes' mainline against four copies of itself.

Each run is ``python -m bakeoff run`` (headless, --exit-on-decision) with the
same build as mainline and as k=4 candidates, equal shares, the guardrails of
examples/quotes and ``promotion: whenNoRegression``.  An identical build must
never be rolled back nor marked out; a promotion of a twin is fine (it is
within tolerance, which is what the mode promotes).  Prints one JSON line per
run and a summary; exits 1 if any run rolled back or marked out a twin.

    .venv/bin/python benchmarks/aa_real.py [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
QUOTES = ROOT / "examples" / "quotes"
K = 4


def bakeoff_file(path: Path) -> None:
    base = list(yaml.safe_load_all((QUOTES / "bakeoff.yaml").read_text()))[0]
    spec = base["spec"]
    spec["mainline"]["workingDir"] = str(QUOTES)
    spec["routing"].update(steps=[0.2], maxCandidateShare=0.8)
    spec["judge"].update(maxDuration="40s")
    spec["judge"]["guardrails"].append({"metric": "latency_p99", "maxIncreaseRatio": 0.5})
    twins = [
        {
            "apiVersion": "bakeoff.dev/v1alpha1",
            "kind": "Variant",
            "metadata": {"name": f"twin{i}"},
            "spec": {
                "bakeoff": "quotes",
                "command": ["python", "mainline.py", "--port", "{port}"],
                "workingDir": str(QUOTES),
            },
        }
        for i in range(K)
    ]
    path.write_text(yaml.safe_dump_all([base, *twins], sort_keys=False))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bakeoff-aa-"))
    spec = tmp / "aa.yaml"
    bakeoff_file(spec)
    alarms = 0
    for i in range(args.runs):
        state = tmp / f"run{i}"
        t0 = time.monotonic()
        r = subprocess.run(
            [sys.executable, "-m", "bakeoff", "run", str(spec), "--headless", "--exit-on-decision", "--state-dir", str(state)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        journal = [json.loads(line) for line in (state / "journal.jsonl").read_text().splitlines() if line.strip()]
        rolled = [e["variant"] for e in journal if e.get("type") in ("rolled_back", "failed")]
        report = json.loads((state / "report.json").read_text())
        outs = [n for n, v in ((report.get("verdict") or {}).get("variants") or {}).items() if v.get("status") == "out"]
        alarms += bool(rolled or outs)
        decision = report.get("decision") or {}
        print(
            json.dumps(
                {
                    "run": i,
                    "exit": r.returncode,
                    "seconds": round(time.monotonic() - t0, 1),
                    "decision": decision.get("action"),
                    "winner": decision.get("winner"),
                    "rolled_back": rolled,
                    "out": outs,
                }
            ),
            flush=True,
        )
    print(f"A/A, k={K}: {alarms} of {args.runs} real runs rolled back or marked out an identical build")
    return 1 if alarms else 0


if __name__ == "__main__":
    raise SystemExit(main())
