"""The end-of-run report: ``report.json``, ``report.md`` and a self-contained ``report.html``.

The HTML page has no external references: its charts are inline SVG (the
latency distribution of every variant from the router's histogram, and every
metric's estimate with its confidence sequence over time).
"""

from __future__ import annotations

import html
import json
import math
import time
from pathlib import Path
from typing import Any

from bakeoff.controller.journal import write_atomic

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def latency_distributions(snap: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    from bakeoff.contracts.histogram import bucket_value, decode_counts, quantile_from_counts

    out: dict[str, dict[str, Any]] = {}
    if not snap:
        return out
    for name, v in (snap.get("variants") or {}).items():
        n = v.get("requests", 0)
        if not n:
            continue
        counts = decode_counts(v["latency"])
        total = sum(counts)
        if not total:
            continue
        cdf, acc = [], 0
        for i, c in enumerate(counts):
            if c:
                acc += c
                cdf.append([bucket_value(i), acc / total])
        out[name] = {
            "count": total,
            "quantiles_ms": {f"p{q}": quantile_from_counts(counts, q / 100) * 1000 for q in (50, 90, 99, 99.9)},
            "cdf": cdf,
        }
    return out


def build(runner: Any, snap: dict[str, Any] | None) -> dict[str, Any]:
    from bakeoff.controller.view import variant_rows

    if snap is not None:
        runner.last_snapshot = snap
    st = runner.state
    variants = {}
    for row in variant_rows(runner):
        res = runner.res.variant(row["variant"])
        variants[row["variant"]] = {**row, "change": dict(res.change) if res else {}}
    return {
        "format": "bakeoff.report/v1",
        "generated_at": time.time(),
        "bakeoff": runner.b.name,
        "phase": st.phase,
        "mainline": st.mainline,
        "original_mainline": runner.b.mainline_name,
        "decision": st.decision,
        "judge": {
            "alpha": runner.b.judge.alpha,
            "minSamples": runner.b.judge.min_samples,
            "candidates": runner.b.judge.candidates,
            "metrics": [m.to_json() for m in runner.b.judge.metrics],
        },
        "variants": variants,
        "events": [e for e in runner.events],
        "verdict": runner.verdict.to_json() if runner.verdict is not None else None,
        "history": runner.history,
        "latency": latency_distributions(runner.last_snapshot),
    }


def _fmt(x: Any, spec: str = ".4g") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return format(x, spec)


def _pct(x: Any) -> str:
    return _fmt(x * 100 if isinstance(x, (int, float)) else None, "+.2f") + ("%" if x is not None else "")


def markdown(rep: dict[str, Any]) -> str:
    d = rep["decision"]
    lines = [f"# Bake-off `{rep['bakeoff']}`", ""]
    if d is None:
        lines.append(f"**No decision yet** (phase {rep['phase']}).")
    elif d["action"] == "promote":
        lines.append(f"**Promoted `{d['winner']}`** (replacing `{d.get('previous_mainline')}`): {d['reason']}.")
    else:
        lines.append(f"**Stopped without a winner**: {d['reason']}.")
    lines += [
        "",
        f"Judge: alpha {rep['judge']['alpha']}, Bonferroni over {rep['judge']['candidates']} candidate(s), "
        f"minSamples {rep['judge']['minSamples']}.",
        "",
        "## Variants",
        "",
        "| variant | phase | commit | share | requests | error rate | p50 ms | p99 ms | objective | reason |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, v in rep["variants"].items():
        lines.append(
            f"| {name} | {v['phase']} | {(v.get('commit') or '')[:12]} | {v['share']:.1%} | {v['requests']} | "
            f"{_pct(v['error_rate'])} | {_fmt(v['p50_ms'], '.2f')} | {_fmt(v['p99_ms'], '.2f')} | "
            f"{_fmt(v['objective'], '.4f')} | {v.get('reason', '').replace('|', '/')} |"
        )
    verdict = rep.get("verdict")
    if verdict:
        lines += [
            "",
            f"## Evidence (look {verdict['look']}; p-values adjusted for {verdict['tests_in_family']} tests)",
            "",
            "| variant | metric | state | control | candidate | change | confidence sequence | p |",
            "|---|---|---|---:|---:|---:|---|---:|",
        ]
        for name, vv in verdict["variants"].items():
            for m, mv in vv["metrics"].items():
                pct = mv["scale"] == "ratio" or mv["kind"] in ("error_rate", "proportion")
                f = _pct if pct else _fmt
                ci = mv.get("ci") or [None, None]
                p = min(x for x in (mv["p_worse"], mv["p_better"], mv["p_non_inferior"]) if x is not None)
                lines.append(
                    f"| {name} | {m} | {mv['state']} | {_fmt(mv['control'])} | {_fmt(mv['candidate'])} | "
                    f"{f(mv['estimate'])} | [{f(ci[0])}, {f(ci[1])}] | {_fmt(p, '.3g')} |"
                )
    if rep["latency"]:
        lines += [
            "",
            "## Latency (router histogram)",
            "",
            "| variant | requests | p50 ms | p90 ms | p99 ms | p99.9 ms |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, lat in rep["latency"].items():
            q = lat["quantiles_ms"]
            lines.append(
                f"| {name} | {lat['count']} | {_fmt(q['p50'], '.2f')} | {_fmt(q['p90'], '.2f')} | "
                f"{_fmt(q['p99'], '.2f')} | {_fmt(q['p99.9'], '.2f')} |"
            )
    lines += ["", "## Events", ""]
    for e in rep["events"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.get("at") or 0))
        extra = f" share {e['share']:.1%}" if e.get("share") is not None else ""
        lines.append(
            f"- {when} **{e['type']}** {e.get('variant') or ''}{extra} {('— ' + e['reason']) if e.get('reason') else ''}".rstrip()
        )
    return "\n".join(lines) + "\n"


# -- SVG -----------------------------------------------------------------------


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


def _svg_metric(metric: str, history: list[dict[str, Any]], colours: dict[str, str], pct: bool) -> str:
    series: dict[str, list[tuple[float, float, float | None, float | None]]] = {}
    scale = "difference"
    for h in history:
        for name, vv in h["variants"].items():
            mv = vv["metrics"].get(metric)
            if mv is None or mv.get("estimate") is None:
                continue
            scale = mv.get("scale", scale)
            ci = mv.get("ci") or [None, None]
            series.setdefault(name, []).append((h["at"], mv["estimate"], ci[0], ci[1]))
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
    if hi - lo < 1e-12:
        lo, hi = lo - 1, hi + 1
    span_t = max(t1 - t0, 1e-9)

    def X(t: float) -> float:
        return L + (t - t0) / span_t * (W - L - 10)

    def Y(v: float) -> float:
        v = min(max(v, lo), hi)
        return H - B - (v - lo) / (hi - lo) * (H - B - 10)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img" '
        f'aria-label="{html.escape(metric)} estimate over time">',
        f'<rect x="{L}" y="10" width="{W - L - 10}" height="{H - B - 10}" fill="#fafafa" stroke="#ccc"/>',
        f'<line x1="{L}" y1="{Y(0):.1f}" x2="{W - 10}" y2="{Y(0):.1f}" stroke="#888" stroke-dasharray="4 3"/>',
    ]
    for v in (lo, 0.0, hi):
        label = f"{v * 100:+.1f}%" if pct else f"{v:.3g}"
        parts.append(f'<text x="{L - 4}" y="{Y(v) + 3:.1f}" font-size="10" text-anchor="end">{label}</text>')
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
    parts.append(
        f'<text x="{L}" y="{H - 8}" font-size="10">0 s</text>'
        f'<text x="{W - 10}" y="{H - 8}" font-size="10" text-anchor="end">{span_t:.0f} s</text></svg>'
    )
    return "".join(parts)


def html_page(rep: dict[str, Any], md: str) -> str:
    names = list(rep["variants"])
    colours = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}
    esc = html.escape
    d = rep["decision"]
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
        trs = []
        for name, vv in rep["verdict"]["variants"].items():
            for m, mv in vv["metrics"].items():
                ci = mv.get("ci") or [None, None]
                pct = mv["scale"] == "ratio" or mv["kind"] in ("error_rate", "proportion")
                f = _pct if pct else _fmt
                trs.append(
                    f"<tr><td>{esc(name)}</td><td>{esc(m)}</td><td>{esc(mv['state'])}</td>"
                    f"<td>{f(mv['estimate'])}</td><td>[{f(ci[0])}, {f(ci[1])}]</td>"
                    f"<td>{_fmt(min(mv['p_worse'], mv['p_better'], mv['p_non_inferior']), '.3g')}</td></tr>"
                )
        evidence = (
            "<h2>Evidence</h2><table><tr><th>variant</th><th>metric</th><th>state</th><th>change</th>"
            "<th>confidence sequence</th><th>p (adjusted)</th></tr>" + "".join(trs) + "</table>"
        )
    charts = "".join(
        f"<h3>{esc(m['name'])}: change against {esc(rep['original_mainline'])}, with its confidence sequence</h3>"
        + _svg_metric(m["name"], rep["history"], colours, m["kind"] != "mean")
        for m in rep["judge"]["metrics"]
    )
    events = "".join(
        f"<li>{time.strftime('%H:%M:%S', time.localtime(e.get('at') or 0))} <b>{esc(e['type'])}</b> "
        f"{esc(e.get('variant') or '')} {esc(e.get('reason') or '')}</li>"
        for e in rep["events"]
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>bakeoff {esc(rep["bakeoff"])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ddd;padding:3px 8px;font-size:13px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
.decision{{font-size:1.2em;padding:.6em;background:#eef6ee;border-left:4px solid #2ca02c}}</style></head>
<body><h1>Bake-off {esc(rep["bakeoff"])}</h1>
<p class="decision">{headline}</p>
<p>alpha {rep["judge"]["alpha"]}, Bonferroni over {rep["judge"]["candidates"]} candidate(s); {legend}</p>
<h2>Variants</h2><table><tr><th>variant</th><th>phase</th><th>commit</th><th>share</th><th>requests</th><th>error rate</th>
<th>p50 ms</th><th>p99 ms</th><th>objective</th><th>reason</th></tr>{rows}</table>
{evidence}
<h2>Latency distributions</h2>{_svg_latency(rep["latency"], colours)}
<h2>Estimates over time</h2>{charts}
<h2>Events</h2><ul>{events}</ul>
</body></html>
"""


def write_reports(runner: Any, snap: dict[str, Any] | None) -> dict[str, Path]:
    rep = build(runner, snap)
    d = runner.journal.dir
    md = markdown(rep)
    paths = {"json": d / "report.json", "md": d / "report.md", "html": d / "report.html"}
    write_atomic(
        paths["json"],
        json.dumps(rep, indent=1, default=str, allow_nan=False)
        if _finite(rep)
        else json.dumps(rep, indent=1, default=str),
    )
    write_atomic(paths["md"], md)
    write_atomic(paths["html"], html_page(rep, md))
    return paths


def _finite(x: Any) -> bool:
    if isinstance(x, float):
        return math.isfinite(x)
    if isinstance(x, dict):
        return all(_finite(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return all(_finite(v) for v in x)
    return True
