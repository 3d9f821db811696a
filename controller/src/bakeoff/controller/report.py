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
from bakeoff.judge.latency import GRID_EDGES, beyond_grid

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


class ReportError(Exception):
    pass


def change_in_units(mv: dict[str, Any]) -> dict[str, Any]:
    """A metric's observed change, its interval and its tolerance in ONE unit, labelled.

    Latency (ratio scale) and relative tolerances: percent of the control
    ("%"); rates and proportions: percentage points ("pp"); other means: the
    metric's own unit ("").  ``tolerance`` is signed in the harmful direction
    (None for the objective, which has a direction but no tolerance).
    """
    est, ci = mv.get("estimate"), list(mv.get("ci") or [None, None])
    control = mv.get("control")
    tol = mv.get("tolerance")
    harm = -1 if mv.get("harm") == "decrease" else 1
    relative_tol = bool(mv.get("tolerance_relative"))
    if mv.get("scale") == "ratio":
        unit, factor = "%", 100.0
    elif relative_tol and isinstance(control, (int, float)) and control:
        # an absolute difference against a relative tolerance: show the difference relative to the control
        unit, factor = "%", 100.0 / abs(control)
    elif mv.get("kind") in ("error_rate", "proportion"):
        unit, factor = "pp", 100.0
    else:
        unit, factor = "", 1.0

    def conv(x: Any) -> float | None:
        return x * factor if isinstance(x, (int, float)) and math.isfinite(x) else None

    tolerance = None
    if mv.get("role") == "guardrail" and isinstance(tol, (int, float)):
        tolerance = harm * tol * (100.0 if unit in ("%", "pp") else 1.0)
    cand = mv.get("candidate")
    observed = None
    if isinstance(control, (int, float)) and isinstance(cand, (int, float)):
        if mv.get("scale") == "ratio":
            observed = conv(cand / control - 1.0) if control else None
        else:
            observed = conv(cand - control)
    # a latency change at the judge's grid edge is a bound ("> +232%"), not a measured figure
    bound = beyond_grid(est) if mv.get("scale") == "ratio" and isinstance(est, (int, float)) else 0
    return {
        "unit": unit,
        "change": conv(est),
        "ci": [conv(ci[0]), conv(ci[1])],
        "tolerance": tolerance,
        "observed": observed,
        "bound": bound,
    }


def observed_note(mv: dict[str, Any], u: dict[str, Any], routed: bool) -> str | None:
    """Why the plain observed difference (candidate minus control over all requests) sits
    more than the interval's half-width from the estimate, or None when it does not."""
    obs, est, (lo, hi) = u.get("observed"), u["change"], u["ci"]
    if obs is None or est is None or lo is None or hi is None or not abs(obs - est) > (hi - lo) / 2:
        return None
    if mv.get("scale") == "ratio":
        why = (
            "the columns are percentiles of all requests so far, while the change compares the arms look by look"
            " (latency or the split moved during the run)"
        )
    elif routed and not mv.get("route"):
        why = (
            "the change compares each route with the same route of the mainline, weighted by the routes' shares"
            " of the traffic, so a different mix of routes between the variants is not counted"
        )
    else:
        why = (
            "the change weights each look's new requests by their precision, so looks where the rate or the"
            " split moved count differently from the plain totals"
        )
    return f"observed {format_in_units(obs, u['unit'])} against the estimate {format_in_units(est, u['unit'])}: {why}"


def format_change(u: dict[str, Any]) -> str:
    """``change_in_units``'s change as text: "+3.1%", or a bound "> +232%" beyond the judge's grid."""
    text = format_in_units(u["change"], u["unit"])
    return {1: "> ", -1: "< "}.get(u.get("bound") or 0, "") + text


def format_in_units(x: float | None, unit: str) -> str:
    if x is None:
        return "-"
    if unit == "%":
        return f"{x:+.1f}%"
    if unit == "pp":
        return f"{x:+.2f} pp"
    return f"{x:+.4g}"


