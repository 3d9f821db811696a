"""report.html: one self-contained page (no external references; charts are inline SVG).

The page is rendered from the jinja2 template set in ``templates/`` that the live dashboard
(bakeoff.controller.dashboard) renders too: ``context(rep)`` turns a report (``model.build``)
into what the components show, ``components.html.j2`` holds the components.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import yaml

from bakeoff.controller.report.markdown import _meta_lines
from bakeoff.controller.report.model import (
    _fmt,
    _pct,
    change_in_units,
    colour_of,
    format_change,
    format_in_units,
    observed_note,
    retired_reason,
    why,
)
from bakeoff.controller.report.svg import _svg_latency, svg_metric, svg_shares

TEMPLATES = Path(__file__).resolve().parent / "templates"

BANNER = {
    # decision kind -> (css class, background, border): only a promotion is green
    "promote": ("promoted", "#e6f4e6", "#2ca02c"),
    "stop": ("stopped", "#fdf0e0", "#e07b00"),
    "traffic": ("failed", "#fde8e8", "#d62728"),
    "none": ("undecided", "#eeeeee", "#888888"),
}
STATUS_KEYS = ("2xx", "3xx", "4xx", "5xx", "connect_error", "timeout", "aborted", "1xx", "upgraded")


def banner_kind(decision: dict[str, Any] | None) -> str:
    if decision is None:
        return "none"
    if decision.get("action") == "promote":
        return "promote"
    return "traffic" if decision.get("cause") == "traffic" else "stop"


@functools.cache
def environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def render(template: str, **kw: Any) -> str:
    return str(environment().get_template(template).render(**kw))


def _row(name: str, key: str, mv: dict[str, Any], routed: bool = False) -> dict[str, Any]:
    u = change_in_units(mv)
    note = observed_note(mv, u, routed)
    ps = [x for x in (mv.get("p_worse"), mv.get("p_better"), mv.get("p_non_inferior")) if x is not None]
    return {
        "variant": name,
        "metric": key,
        "state": mv.get("state", "unknown"),
        "change": format_change(u),
        "interval": f"[{format_in_units(u['ci'][0], u['unit'])}, {format_in_units(u['ci'][1], u['unit'])}]",
        "tolerance": format_in_units(u["tolerance"], u["unit"]) if u["tolerance"] is not None else "objective",
        "p": _fmt(min(ps), ".3g") if ps else "-",
        "observed": format_in_units(u["observed"], u["unit"]) if note else None,
        "note": f"{name} {key}: {note}." if note else None,
    }


def context(rep: dict[str, Any], *, charts: bool = True) -> dict[str, Any]:
    """What the components show, from a report (``model.build`` or report.json)."""
    d = rep.get("decision")
    kind = banner_kind(d)
    if d is None:
        headline = ("No decision yet", None, f"phase {rep.get('phase')}")
    elif d.get("action") == "promote":
        headline = ("Promoted", d.get("winner"), d.get("reason"))
    else:
        headline = ("Stopped without a winner", None, d.get("reason"))
    names = list(rep.get("variants") or {})
    colours = {n: colour_of(n) for n in names}
    obj = next((m for m in rep.get("judge", {}).get("metrics") or [] if m.get("role") == "objective"), None)
    variants = []
    deciding: dict[str, set[str]] = {}
    for n, v in (rep.get("variants") or {}).items():
        w = why(rep, n)
        deciding[n] = set(w["keys"])
        change = {k: str(x) for k, x in (v.get("change") or {}).items() if k != "message" and x}
        if v.get("commit") and "commit" not in change:
            change["commit"] = str(v["commit"])
        variants.append(
            {
                "name": n,
                "colour": colours[n],
                "phase": v.get("phase"),
                "share": f"{v.get('share') or 0.0:.1%}",
                "requests": v.get("requests", 0),
                "error_rate": _pct(v.get("error_rate")),
                "p50": _fmt(v.get("p50_ms"), ".2f"),
                "p99": _fmt(v.get("p99_ms"), ".2f"),
                "objective": _fmt(v.get("objective"), ".4f"),
                "change": change,
                "why": w,
                "retired": retired_reason(rep, n),
            }
        )
    first: list[dict[str, Any]] = []
    rest: list[dict[str, Any]] = []
    verdict = rep.get("verdict") or {}
    for n, vv in (verdict.get("variants") or {}).items():
        routed = any(x.get("route") for x in (vv.get("metrics") or {}).values())
        for key, mv in (vv.get("metrics") or {}).items():
            (first if key in deciding.get(n, ()) else rest).append(_row(n, key, mv, routed))
    keys_first: list[str] = []
    for n in names:
        for k in sorted(deciding.get(n, ())):
            if k not in keys_first:
                keys_first.append(k)
    all_keys: list[str] = []
    for h in rep.get("history") or []:
        for vv in (h.get("variants") or {}).values():
            for k in vv.get("metrics") or {}:
                if k not in all_keys:
                    all_keys.append(k)
    chart_list, others = [], []
    if charts:
        chart_list = [
            {"key": k, "svg": svg_metric(k, rep, colours, highlight=[n for n in names if k in deciding.get(n, ())])}
            for k in keys_first
        ]
        others = [{"key": k, "svg": svg_metric(k, rep, colours)} for k in all_keys if k not in keys_first]
    codes = rep.get("status_codes") or {}
    status_keys = [k for k in STATUS_KEYS if any(c.get(k) for c in codes.values())]
    cfg = rep.get("config") or {}
    return {
        "bakeoff": rep.get("bakeoff"),
        "phase": rep.get("phase"),
        "banner": BANNER[kind][0],
        "headline": headline,
        "original_mainline": rep.get("original_mainline"),
        "objective": obj.get("name") if obj else None,
        "variants": variants,
        "any_retired": any(v["retired"] for v in variants),
        "evidence_first": first,
        "evidence_rest": rest,
        "notes": [r["note"] for r in first + rest if r["note"]],
        "charts": chart_list,
        "other_charts": others,
        "shares_svg": svg_shares(rep, colours) if charts else "",
        "latency_svg": _svg_latency(rep["latency"], colours) if charts and rep.get("latency") else "",
        "status_codes": codes if status_keys else {},
        "status_keys": status_keys,
        "resources": {
            n: {
                "cpu": "-" if r.get("cpu_ms_per_request") is None else f"{r['cpu_ms_per_request']:.3f}",
                "mem": "-" if r.get("memory_mib") is None else f"{r['memory_mib']:.1f}",
                "mem_last": "-" if r.get("memory_mib_last") is None else f"{r['memory_mib_last']:.1f}",
                "batches": r.get("batches", 0),
            }
            for n, r in (rep.get("resources") or {}).items()
        },
        "events": [
            {
                "when": time.strftime("%H:%M:%S", time.localtime(e.get("at") or 0)),
                "type": e.get("type"),
                "variant": e.get("variant") or "",
                "reason": e.get("reason") or "",
            }
            for e in rep.get("events") or []
        ],
        "meta": [line[2:].replace("`", "") for line in _meta_lines(rep)],
        "config_yaml": yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False),
        "waiting": [v["name"] for v in variants if v["phase"] == "Winner"],
        "can_approve": any(v["phase"] == "Winner" for v in variants),
        "can_abort": d is None and rep.get("can_abort", True),
    }


def html_page(rep: dict[str, Any]) -> str:
    return render("report.html.j2", c=context(rep))
