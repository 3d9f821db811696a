"""Issue 19, item 4: `bakeoff status` and the live table show each candidate's current share and
why it was retired, and stay readable with 20 variants (one row per variant, no line wider than the
terminal)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from types import SimpleNamespace

import numpy as np

from bakeoff.controller.reconcile import LOST, ROLLED_BACK, SERVING, ControllerState
from bakeoff.controller.view import LiveView
from bakeoff.judge.config import config_from_dict
from bakeoff.judge.core import JudgeState, step
from bakeoff.judge.simulate import Arm, Stream
from tests.controller.conftest import BAKEOFF, ROOT

NAMES = [f"generated-build-{i:02d}" for i in range(20)]


def _state() -> ControllerState:
    st = ControllerState.new("tournament", "mainline", NAMES)
    serving = NAMES[:8]
    for i, n in enumerate(NAMES):
        v = st.variants[n]
        v.step = 0
        if n in serving:
            v.phase, v.share = SERVING, round(0.3 / (i + 2), 4)
        elif i % 3 == 0:
            v.phase = ROLLED_BACK
            v.reason = f"worse than tolerated: checkout error_rate +2.0{i} points in variant {n}, commit 3f2a9c{i:02d}"
        else:
            v.phase = LOST
            v.reason = (
                f"Lost: cannot beat {NAMES[0]} on conversion, upper bound +0.{i:02d} points vs "
                f"{NAMES[0]}'s lower bound +0.52 points"
            )
    st.weights = {"mainline": round(1 - sum(v.share for v in st.variants.values()), 6)}
    st.weights.update({n: st.variants[n].share for n in serving})
    return st


def test_status_of_20_variants_fits_the_terminal_one_row_each_with_share_and_reason(tmp_path):
    st = _state()
    doc = {"format": "bakeoff.status/v1", "running": True, **st.to_json(), "state_dir": str(tmp_path)}
    (tmp_path / "status.json").write_text(json.dumps(doc))
    env = {**os.environ, "COLUMNS": "100"}
    r = subprocess.run([*BAKEOFF, "status", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    too_wide = [ln for ln in lines if len(ln) > 100]
    assert not too_wide, "\n".join(too_wide)
    for n in NAMES:
        rows = [ln for ln in lines if ln.startswith(f"  {n} ")]
        assert len(rows) == 1, (n, r.stdout)
        v = st.variants[n]
        assert f"{v.share:.1%}" in rows[0]
    # a retired candidate's reason is there whole (wrapped under the reason column)
    text = re.sub(r"\s+", " ", r.stdout)
    for n in NAMES:
        if st.variants[n].phase == LOST:
            assert st.variants[n].reason in text, st.variants[n].reason
    # serving candidates first, by share
    order = [ln.split()[0] for ln in lines if ln.startswith("  generated-build-")]
    assert order[:8] == NAMES[:8], order
    assert "20 candidates: 8 serving, 12 retired or rolled back" in r.stdout


def test_live_table_of_20_variants_has_one_line_per_variant_and_a_why_column():
    from rich.console import Console

    cfg = config_from_dict(
        {
            "minSamples": 100,
            "guardrails": [
                {"metric": "error_rate", "maxIncrease": 0.01},
                {"metric": "latency_p99", "maxIncreaseRatio": 0.1},
            ],
            "objective": {"metric": "conversion", "kind": "proportion", "direction": "higher"},
        },
        "t",
    )
    stream = Stream({"mainline": Arm(), **{n: Arm() for n in NAMES}}, np.random.default_rng(19))
    stream.advance(400)
    js, verdict = step(JudgeState.new(cfg), stream.snapshot(), stream.t)
    st = _state()
    runner = SimpleNamespace(
        state=st,
        b=SimpleNamespace(name="tournament", judge=cfg, mainline_name="mainline"),
        verdict=verdict,
        last_snapshot=stream.snapshot(),
        commit_of=lambda n: None,
        platform=SimpleNamespace(describe=lambda: {"router": {"url": "http://127.0.0.1:8080"}}),
    )
    view = LiveView(SimpleNamespace(name="tournament", judge=cfg), ROOT)
    view.runner = runner  # type: ignore[assignment]
    console = Console(width=160, record=True, color_system=None)
    console.print(view._render())
    out = console.export_text()
    lines = out.splitlines()
    assert all(len(ln) <= 160 for ln in lines)
    assert "why" in lines[2] or any("why" in ln for ln in lines[:4])
    for n in NAMES:
        rows = [ln for ln in lines if f" {n} " in ln]
        assert len(rows) == 1, (n, out)
        v = st.variants[n]
        assert f"{st.weights.get(n, 0.0):.1%}" in rows[0]
        if v.phase == LOST:
            assert "Lost: cannot" in rows[0], rows[0]


def test_status_shows_each_candidates_share_over_time_from_the_allocation_records(tmp_path):
    """Issue 19 item 4: `bakeoff status` shows each candidate's share over time (the journal's
    `allocated` records, one per interval in which adaptive allocation moved shares)."""
    st = _state()
    doc = {"format": "bakeoff.status/v1", "running": True, **st.to_json(), "state_dir": str(tmp_path)}
    (tmp_path / "status.json").write_text(json.dumps(doc))
    rising, falling = NAMES[0], NAMES[1]
    records = [
        {"type": "allocated", "shares": {"mainline": 0.5, rising: 0.1 * (i + 1), falling: 0.4 - 0.1 * i}}
        for i in range(4)
    ]
    (tmp_path / "journal.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\nnot json\n")
    env = {**os.environ, "COLUMNS": "100"}
    r = subprocess.run([*BAKEOFF, "status", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any("history" in ln and "reason" in ln for ln in lines), r.stdout
    assert not [ln for ln in lines if len(ln) > 100], r.stdout

    def cells(name: str) -> str:
        (row,) = [ln for ln in lines if ln.startswith(f"  {name} ")]
        return "".join(ch for ch in row if ch in "▁▂▃▄▅▆▇█")

    up, down = cells(rising), cells(falling)
    assert len(up) == 4 and list(up) == sorted(up) and up[0] != up[-1], r.stdout
    assert len(down) >= 3 and list(down) == sorted(down, reverse=True), r.stdout