def status_codes(snap: dict[str, Any] | None) -> dict[str, dict[str, int]]:
    """Per variant: requests by outcome (1xx..5xx, connect_error, timeout, ...) from the router's snapshot."""
    out: dict[str, dict[str, int]] = {}
    for name, v in ((snap or {}).get("variants") or {}).items():
        o = v.get("outcomes") or {}
        out[name] = {k: int(n) for k, n in o.items() if isinstance(n, int)}
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
    now = time.time()
    started = getattr(runner, "started_at", None)
    d = st.decision
    ended = d.get("at") if d else None
    b = runner.b
    return {
        "format": "bakeoff.report/v1",
        "generated_at": now,
        "started_at": started,
        "duration_s": ((ended or now) - started) if started else None,
        "source": runner.res.origin,
        "config": {
            "judge": b.judge_raw,
            "routing": {
                "steps": list(b.routing.steps),
                "stepInterval": b.routing.step_interval,
                "maxCandidateShare": b.routing.max_candidate_share,
                "stickiness": b.routing.sticky_header or b.routing.sticky_cookie,
                "routes": [{"name": r.name, "match": r.match} for r in b.routing.routes],
            },
            "promotion": b.promotion,
        },
        "load": getattr(runner, "load_description", None),
        "status_codes": status_codes(runner.last_snapshot),
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
    lines += ["", *_meta_lines(rep)]
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
            "Changes, intervals and tolerances in one unit per metric: % = relative to the mainline, "
            "pp = percentage points.",
            "",
            "| variant | metric | state | control | candidate | change | confidence sequence | tolerance | p |",
            "|---|---|---|---:|---:|---:|---|---:|---:|",
        ]
        notes = []
        for name, vv in verdict["variants"].items():
            routed = any(x.get("route") for x in vv["metrics"].values())
            for m, mv in vv["metrics"].items():
                u = change_in_units(mv)
                p = min(x for x in (mv["p_worse"], mv["p_better"], mv["p_non_inferior"]) if x is not None)
                tol = format_in_units(u["tolerance"], u["unit"]) if u["tolerance"] is not None else "objective"
                note = observed_note(mv, u, routed)
                change = format_change(u)
                if note:
                    change += f" (observed {format_in_units(u['observed'], u['unit'])})"
                    notes.append(f"- {name} {m}: {note}.")
                lines.append(
                    f"| {name} | {m} | {mv['state']} | {_fmt(mv['control'])} | {_fmt(mv['candidate'])} | "
                    f"{change} | [{format_in_units(u['ci'][0], u['unit'])}, {format_in_units(u['ci'][1], u['unit'])}] | "
                    f"{tol} | {_fmt(p, '.3g')} |"
                )
        if notes:
            lines += ["", *notes]
    codes = rep.get("status_codes") or {}
    if codes:
        keys = [
            k
            for k in ("2xx", "3xx", "4xx", "5xx", "connect_error", "timeout", "aborted", "1xx", "upgraded")
            if any(c.get(k) for c in codes.values())
        ]
        lines += [
            "",
            "## Responses by status (router)",
            "",
            "| variant | " + " | ".join(keys) + " |",
            "|---|" + "---:|" * len(keys),
        ]
        for name, c in codes.items():
            lines.append(f"| {name} | " + " | ".join(str(c.get(k, 0)) for k in keys) + " |")
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


def _meta_lines(rep: dict[str, Any]) -> list[str]:
    started = rep.get("started_at")
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)) if started else "-"
    dur = rep.get("duration_s")
    cfg = rep.get("config") or {}
    return [
        f"- Started: {when}; duration: {_fmt(dur, '.0f')} s",
        f"- File: {rep.get('source') or '-'}; promotion: {cfg.get('promotion', '-')}",
        f"- Load: {rep.get('load') or 'not driven by bakeoff (live traffic)'}",
        f"- Config: `{json.dumps(cfg.get('judge'), sort_keys=True, default=str)}`",
        f"- Routing: `{json.dumps(cfg.get('routing'), sort_keys=True, default=str)}`",
    ]


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


def html_page(rep: dict[str, Any], md: str = "") -> str:
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


def rerender(state_dir: Path) -> dict[str, Path]:
    """Write report.md and report.html again from a finished (or stopped) run's report.json."""
    src = Path(state_dir) / "report.json"
    try:
        rep = json.loads(src.read_text())
    except OSError as e:
        raise ReportError(f"{src}: cannot read ({e.strerror or e}); a run writes it when it decides or stops") from None
    except ValueError as e:
        raise ReportError(f"{src}: not JSON: {e}") from None
    if not isinstance(rep, dict) or rep.get("format") != "bakeoff.report/v1":
        raise ReportError(f"{src}: not a bakeoff report (format bakeoff.report/v1)")
    try:
        md = markdown(rep)
        page = html_page(rep, md)
    except (KeyError, TypeError) as e:
        raise ReportError(f"{src}: incomplete report ({e})") from None
    paths = {"json": src, "md": src.with_name("report.md"), "html": src.with_name("report.html")}
    write_atomic(paths["md"], md)
    write_atomic(paths["html"], page)
    return paths


def _finite(x: Any) -> bool:
    if isinstance(x, float):
        return math.isfinite(x)
    if isinstance(x, dict):
        return all(_finite(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return all(_finite(v) for v in x)
    return True
