"""Cost of one judge look (``step``) for k candidates and R routes (issue 18 item 7).

For (k, R) in {2, 6, 12, 20} x {0, 16, 64}: a simulated bake-off (every metric
kind: error rate, two latency quantiles, a proportion and two means, as in
tests/judge/data/record_replay.py) whose snapshots are generated once, then
judged look by look; the time of each look after two warm-up looks is taken.

Before/after in one run: with ``BEFORE=DIR`` (a checkout of an earlier
revision, e.g. ``git archive layout core judge | tar -x -C DIR``) every cell is
also measured with the judge found in DIR, in its own process, interleaved
with the current one (alternating which goes first) so a load that comes and
goes on a shared machine hits both alike.  Each figure is the median over
``ROUNDS`` (default 3) rounds x 3 looks, with the spread (min, max) beside it,
and the median CPU time of the judging process per look (``cpu_median``: on a
shared machine the wall time also holds the time the process waited for a core).
A cell the earlier judge refuses (more than 16 routes) shows "refused".

    .venv/bin/python benchmarks/judge_speed.py          # make bench-judge
    BEFORE=/tmp/base ROUNDS=5 .venv/bin/python benchmarks/judge_speed.py
    ONLY=12x16,20x64 BEFORE=/tmp/base .venv/bin/python benchmarks/judge_speed.py   # some cells

The last line of output is one JSON object: ``{"step_ms": {"k=12,R=16":
{"after": {"median", "min", "max", "cpu_median"}, "before": ...}}}``.
"""

from __future__ import annotations

import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KS = (2, 6, 12, 20)
RS = (0, 16, 64)
WARM, TIMED = 2, 3
HERE = Path(__file__).resolve().parent


def _snapshots(k: int, r: int) -> list[tuple[dict, float]]:
    sys.path.insert(0, str(HERE.parent / "tests" / "judge" / "data"))
    import numpy as np
    from record_replay import _arms, _routes

    from bakeoff.judge.simulate import Stream

    stream = Stream(_arms(k), np.random.default_rng(1000 * k + r), routes=_routes(r) if r else None)
    out = []
    for _ in range(WARM + TIMED):
        stream.advance(300)
        out.append((stream.snapshot(), stream.t))
    return out


def worker(tree: str, path: str) -> None:
    """Judge the pickled looks with the judge in ``tree`` ('' = the installed one); print ms per look."""
    if tree:
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        sys.path[:0] = [f"{tree}/core/src", f"{tree}/judge/src"]
    sys.path.insert(0, str(HERE.parent / "tests" / "judge" / "data"))
    from record_replay import EVERY_KIND

    from bakeoff.judge.config import config_from_dict
    from bakeoff.judge.core import JudgeState, step

    with open(path, "rb") as f:
        looks = pickle.load(f)
    state = JudgeState.new(config_from_dict(EVERY_KIND, "bench.yaml"))
    times, cpu = [], []
    for i, (snap, now) in enumerate(looks):
        t0, c0 = time.perf_counter(), time.process_time()
        state, verdict = step(state, snap, now)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if any(n.startswith("ignored") for n in verdict.notes):
            print(json.dumps({"refused": verdict.notes[0]}))
            return
        if i >= WARM:
            times.append(dt * 1000)
            cpu.append(dc * 1000)
    print(json.dumps({"ms": times, "cpu_ms": cpu}))


def _run(tree: str, path: str) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    r = subprocess.run(
        [sys.executable, __file__, "--worker", tree, path], capture_output=True, text=True, env=env, timeout=3600
    )
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def _summary(ms: list[float]) -> dict | None:
    if not ms:
        return None
    return {"median": round(statistics.median(ms), 1), "min": round(min(ms), 1), "max": round(max(ms), 1)}


def main() -> int:
    before = os.environ.get("BEFORE", "")
    rounds = int(os.environ.get("ROUNDS", "3"))
    only = set(filter(None, os.environ.get("ONLY", "").split(",")))  # e.g. ONLY=12x16,20x64
    sides = ["after"] + (["before"] if before else [])
    result: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in KS:
            for r in RS:
                if only and f"{k}x{r}" not in only:
                    continue
                path = f"{tmp}/k{k}_r{r}.pickle"
                with open(path, "wb") as f:
                    pickle.dump(_snapshots(k, r), f)
                ms: dict[str, list[float]] = {s: [] for s in sides}
                cpu_ms: dict[str, list[float]] = {s: [] for s in sides}
                notes: dict[str, str] = {}
                for i in range(rounds):
                    order = sides if i % 2 == 0 else sides[::-1]
                    for side in order:
                        if side in notes:
                            continue
                        out = _run(before if side == "before" else "", path)
                        if "ms" in out:
                            ms[side] += out["ms"]
                            cpu_ms[side] += out.get("cpu_ms", [])
                        else:
                            notes[side] = "refused" if "refused" in out else out.get("error", "?")
                cell = {s: (_summary(ms[s]) if s not in notes else notes[s]) for s in sides}
                for s in sides:
                    if isinstance(cell[s], dict):
                        cell[s]["cpu_median"] = _summary(cpu_ms[s])["median"]  # type: ignore[index]
                result[f"k={k},R={r}"] = cell
                row = "  ".join(
                    f"{s} {c['median']:8.1f} ms [{c['min']:.0f}-{c['max']:.0f}] cpu {c['cpu_median']:7.1f}"
                    if isinstance(c, dict)
                    else f"{s} {c}"
                    for s, c in cell.items()
                )
                print(f"k={k:<3} R={r:<3} {row}", flush=True)
    print(json.dumps({"step_ms": result, "rounds": rounds, "looks_per_round": TIMED}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3])
        sys.exit(0)
    sys.exit(main())
