"""The report's inline SVG charts: latency distributions and each metric's estimate over time."""

from __future__ import annotations

import html
import math
from typing import Any

from bakeoff.controller.report.model import format_in_units
from bakeoff.judge.latency import GRID_EDGES


def _svg_latency(lat: dict[str, Any], colours: dict[str, str]) -> str:
    if not lat:
        return "<p>No latency data.</p>"
    W, H, L, B = 640, 260, 50, 30
    xs = [p[0] for v in lat.values() for p in v["cdf"] if p[0] > 0]
    lo, hi = math.log10(min(xs)), math.log10(max(xs))
    if hi - lo < 0.5:
        lo, hi = lo - 0.25, hi + 0.25

    def X(v: float) -> float:
        return L + (math.log10(max(v, 1e-9)) - lo) / (hi - lo) * (W - L - 10)

    def Y(p: float) -> float:
        return H - B - p * (H - B - 10)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img" '
        f'aria-label="latency distribution per variant">',
        f'<rect x="{L}" y="10" width="{W - L - 10}" height="{H - B - 10}" fill="#fafafa" stroke="#ccc"/>',
    ]
    for e in range(math.floor(lo), math.ceil(hi) + 1):
        x = X(10**e)
        if L <= x <= W - 10:
            label = f"{10**e * 1000:g} ms"
            parts.append(
                f'<line x1="{x:.1f}" y1="10" x2="{x:.1f}" y2="{H - B}" stroke="#ddd"/>'
                f'<text x="{x:.1f}" y="{H - B + 14}" font-size="10" text-anchor="middle">{label}</text>'
            )
    for p in (0, 0.5, 0.9, 1.0):
        parts.append(f'<text x="{L - 4}" y="{Y(p) + 3:.1f}" font-size="10" text-anchor="end">{p:g}</text>')
    for name, v in lat.items():
        pts = " ".join(f"{X(x):.1f},{Y(p):.1f}" for x, p in v["cdf"])
        parts.append(
            f'<polyline fill="none" stroke="{colours.get(name, "#333")}" stroke-width="2" points="{pts}">'
            f"<title>{html.escape(name)}</title></polyline>"
        )
    parts.append(
        f'<text x="{W / 2}" y="{H - 2}" font-size="11" text-anchor="middle">latency (log scale); '
        f"y: fraction of requests at or below</text></svg>"
    )
    return "".join(parts)


LABEL_CHAR_W = 6.2  # px per character of a 10 px label (an upper bound for the usual sans-serif fonts)
MAX_LABEL_ROWS = 6
MAX_BANDS = 3  # confidence-sequence bands drawn per chart


def nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """About ``n`` round tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    span = hi - lo
    if not span > 0 or not math.isfinite(span):
        return [lo]
    raw = span / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    out = []
    x = first
    while x <= hi + 1e-9 * step:
        out.append(0.0 if abs(x) < step * 1e-9 else x)
        x += step
    return out


def _time_label(s: float, span: float) -> str:
    if span >= 600:
        return f"{s / 60:g} min"
    return f"{s:g} s"


def _time_axis(X: Any, span: float, top: float, bottom: float) -> str:
    """Vertical grid lines and labels at round numbers of seconds (or minutes) since the start."""
    if span >= 600:
        ticks = [t * 60 for t in nice_ticks(0.0, span / 60, 7)]
    else:
        ticks = nice_ticks(0.0, span, 7)
    parts = []
    for t in ticks:
        x = X(t)
        parts.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="#eee"/>'
            f'<text class="tick" x="{x:.1f}" y="{bottom + 16}" font-size="10" text-anchor="middle">'
            f"{_time_label(t, span)}</text>"
        )
    return "".join(parts)


def svg_metric(
    key: str,
    rep: dict[str, Any],
    colours: dict[str, str],
    variants: list[str] | None = None,
    highlight: list[str] | None = None,
) -> str:
    """One metric's (and route's) change over time per candidate, with its confidence-sequence
    band, the tolerance line (dashed red), and a marker with its reason where a candidate was
    decided.  The axis is chosen from the estimates and the later intervals, the bands clipped
    to the plot (an early interval wider than the axis does not shade the whole plot)."""
    from bakeoff.controller.report.model import units_of

    series: dict[str, list[tuple[float, float, float | None, float | None]]] = {}
    unit, tolerance = "", None
    t_start = rep.get("started_at")
    for h in rep.get("history") or []:
        for name, vv in (h.get("variants") or {}).items():
            if variants is not None and name not in variants:
                continue
            mv = (vv.get("metrics") or {}).get(key)
            if mv is None or mv.get("estimate") is None:
                continue
            u = units_of(rep, key, mv)
            unit, tolerance = u["unit"], u["tolerance"]
            if u["change"] is None:
                continue
            series.setdefault(name, []).append((h["at"], u["change"], u["ci"][0], u["ci"][1]))
    if not series:
        return f'<p class="nochart">No estimates for {html.escape(key)} yet.</p>'
    W, H, L, R, T, B = 680, 230, 64, 16, 22, 34
    t0 = t_start if t_start is not None else min(p[0] for s in series.values() for p in s)
    t1 = max(p[0] for s in series.values() for p in s)
    span_t = max(t1 - t0, 1.0)
    # the axis: every estimate, the tolerance, zero, and the intervals of the later half of the looks
    vals = [p[1] for s in series.values() for p in s] + [0.0]
    for s in series.values():
        for p in s[len(s) // 2 :]:
            vals += [x for x in p[2:] if x is not None and math.isfinite(x)]
    if tolerance is not None:
        vals += [tolerance * 1.15]
    lo, hi = min(vals), max(vals)
    if spec_kind(rep, key) == "latency" and unit == "%":
        hi = min(hi, GRID_EDGES[1] * 100)
        lo = max(lo, GRID_EDGES[0] * 100)
    pad = (hi - lo) * 0.08 or 1.0
    lo, hi = lo - pad, hi + pad
    labels = {v: format_in_units(v, unit) for v in nice_ticks(lo, hi, 5)}
    if spec_kind(rep, key) == "latency" and unit == "%":
        # an estimate at the judge's grid edge is only known to lie beyond it: the axis says so there,
        # as the table does ("> +232%")
        ests = [p[1] for s in series.values() for p in s]
        for edge, sign, beyond in ((GRID_EDGES[1] * 100, "> ", max), (GRID_EDGES[0] * 100, "< ", min)):
            if any(abs(e - edge) < 1e-6 or beyond(e, edge) == e != edge for e in ests):
                labels = {v: t for v, t in labels.items() if abs(Y_frac(v, lo, hi) - Y_frac(edge, lo, hi)) > 0.08}
                labels[edge] = sign + format_in_units(edge, unit)
    ticks = sorted(labels)
    pw, ph = W - L - R, H - T - B

    def X(t: float) -> float:
        return L + (min(max(t, t0), t0 + span_t) - t0) / span_t * pw

    def Y(v: float) -> float:
        return T + ph - (min(max(v, lo), hi) - lo) / (hi - lo) * ph

    cid = "c" + str(abs(hash((key, tuple(series)))) % 10**9)
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
        f'role="img" aria-label="{html.escape(key)} change over time">',
        f'<defs><clipPath id="{cid}"><rect x="{L}" y="{T}" width="{pw}" height="{ph}"/></clipPath></defs>',
        f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="#fcfcfc" stroke="#ccc"/>',
        _time_axis(lambda t: X(t0 + t), span_t, T, T + ph),
    ]
    for v in ticks:
        parts.append(
            f'<line x1="{L}" y1="{Y(v):.1f}" x2="{L + pw}" y2="{Y(v):.1f}" stroke="#eee"/>'
            f'<text class="tick" x="{L - 4}" y="{Y(v) + 3:.1f}" font-size="10" text-anchor="end">'
            f"{html.escape(labels[v])}</text>"
        )
    parts.append(f'<line x1="{L}" y1="{Y(0):.1f}" x2="{L + pw}" y2="{Y(0):.1f}" stroke="#888" stroke-dasharray="4 3"/>')
    if tolerance is not None and lo <= tolerance <= hi:
        parts.append(
            f'<line class="tolerance" x1="{L}" y1="{Y(tolerance):.1f}" x2="{L + pw}" y2="{Y(tolerance):.1f}" '
            f'stroke="#d62728" stroke-width="1.5" stroke-dasharray="6 3"><title>tolerance '
            f"{format_in_units(tolerance, unit)}</title></line>"
            f'<text class="label" x="{L + pw - 2}" y="{Y(tolerance) - 3:.1f}" font-size="10" fill="#d62728" '
            f'text-anchor="end">tolerance {format_in_units(tolerance, unit)}</text>'
        )
    parts.append(f'<g clip-path="url(#{cid})">')
    # bands for at most MAX_BANDS variants (those the metric decided, else the first): more bands
    # stacked shade the whole plot and hide every line
    banded = [n for n in (highlight or []) if n in series][:MAX_BANDS] or list(series)[:MAX_BANDS]
    for name, s in series.items():
        c = colours.get(name, "#333")
        band = [(t, a, b) for t, _, a, b in s if a is not None and b is not None]
        if len(band) > 1 and name in banded:
            up = " ".join(f"{X(t):.1f},{Y(b):.1f}" for t, a, b in band)
            down = " ".join(f"{X(t):.1f},{Y(a):.1f}" for t, a, b in reversed(band))
            parts.append(f'<polygon points="{up} {down}" fill="{c}" fill-opacity="0.12" stroke="none"/>')
        pts = " ".join(f"{X(t):.1f},{Y(e):.1f}" for t, e, _, _ in s)
        parts.append(
            f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{pts}"><title>{html.escape(name)}</title>'
            "</polyline>"
        )
    parts.append("</g>")
    marks = []
    for e in rep.get("events") or []:
        if e.get("type") not in ("rolled_back", "failed", "promoted", "winner") or e.get("variant") not in series:
            continue
        marks.append(e)
    rows: list[float] = []  # per label row: the x where its last label ends
    for e in sorted(marks, key=lambda e: e.get("at") or t0):
        x = X(e.get("at") or t0)
        c = colours.get(e["variant"], "#333")
        sym = "&#10003;" if e["type"] in ("promoted", "winner") else "&#10007;"
        parts.append(
            f'<line class="{"rollback" if e["type"] in ("rolled_back", "failed") else "promotion"}" x1="{x:.1f}" y1="{T}" x2="{x:.1f}" y2="{T + ph}" stroke="{c}" stroke-width="1.5">'
            f"<title>{html.escape(e['variant'])} {html.escape(e['type'])}: {html.escape(e.get('reason') or '')}"
            f"</title></line>"
        )
        # a label beside its line, in the first row where it overlaps no other label and stays inside the
        # plot; none when no row has room (the line keeps its tooltip)
        width = LABEL_CHAR_W * (len(e["variant"]) + 2)
        right = x + 3 + width > L + pw
        x0 = x - 3 - width if right else x + 3
        if x0 < L:
            continue
        for i in range(MAX_LABEL_ROWS):
            if i == len(rows):
                rows.append(-1e9)
            if x0 >= rows[i] + 4:
                rows[i] = x0 + width
                parts.append(
                    f'<text class="label marker-label" x="{x - 3 if right else x + 3:.1f}" y="{T + 11 + i * 11}" '
                    f'font-size="10" fill="{c}" text-anchor="{"end" if right else "start"}">'
                    f"{sym} {html.escape(e['variant'])}</text>"
                )
                break
    parts.append(
        f'<text class="label" x="{L + pw / 2}" y="{H - 4}" font-size="10" text-anchor="middle">'
        f"time since the start; y: change against the mainline ({html.escape(unit or 'difference')})</text></svg>"
    )
    return "".join(parts)


def Y_frac(v: float, lo: float, hi: float) -> float:
    """Where ``v`` sits on an axis from lo to hi (0 to 1)."""
    return (v - lo) / (hi - lo) if hi > lo else 0.0


def spec_kind(rep: dict[str, Any], key: str) -> str | None:
    from bakeoff.controller.report.model import spec_of

    return spec_of(rep, key).get("kind")


def svg_shares(rep: dict[str, Any], colours: dict[str, str]) -> str:
    """Each variant's share of the traffic over time (step lines)."""
    from bakeoff.controller.report.model import allocation_times, shares_over_time

    sh = shares_over_time(rep)
    if not sh:
        return "<p>No shares yet.</p>"
    W, H, L, R, T, B = 680, 200, 64, 16, 12, 34
    pw, ph = W - L - R, H - T - B
    t0 = min(p[0] for s in sh.values() for p in s)
    t1 = max(p[0] for s in sh.values() for p in s)
    span = max(t1 - t0, 1.0)

    def X(t: float) -> float:
        return L + (t - t0) / span * pw

    def Y(v: float) -> float:
        return T + ph - v * ph

    parts = [
        f'<svg class="chart shares" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" '
        f'height="{H}" role="img" aria-label="share of the traffic over time">',
        f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="#fcfcfc" stroke="#ccc"/>',
        _time_axis(lambda t: X(t0 + t), span, T, T + ph),
    ]
    for v in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            f'<line x1="{L}" y1="{Y(v):.1f}" x2="{L + pw}" y2="{Y(v):.1f}" stroke="#eee"/>'
            f'<text class="tick" x="{L - 4}" y="{Y(v) + 3:.1f}" font-size="10" text-anchor="end">{v:.0%}</text>'
        )
    # one tick per interval adaptive allocation re-split the traffic (the journal's allocated records)
    allocations = allocation_times(rep)
    if allocations:
        parts.append(f'<g class="allocations" data-count="{len(allocations)}">')
        for t, moved in allocations:
            parts.append(
                f'<line class="allocated" x1="{X(t):.1f}" y1="{T + ph}" x2="{X(t):.1f}" y2="{T + ph - 6}" '
                f'stroke="#999"><title>{html.escape(moved)}</title></line>'
            )
        parts.append("</g>")
    for name, s in sh.items():
        pts = []
        prev = None
        for t, v in s:
            if prev is not None:
                pts.append(f"{X(t):.1f},{Y(prev):.1f}")
            pts.append(f"{X(t):.1f},{Y(v):.1f}")
            prev = v
        parts.append(
            f'<polyline fill="none" stroke="{colours.get(name, "#333")}" stroke-width="2" points="{" ".join(pts)}">'
            f"<title>{html.escape(name)}</title></polyline>"
        )
    parts.append(
        f'<text class="label" x="{L + pw / 2}" y="{H - 4}" font-size="10" text-anchor="middle">'
        "time since the start; y: share of the traffic</text></svg>"
    )
    return "".join(parts)
