"""The report's inline SVG charts: latency distributions and each metric's estimate over time."""

from __future__ import annotations

import html
import math
from typing import Any

from bakeoff.controller.report.model import change_in_units, format_in_units
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
    for p in (0, 0.5, 0.9, 0.99, 1.0):
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


def _svg_metric(
    spec: dict[str, Any], history: list[dict[str, Any]], colours: dict[str, str], events: list[dict[str, Any]]
) -> str:
    """One metric's change over time per candidate, with its interval band, the tolerance line
    (dashed red) and a marker where a candidate was rolled back."""
    metric = spec["name"]
    series: dict[str, list[tuple[float, float, float | None, float | None]]] = {}
    unit = ""
    tolerance = None
    for h in history:
        for name, vv in h["variants"].items():
            mv = vv["metrics"].get(metric)
            if mv is None or mv.get("estimate") is None:
                continue
            u = change_in_units(
                {
                    **mv,
                    "kind": spec.get("kind"),
                    "harm": spec.get("harm"),
                    "tolerance": spec.get("tolerance"),
                    "tolerance_relative": spec.get("relative"),
                }
            )
            unit, tolerance = u["unit"], u["tolerance"]
            if u["change"] is None:
                continue
            series.setdefault(name, []).append((h["at"], u["change"], u["ci"][0], u["ci"][1]))
    if not series:
        return f"<p>No estimates for {html.escape(metric)} yet.</p>"
    W, H, L, B = 640, 220, 60, 30
    t0 = min(p[0] for s in series.values() for p in s)
    t1 = max(p[0] for s in series.values() for p in s)
    vals = [x for s in series.values() for p in s for x in p[1:] if x is not None and math.isfinite(x)] + [0.0]
    vals.sort()
    # keep the axis readable when early intervals are huge
    lo, hi = vals[int(0.02 * (len(vals) - 1))], vals[int(0.98 * (len(vals) - 1))]
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if tolerance is not None:
        lo, hi = min(lo, tolerance * 1.2), max(hi, tolerance * 1.2)
    if spec.get("kind") == "latency" and unit == "%":
        # an estimate at the judge's grid edge stays on the axis (labelled as a bound below)
        ests = [p[1] for ser in series.values() for p in ser]
        if any(e >= GRID_EDGES[1] * 100 - 1e-6 for e in ests):
            hi = max(hi, GRID_EDGES[1] * 100)
        if any(e <= GRID_EDGES[0] * 100 + 1e-6 for e in ests):
            lo = min(lo, GRID_EDGES[0] * 100)
    if hi - lo < 1e-12:
        lo, hi = lo - 1, hi + 1
    span_t = max(t1 - t0, 1e-9)

    def X(t: float) -> float:
        return L + (min(max(t, t0), t1 + 0.0) - t0) / span_t * (W - L - 10)

    def Y(v: float) -> float:
        v = min(max(v, lo), hi)
        return H - B - (v - lo) / (hi - lo) * (H - B - 10)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img" '
        f'aria-label="{html.escape(metric)} change over time">',
        f'<rect x="{L}" y="10" width="{W - L - 10}" height="{H - B - 10}" fill="#fafafa" stroke="#ccc"/>',
        f'<line x1="{L}" y1="{Y(0):.1f}" x2="{W - 10}" y2="{Y(0):.1f}" stroke="#888" stroke-dasharray="4 3"/>',
    ]
    if tolerance is not None:
        parts.append(
            f'<line class="tolerance" x1="{L}" y1="{Y(tolerance):.1f}" x2="{W - 10}" y2="{Y(tolerance):.1f}" '
            f'stroke="#d62728" stroke-width="1.5" stroke-dasharray="6 3"><title>tolerance '
            f"{format_in_units(tolerance, unit)}</title></line>"
            f'<text x="{W - 12}" y="{Y(tolerance) - 3:.1f}" font-size="10" fill="#d62728" text-anchor="end">'
            f"tolerance {format_in_units(tolerance, unit)}</text>"
        )
    # a latency series that reaches the judge's grid edge is only known to lie beyond it: the axis
    # says so there, as the table does ("> +232%")
    edge_hi = GRID_EDGES[1] * 100 if unit == "%" and spec.get("kind") == "latency" else None
    edge_lo = GRID_EDGES[0] * 100 if edge_hi is not None else None
    for v in (lo, 0.0, hi):
        label = format_in_units(v, unit)
        if edge_hi is not None and v >= edge_hi - 1e-6:
            label = "> " + format_in_units(edge_hi, unit)
        elif edge_lo is not None and v <= edge_lo + 1e-6:
            label = "< " + format_in_units(edge_lo, unit)
        parts.append(
            f'<text x="{L - 4}" y="{Y(v) + 3:.1f}" font-size="10" text-anchor="end">{html.escape(label)}</text>'
        )
    for name, s in series.items():
        c = colours.get(name, "#333")
        band = [(t, a, b) for t, _, a, b in s if a is not None and b is not None]
        if len(band) > 1:
            up = " ".join(f"{X(t):.1f},{Y(b):.1f}" for t, a, b in band)
            down = " ".join(f"{X(t):.1f},{Y(a):.1f}" for t, a, b in reversed(band))
            parts.append(f'<polygon points="{up} {down}" fill="{c}" fill-opacity="0.15" stroke="none"/>')
        pts = " ".join(f"{X(t):.1f},{Y(e):.1f}" for t, e, _, _ in s)
        parts.append(
            f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{pts}"><title>{html.escape(name)}</title></polyline>'
        )
    for e in events:
        if e.get("type") not in ("rolled_back", "failed") or e.get("variant") not in series:
            continue
        at = e.get("at") or t0
        x = X(at)
        c = colours.get(e["variant"], "#333")
        parts.append(
            f'<line class="rollback" x1="{x:.1f}" y1="10" x2="{x:.1f}" y2="{H - B}" stroke="{c}" stroke-width="1.5">'
            f"<title>{html.escape(e['variant'])} rolled back: {html.escape(e.get('reason') or '')}</title></line>"
            f'<text x="{x + 2:.1f}" y="20" font-size="10" fill="{c}">&#10007; {html.escape(e["variant"])}</text>'
        )
    parts.append(
        f'<text x="{L}" y="{H - 8}" font-size="10">0 s</text>'
        f'<text x="{W - 10}" y="{H - 8}" font-size="10" text-anchor="end">{span_t:.0f} s</text></svg>'
    )
    return "".join(parts)
