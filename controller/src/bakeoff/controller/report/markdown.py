"""report.md: the decision, the variants and the evidence as Markdown tables."""

from __future__ import annotations

import time
from typing import Any

import yaml

from bakeoff.controller.report.model import (
    _fmt,
    _pct,
    change_in_units,
    format_change,
    format_in_units,
    observed_note,
    why,
)


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
    lines += ["", "## Why", ""]
    for name in rep["variants"]:
        w = why(rep, name)
        when = ""
        if w["after_s"] is not None:
            when = f" (after {w['after_s']:.0f} s" + (
                f", {w['requests']} requests)" if w["requests"] is not None else ")"
            )
        lines.append(f"- **{name}**: {w['sentence']}{when}")
    lines += [
        "",
        f"Judge: alpha {rep['judge']['alpha']}, Bonferroni over {rep['judge']['candidates']} candidate(s), "
        f"minSamples {rep['judge']['minSamples']}"
        + (
            f", each candidate's first {rep['judge']['warmup_s']:g} s unjudged (warmup)"
            if rep["judge"].get("warmup_s")
            else ""
        )
        + ".",
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
    if rep.get("resources"):
        lines += [
            "",
            "## Resource cost (process trees, per batch of looks)",
            "",
            "| variant | CPU ms per request | memory MiB (mean) | memory MiB (last) | batches |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, r in rep["resources"].items():
            lines.append(
                f"| {name} | {_fmt(r['cpu_ms_per_request'], '.3f')} | {_fmt(r['memory_mib'], '.1f')} | "
                f"{_fmt(r['memory_mib_last'], '.1f')} | {r['batches']} |"
            )
    lines += [
        "",
        "## Configuration",
        "",
        "```yaml",
        yaml.safe_dump(rep.get("config") or {}, sort_keys=False).rstrip(),
        "```",
    ]
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
    ]


# -- SVG -----------------------------------------------------------------------
