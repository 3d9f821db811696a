"""The report's data: one JSON-ready dict built from a run, and the units its figures are shown in."""

from __future__ import annotations

import math
import time
from typing import Any

from bakeoff.judge.latency import beyond_grid


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
            "warmup_s": runner.b.judge.warmup,
            "candidates": runner.b.judge.candidates,
            "metrics": [m.to_json() for m in runner.b.judge.metrics],
        },
        "variants": variants,
        "events": [e for e in runner.events],
        "verdict": runner.verdict.to_json() if runner.verdict is not None else None,
        "history": runner.history,
        "latency": latency_distributions(runner.last_snapshot),
        "resources": runner.resource_summary() if hasattr(runner, "resource_summary") else {},
    }


def _fmt(x: Any, spec: str = ".4g") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return format(x, spec)


def _pct(x: Any) -> str:
    return _fmt(x * 100 if isinstance(x, (int, float)) else None, "+.2f") + ("%" if x is not None else "")


def _finite(x: Any) -> bool:
    if isinstance(x, float):
        return math.isfinite(x)
    if isinstance(x, dict):
        return all(_finite(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return all(_finite(v) for v in x)
    return True


# -- what a person reads first: colours, sentences, the deciding evidence ------------------------


def colour_of(name: str) -> str:
    """A variant's colour, fixed by its name (the same in every report and the dashboard):
    a hue from a hash of the name, at one saturation and lightness that reads on white."""
    import zlib

    h = zlib.crc32(name.encode("utf-8"))
    hue = (h % 3600) / 10.0
    return f"hsl({hue:.1f}, 70%, {38 + (h >> 12) % 12}%)"


def split_metric(key: str) -> tuple[str, str | None]:
    """A verdict's metric key ("latency_p50 @checkout") -> (metric name, route or None)."""
    name, at, route = key.partition(" @")
    return name, (route if at else None)


def spec_of(rep: dict[str, Any], key: str) -> dict[str, Any]:
    name = split_metric(key)[0]
    for m in rep.get("judge", {}).get("metrics") or []:
        if m.get("name") == name:
            return m
    return {"name": name}


def units_of(rep: dict[str, Any], key: str, mv: dict[str, Any]) -> dict[str, Any]:
    """change_in_units for a look's (compact) metric entry, with the tolerance taken from the judge's spec."""
    spec = spec_of(rep, key)
    return change_in_units(
        {
            **mv,
            "kind": spec.get("kind", mv.get("kind")),
            "harm": spec.get("harm", mv.get("harm")),
            "tolerance": spec.get("tolerance", mv.get("tolerance")),
            "tolerance_relative": spec.get("relative", mv.get("tolerance_relative")),
            "role": spec.get("role", mv.get("role")),
        }
    )


def _interval(u: dict[str, Any]) -> str:
    """An interval as text; an open end (a latency change beyond the judge's grid) as infinity."""
    lo, hi = u["ci"]
    left = "(-∞" if lo is None else f"[{format_in_units(lo, u['unit'])}"
    right = "+∞)" if hi is None else f"{format_in_units(hi, u['unit'])}]"
    return f"{left}, {right}"


def evidence_phrase(rep: dict[str, Any], key: str, mv: dict[str, Any]) -> str:
    """One metric's state as a phrase: "latency_p50 interval [+10.5%, +32.3%] still overlaps the +30% tolerance"."""
    u = units_of(rep, key, mv)
    iv = _interval(u)
    state = mv.get("state")
    tol = format_in_units(u["tolerance"], u["unit"]) if u["tolerance"] is not None else None
    if tol is None:  # the objective: no tolerance, a direction
        if state == "better":
            return f"{key} interval {iv} lies wholly on the better side of no change"
        if state == "worse":
            return f"{key} interval {iv} lies wholly on the worse side of no change"
        return f"{key} interval {iv} still includes no change"
    if state == "worse":
        return f"{key} interval {iv} lies beyond the {tol} tolerance"
    if state in ("non_inferior", "better"):
        return f"{key} interval {iv} lies within the {tol} tolerance"
    return f"{key} interval {iv} still overlaps the {tol} tolerance"


def _look_at(rep: dict[str, Any], at: float | None, name: str) -> dict[str, Any] | None:
    """The last look at or before ``at`` (or the last look) that judged ``name``."""
    best = None
    for h in rep.get("history") or []:
        if name not in (h.get("variants") or {}):
            continue
        if at is not None and h.get("at", 0) > at + 1e-6:
            break
        best = h
    return best


DECISIVE = {"rolled_back", "failed", "promoted", "winner", "stopped", "lost", "approved"}


def decision_event(rep: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The event that decided a variant (its last rollback, failure, promotion, loss), or None."""
    out = None
    for e in rep.get("events") or []:
        if e.get("variant") == name and e.get("type") in ("rolled_back", "failed", "promoted", "lost", "winner"):
            out = e
    return out


def deciding_keys(rep: dict[str, Any], name: str, look: dict[str, Any] | None) -> list[str]:
    """The metrics that decided (or are blocking) a variant at a look: worse guardrails for a rollback,
    the objective for a win, the still-unknown ones for an undecided variant."""
    if look is None:
        return []
    ms = (look.get("variants") or {}).get(name, {}).get("metrics") or {}
    worse = [k for k, m in ms.items() if m.get("state") == "worse"]
    if worse:
        return worse
    phase = (rep.get("variants") or {}).get(name, {}).get("phase")
    if phase in ("Promoted", "Winner"):
        obj = [k for k, m in ms.items() if m.get("role") == "objective"]
        if obj:
            return obj
        # promoted on its guardrails alone (whenNoRegression): the whole-service ones it passed
        return [k for k, m in ms.items() if " @" not in k and m.get("state") in ("non_inferior", "better")]
    unknown = [k for k, m in ms.items() if m.get("state") == "unknown"]
    return unknown


def why(rep: dict[str, Any], name: str) -> dict[str, Any]:
    """Per variant, one sentence first (why it won, lost, or what blocked it), the time and the
    requests to its decision, and the metric keys that decided it."""
    v = (rep.get("variants") or {}).get(name) or {}
    phase = v.get("phase")
    started = rep.get("started_at")
    e = decision_event(rep, name)
    at = e.get("at") if e else None
    look = _look_at(rep, at, name)
    keys = deciding_keys(rep, name, look)
    ms = ((look or {}).get("variants") or {}).get(name, {}).get("metrics") or {}
    phrases = [evidence_phrase(rep, k, ms[k]) for k in keys if k in ms]
    if len(phrases) > 3:
        phrases = [*phrases[:3], f"and {len(phrases) - 3} more"]
    requests = ((look or {}).get("variants") or {}).get(name, {}).get("requests")
    if name == rep.get("original_mainline") and phase not in ("Promoted",):
        d = rep.get("decision")
        if d and d.get("action") == "promote" and d.get("winner") != name:
            sentence = f"The mainline, replaced by {d['winner']}."
        else:
            sentence = "The mainline: every candidate is compared with it."
        return {"sentence": sentence, "after_s": None, "requests": v.get("requests"), "keys": []}
    reason = v.get("reason") or (e or {}).get("reason") or ""
    if phase == "Promoted":
        sentence = f"Won: {'; '.join(phrases) or reason}."
    elif phase == "Winner":
        sentence = f"Waiting for approval: {'; '.join(phrases) or reason}."
    elif phase == "RolledBack":
        sentence = f"Rolled back: {'; '.join(phrases) if phrases else reason}."
    elif phase == "Lost":
        sentence = f"Lost: {reason or 'another variant won'}" + (f", while {'; '.join(phrases)}." if phrases else ".")
    elif phase and phase.startswith("Failed"):
        sentence = f"Failed to start: {reason}."
    elif phrases:
        sentence = f"Undecided: {'; '.join(phrases)}."
    elif (rep.get("variants") or {}).get(name, {}).get("requests"):
        sentence = "Undecided: too few requests for the judge yet."
    else:
        sentence = f"{phase or 'Pending'}: {reason or 'no requests yet'}."
    after = (at - started) if at is not None and started is not None else None
    return {"sentence": sentence, "after_s": after, "requests": requests, "keys": keys}


def shares_over_time(rep: dict[str, Any]) -> dict[str, list[tuple[float, float]]]:
    """Each variant's share of the traffic as a step function over time, from the events: an
    ``allocated`` record (allocation: adaptive) carries every live candidate's share for that
    interval; admitted/ramped carry one share; a rollback, failure or loss sets it to 0, a
    promotion to 1; the mainline takes the rest."""
    names = list(rep.get("variants") or {})
    main = rep.get("original_mainline")
    t0 = rep.get("started_at") or 0.0
    cur = {n: 0.0 for n in names}
    if main in cur:
        cur[main] = 1.0
    mainline = main
    out: dict[str, list[tuple[float, float]]] = {n: [(t0, cur[n])] for n in names}
    for e in rep.get("events") or []:
        n, kind, at = e.get("variant"), e.get("type"), e.get("at") or t0
        if kind == "allocated" and isinstance(e.get("shares"), dict):
            for m, share in e["shares"].items():
                if m in cur and m != mainline and isinstance(share, (int, float)):
                    cur[m] = float(share)
        elif n not in cur:
            continue
        elif kind in ("admitted", "ramped") and e.get("share") is not None:
            cur[n] = float(e["share"])
        elif kind in ("rolled_back", "failed", "lost", "stopped"):
            cur[n] = 0.0
        elif kind == "promoted":
            for m in cur:
                cur[m] = 0.0
            cur[n], mainline = 1.0, n
        else:
            continue
        if mainline in cur and kind != "promoted":
            cur[mainline] = max(0.0, 1.0 - sum(s for m, s in cur.items() if m != mainline))
        for m in names:
            out[m].append((at, cur[m]))
    end = rep.get("generated_at") or (rep.get("started_at") or 0) + (rep.get("duration_s") or 0)
    for m in names:
        out[m].append((max(end, out[m][-1][0]), cur[m]))
    return out


def allocation_times(rep: dict[str, Any]) -> list[tuple[float, str]]:
    """(time, what moved) of each ``allocated`` record: the intervals adaptive allocation re-split."""
    return [
        (float(e.get("at") or 0.0), str(e.get("reason") or ""))
        for e in rep.get("events") or []
        if e.get("type") == "allocated" and isinstance(e.get("shares"), dict)
    ]


def retired_reason(rep: dict[str, Any], name: str) -> str:
    """Why a variant left the contest, for its row: its reason, marked when adaptive allocation
    retired it (a ``lost`` record with retired_by: "allocation"); "" while it is in."""
    v = (rep.get("variants") or {}).get(name) or {}
    if v.get("phase") not in ("Lost", "RolledBack") and not str(v.get("phase") or "").startswith("Failed"):
        return ""
    e = decision_event(rep, name)
    reason = str(v.get("reason") or (e or {}).get("reason") or "")
    if e is not None and e.get("type") == "lost" and e.get("retired_by") == "allocation":
        return f"retired by adaptive allocation: {reason}"
    return reason
