"""A 20-variant bake-off stays readable, in the dashboard and the static report: a real browser
(headless Chromium) lays the page out, and the labels' boxes must not overlap or leave their chart."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from bakeoff.controller.dashboard import Dashboard
from bakeoff.controller.report import html_page
from tests.dashboard.browser import browser_page

pytestmark = pytest.mark.slow

NAMES = ["mainline"] + [f"build-{i:02d}-{w}" for i, w in enumerate("abcdefghijklmnopqrs")]

# Each box: [left, top, right, bottom]; the script returns, per chart, its own box and its labels' boxes.
BOXES = """() => [...document.querySelectorAll('svg.chart')].map(svg => {
  const r = svg.getBoundingClientRect();
  const box = e => { const b = e.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom, e.textContent]; };
  return {svg: [r.left, r.top, r.right, r.bottom], ticks: [...svg.querySelectorAll('text.tick')].map(box),
          labels: [...svg.querySelectorAll('text.label, text.marker-label')].map(box),
          markers: [...svg.querySelectorAll('text.marker-label')].map(box)};
})"""


def synthetic_report(n_looks: int = 90) -> dict:
    """A report (the format `bakeoff run` writes) of 19 candidates over 90 looks: ten rolled back at
    close times, one promoted, the rest lost; error_rate and latency_p50 on two routes."""
    rng = random.Random(7)
    t0 = 1_800_000_000.0
    keys = ["error_rate", "latency_p50", "latency_p50 @checkout", "latency_p50 @search"]
    history, events = [], []
    rolled = {n: t0 + 30 + i * 1.5 for i, n in enumerate(NAMES[1:11])}
    for look in range(n_looks):
        at = t0 + look
        vs = {}
        for j, n in enumerate(NAMES[1:]):
            if n in rolled and at > rolled[n]:
                continue
            ms = {}
            for k in keys:
                ratio = k.startswith("latency")
                est = (0.5 if n in rolled and ratio else 0.01 * (j - 9)) + rng.gauss(0, 0.01)
                w = 2.0 / math.sqrt(look + 1)
                ms[k] = {
                    "state": "worse" if n in rolled and at + 1 > rolled[n] and ratio else "unknown",
                    "estimate": est,
                    "ci": [est - w, est + w],
                    "control": 0.01,
                    "candidate": 0.01 + est,
                    "scale": "ratio" if ratio else "difference",
                    "role": "guardrail",
                    "p": 0.5,
                }
            vs[n] = {"requests": 40 * look, "status": "judging", "metrics": ms}
        history.append({"at": at, "look": look, "action": "continue", "variants": vs})
    for n in NAMES[1:]:
        events.append({"at": t0 + 2, "type": "admitted", "variant": n, "share": 0.04, "reason": "healthy"})
    for n, at in rolled.items():
        events.append({"at": at, "type": "rolled_back", "variant": n, "reason": "latency_p50 worse than tolerated"})
    winner = NAMES[12]
    events.append({"at": t0 + n_looks, "type": "promoted", "variant": winner, "reason": "best objective"})
    variants = {}
    for n in NAMES:
        phase = "Retired" if n == "mainline" else "RolledBack" if n in rolled else "Promoted" if n == winner else "Lost"
        variants[n] = {
            "variant": n,
            "phase": phase,
            "share": 1.0 if n == winner else 0.0,
            "requests": 3600,
            "error_rate": 0.001,
            "p50_ms": 9.5,
            "p99_ms": 31.0,
            "objective": None,
            "commit": f"{abs(hash(n)):x}"[:12],
            "reason": "",
            "change": {"commit": f"c0ffee{n}"},
        }
    last = history[-1]
    return {
        "format": "bakeoff.report/v1", "generated_at": t0 + n_looks, "started_at": t0, "duration_s": n_looks,
        "source": "bake.yaml", "config": {"judge": {"alpha": 0.05}, "routing": {"steps": [0.04]}, "promotion": "auto"},
        "load": None, "status_codes": {}, "bakeoff": "twenty", "phase": "Promoted", "mainline": winner,
        "original_mainline": "mainline",
        "decision": {"action": "promote", "winner": winner, "reason": "best objective", "at": t0 + n_looks},
        "judge": {"alpha": 0.05, "minSamples": 300, "candidates": 19, "metrics": [
            {"name": "error_rate", "kind": "error_rate", "role": "guardrail", "harm": "increase",
             "tolerance": 0.01, "relative": False},
            {"name": "latency_p50", "kind": "latency", "role": "guardrail", "harm": "increase",
             "tolerance": 0.3, "relative": True}]},
        "variants": variants, "events": events,
        "verdict": {"look": last["look"], "tests_in_family": 76, "variants": {
            n: {"metrics": {k: {**m, "p_worse": 0.5, "p_better": 0.5, "p_non_inferior": 0.5, "kind": "latency"
                                if k.startswith("latency") else "error_rate", "tolerance": 0.3, "harm": "increase",
                                "tolerance_relative": True} for k, m in vv["metrics"].items()}}
            for n, vv in last["variants"].items()}},
        "history": history, "latency": {},
    }  # fmt: skip


class OneReport:
    where = "test"

    def __init__(self, rep: dict) -> None:
        self.rep = rep

    def rows(self) -> list[dict]:
        return [{"key": "twenty", "name": "twenty", "phase": "Promoted", "leader": NAMES[12], "variants": 20}]

    def report(self, key: str) -> dict | None:
        return self.rep if key == "twenty" else None

    def approve(self, key: str, variant: str) -> str:
        raise AssertionError("not here")

    abort = approve


def overlaps(a, b) -> bool:
    return a[0] < b[2] - 0.5 and b[0] < a[2] - 0.5 and a[1] < b[3] - 0.5 and b[1] < a[3] - 0.5


def check_readable(charts: list[dict]) -> dict:
    assert charts, "no charts on the page"
    figures = {"charts": len(charts), "labels": 0, "markers": 0, "x_ticks_min": 99}
    for ch in charts:
        s = ch["svg"]
        texts = ch["ticks"] + ch["labels"]
        figures["labels"] += len(texts)
        figures["markers"] += len(ch["markers"])
        for t in texts:  # nothing clipped: every label lies inside its chart
            assert s[0] - 0.5 <= t[0] and t[2] <= s[2] + 0.5 and s[1] - 0.5 <= t[1] and t[3] <= s[3] + 0.5, (t, s)
        for i, a in enumerate(texts):  # no two labels overlap
            for b in texts[i + 1 :]:
                assert not overlaps(a, b), (a, b)
        xs = {round(t[1]) for t in ch["ticks"]}
        bottom = max(xs) if xs else 0
        figures["x_ticks_min"] = min(figures["x_ticks_min"], sum(1 for t in ch["ticks"] if round(t[1]) == bottom))
    assert figures["x_ticks_min"] >= 4, figures  # the time axis has more than two ticks
    return figures


async def test_a_20_variant_bakeoff_stays_readable_in_the_dashboard_and_the_report(tmp_path):
    rep = synthetic_report()
    report = tmp_path / "report.html"
    report.write_text(html_page(rep))
    server = Dashboard(OneReport(rep))
    url = await server.start()
    try:
        async with browser_page(width=1280, height=900) as (page, errors):
            for where in (f"{url}b/twenty", report.as_uri()):
                await page.goto(where)
                charts = await page.evaluate(BOXES)
                figures = check_readable(charts)
                shot = tmp_path / ("dashboard.png" if where.startswith("http") else "report.png")
                await page.screenshot(path=str(shot), full_page=True)
                print(where, figures, shot)
                # the table: one row per variant, names not cut off
                cells = await page.evaluate(
                    """() => [...document.querySelectorAll('#variants tr[data-variant] td:first-child')]
                       .map(td => [td.scrollWidth, td.clientWidth])"""
                )
                assert len(cells) == 20 and all(sw <= cw for sw, cw in cells), cells
                # colours fixed by name: the same variant has the same swatch in both pages
                colours = await page.evaluate(
                    """() => Object.fromEntries([...document.querySelectorAll('#variants tr[data-variant]')]
                       .map(tr => [tr.dataset.variant, tr.querySelector('.swatch').style.background]))"""
                )
                if where.startswith("http"):
                    first = colours
                else:
                    assert colours == first
            assert errors == [], errors
    finally:
        await server.stop()
    Path("/tmp/ui21-shots").mkdir(exist_ok=True)
    for p in tmp_path.glob("*.png"):
        (Path("/tmp/ui21-shots") / p.name).write_bytes(p.read_bytes())
