"""report.html: one self-contained page (no external references; charts are inline SVG)."""

from __future__ import annotations

import html
import time
from typing import Any

from bakeoff.controller.report.markdown import _meta_lines
from bakeoff.controller.report.model import (
    PALETTE,
    _fmt,
    _pct,
    change_in_units,
    format_change,
    format_in_units,
    observed_note,
)
from bakeoff.controller.report.svg import _svg_latency, _svg_metric

BANNER = {
    # decision kind -> (css class, background, border): only a promotion is green
    "promote": ("promoted", "#e6f4e6", "#2ca02c"),
    "stop": ("stopped", "#fdf0e0", "#e07b00"),
    "traffic": ("failed", "#fde8e8", "#d62728"),
    "none": ("undecided", "#eeeeee", "#888888"),
}


def banner_kind(decision: dict[str, Any] | None) -> str:
    if decision is None:
        return "none"
    if decision.get("action") == "promote":
        return "promote"
    return "traffic" if decision.get("cause") == "traffic" else "stop"


def html_page(rep: dict[str, Any]) -> str:
    names = list(rep["variants"])
    colours = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}
    esc = html.escape
    d = rep["decision"]
    kind = banner_kind(d)
    css, bg, border = BANNER[kind]
    if d is None:
        headline = f"No decision yet (phase {esc(rep['phase'])})"
    elif d["action"] == "promote":
        headline = f"Promoted <b>{esc(d['winner'])}</b> — {esc(d['reason'])}"
    else:
        headline = f"Stopped without a winner — {esc(d['reason'])}"
    legend = " ".join(f'<span style="color:{colours[n]}">&#9632; {esc(n)}</span>' for n in names)
    rows = "".join(
        f"<tr><td>{esc(n)}</td><td>{esc(v['phase'])}</td><td><code>{esc((v.get('commit') or '')[:12])}</code></td>"
        f"<td>{v['share']:.1%}</td><td>{v['requests']}</td><td>{_pct(v['error_rate'])}</td>"
        f"<td>{_fmt(v['p50_ms'], '.2f')}</td><td>{_fmt(v['p99_ms'], '.2f')}</td><td>{_fmt(v['objective'], '.4f')}</td>"
        f"<td>{esc(v.get('reason') or '')}</td></tr>"
        for n, v in rep["variants"].items()
    )
    evidence = ""
    if rep.get("verdict"):
        trs, notes = [], []
        for name, vv in rep["verdict"]["variants"].items():
            routed = any(x.get("route") for x in vv["metrics"].values())
            for m, mv in vv["metrics"].items():
                u = change_in_units(mv)
                tol = format_in_units(u["tolerance"], u["unit"]) if u["tolerance"] is not None else "objective"
                note = observed_note(mv, u, routed)
                change = esc(format_change(u))
                if note:
                    change += f"<br><small>observed {esc(format_in_units(u['observed'], u['unit']))}</small>"
                    notes.append(f"<li>{esc(name)} {esc(m)}: {esc(note)}.</li>")
                trs.append(
                    f'<tr><td>{esc(name)}</td><td>{esc(m)}</td><td class="state-{esc(mv["state"])}">'
                    f"{esc(mv['state'])}</td><td>{change}</td>"
                    f"<td>[{format_in_units(u['ci'][0], u['unit'])}, {format_in_units(u['ci'][1], u['unit'])}]</td><td>{tol}</td>"
                    f"<td>{_fmt(min(mv['p_worse'], mv['p_better'], mv['p_non_inferior']), '.3g')}</td></tr>"
                )
        evidence = (
            "<h2>Evidence</h2><p>Change, interval and tolerance in the same unit per metric: "
            "% = relative to the mainline, pp = percentage points. A guardrail is <i>worse</i> when its interval "
            "lies beyond the tolerance, <i>non_inferior</i> when it lies within.</p>"
            "<table><tr><th>variant</th><th>metric</th><th>state</th><th>change</th>"
            "<th>confidence sequence</th><th>tolerance</th><th>p (adjusted)</th></tr>"
            + "".join(trs)
            + "</table>"
            + (f'<ul class="notes">{"".join(notes)}</ul>' if notes else "")
        )
    codes = rep.get("status_codes") or {}
    keys = [
        k
        for k in ("2xx", "3xx", "4xx", "5xx", "connect_error", "timeout", "aborted", "1xx", "upgraded")
        if any(c.get(k) for c in codes.values())
    ]
    status_table = ""
    if codes and keys:
        status_table = (
            "<h2>Responses by status</h2><table><tr><th>variant</th>"
            + "".join(f"<th>{esc(k)}</th>" for k in keys)
            + "</tr>"
            + "".join(
                f"<tr><td>{esc(n)}</td>" + "".join(f"<td>{c.get(k, 0)}</td>" for k in keys) + "</tr>"
                for n, c in codes.items()
            )
            + "</table>"
        )
    res = rep.get("resources") or {}
    if res:

        def _cell(x: Any, spec: str) -> str:
            return "-" if x is None else format(x, spec)

        status_table += (
            "<h2>Resource cost</h2><table><tr><th>variant</th><th>CPU ms per request</th>"
            "<th>memory MiB (mean)</th><th>memory MiB (last)</th><th>batches</th></tr>"
            + "".join(
                f"<tr><td>{esc(n)}</td><td>{_cell(r['cpu_ms_per_request'], '.3f')}</td>"
                f"<td>{_cell(r['memory_mib'], '.1f')}</td><td>{_cell(r['memory_mib_last'], '.1f')}</td>"
                f"<td>{r['batches']}</td></tr>"
                for n, r in res.items()
            )
            + "</table>"
        )
    charts = "".join(
        f"<h3>{esc(m['name'])}: change against {esc(rep['original_mainline'])}, with its confidence sequence</h3>"
        + _svg_metric(m, rep["history"], colours, rep["events"])
        for m in rep["judge"]["metrics"]
    )
    events = "".join(
        f"<li>{time.strftime('%H:%M:%S', time.localtime(e.get('at') or 0))} <b>{esc(e['type'])}</b> "
        f"{esc(e.get('variant') or '')} {esc(e.get('reason') or '')}</li>"
        for e in rep["events"]
    )
    meta = "".join(f"<li>{esc(line[2:]).replace('`', '')}</li>" for line in _meta_lines(rep))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>bakeoff {esc(rep["bakeoff"])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:60em;background:#fff}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ddd;padding:3px 8px;font-size:13px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
.decision{{font-size:1.2em;padding:.6em;background:{bg};border-left:8px solid {border}}}
.state-worse{{color:#d62728}}.state-better{{color:#2ca02c}}</style></head>
<body><h1>Bake-off {esc(rep["bakeoff"])}</h1>
<p class="decision {css}" id="decision">{headline}</p>
<ul class="meta">{meta}</ul>
<p>alpha {rep["judge"]["alpha"]}, Bonferroni over {rep["judge"]["candidates"]} candidate(s); {legend}</p>
<h2>Variants</h2><table><tr><th>variant</th><th>phase</th><th>commit</th><th>share</th><th>requests</th><th>error rate</th>
<th>p50 ms</th><th>p99 ms</th><th>objective</th><th>reason</th></tr>{rows}</table>
{evidence}
{status_table}
<h2>Latency distributions</h2>{_svg_latency(rep["latency"], colours)}
<h2>Estimates over time</h2>{charts}
<h2>Events</h2><ul>{events}</ul>
</body></html>
"""
