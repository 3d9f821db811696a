"""The evidence over time as a table (``bakeoff report DIR --format csv|parquet|json``), for notebooks.

One row per look, variant, metric and route, from the run directory's
``verdicts.jsonl`` (every look the judge made) and ``journal.jsonl`` (every
decision): the judge's estimate with its anytime-valid interval and state at
that look, and the decision in force for the variant at that time.

Columns:

- ``look``, ``at`` (Unix seconds), ``time`` (UTC), ``elapsed_s`` (since the run started), ``action`` (the
  judge's action at that look: continue, rollback, promote, stop);
- ``variant``, ``requests`` (judged so far), ``status`` (the judge's: waiting, judging, rolled_back, out, winner);
- ``metric``, ``route`` (empty for the whole service), ``role`` (guardrail, objective), ``scale``
  (difference, or ratio for latency: the estimate is a relative change);
- ``estimate``, ``lower``, ``upper``, ``control``, ``candidate``, ``p`` (Bonferroni-adjusted), ``state``
  (the metric's: unknown, better, worse, within, ...);
- ``decision``, ``decision_at``, ``decision_reason``: the decision in force after that look: the last
  journal record about the variant before the next look (admitted, ramped, rolled_back, winner,
  promoted, stopped, ...), empty before any.

pandas writes the files; parquet needs pyarrow (``pip install 'bakeoff[export]'``).
"""

from __future__ import annotations

import bisect
import json
from pathlib import Path
from typing import Any

from bakeoff.controller.report.model import ReportError

FORMATS = ("csv", "parquet", "json")
COLUMNS = [
    "look", "at", "time", "elapsed_s", "action", "variant", "requests", "status", "metric", "route", "role",
    "scale", "estimate", "lower", "upper", "control", "candidate", "p", "state", "decision", "decision_at",
    "decision_reason",
]  # fmt: skip
ROUTE_SEP = " @"  # the judge names a per-route metric "<metric> @<route>"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a torn last line
        if isinstance(rec, dict):
            out.append(rec)
    return out


def evidence_rows(state_dir: Path) -> list[dict[str, Any]]:
    """The rows of the table, oldest look first."""
    d = Path(state_dir)
    looks = _jsonl(d / "verdicts.jsonl")
    journal = _jsonl(d / "journal.jsonl")
    starts = [r["at"] for r in journal if r.get("type") == "run_started" and isinstance(r.get("at"), (int, float))]
    started = min(starts) if starts else (looks[0].get("at") if looks else None)
    # per variant: its journal records in time order (the decisions in force at a look)
    decisions: dict[str, list[dict[str, Any]]] = {}
    for r in journal:
        name = r.get("variant") or (r.get("winner") if r.get("type") == "promoted" else None)
        if r.get("type") in (None, "run_started", "warning") or not name or not isinstance(r.get("at"), (int, float)):
            continue
        decisions.setdefault(str(name), []).append(r)
    stops = [r for r in journal if r.get("type") == "stopped" and isinstance(r.get("at"), (int, float))]
    for recs in decisions.values():
        recs.sort(key=lambda r: r["at"])
    times = {n: [r["at"] for r in recs] for n, recs in decisions.items()}

    rows = []
    for k, look in enumerate(looks):
        at = look.get("at")
        # a look's decisions are journaled just after it: what is in force is what the journal holds
        # before the next look (or ever, after the last)
        nxt = looks[k + 1].get("at") if k + 1 < len(looks) else None
        cut = nxt if isinstance(nxt, (int, float)) else float("inf")
        for vname, vv in (look.get("variants") or {}).items():
            recs = decisions.get(vname, [])
            i = bisect.bisect_left(times.get(vname, []), cut)
            last = recs[i - 1] if i else None
            stop = next((s for s in reversed(stops) if s["at"] < cut), None)
            if stop is not None and (last is None or stop["at"] >= last["at"]):
                last = stop
            for key, mv in (vv.get("metrics") or {}).items():
                metric, _, route = key.partition(ROUTE_SEP)
                ci = mv.get("ci") or [None, None]
                rows.append(
                    {
                        "look": look.get("look"),
                        "at": at,
                        "time": at,
                        "elapsed_s": at - started if isinstance(at, (int, float)) and started else None,
                        "action": look.get("action"),
                        "variant": vname,
                        "requests": vv.get("requests"),
                        "status": vv.get("status"),
                        "metric": metric,
                        "route": route or None,
                        "role": mv.get("role"),
                        "scale": mv.get("scale"),
                        "estimate": mv.get("estimate"),
                        "lower": ci[0],
                        "upper": ci[1],
                        "control": mv.get("control"),
                        "candidate": mv.get("candidate"),
                        "p": mv.get("p"),
                        "state": mv.get("state"),
                        "decision": last.get("type") if last else None,
                        "decision_at": last.get("at") if last else None,
                        "decision_reason": last.get("reason") if last else None,
                    }
                )
    return rows


def frame(state_dir: Path) -> Any:
    """The evidence as a pandas DataFrame (columns as in this module's docstring)."""
    pd = _pandas()
    df = pd.DataFrame(evidence_rows(state_dir), columns=COLUMNS)
    for col in ("look", "requests"):
        df[col] = df[col].astype("Int64")
    for col in ("at", "elapsed_s", "estimate", "lower", "upper", "control", "candidate", "p", "decision_at"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    df["time"] = pd.to_datetime(df["at"], unit="s", utc=True)
    for col in ("action", "variant", "status", "metric", "route", "role", "scale", "state", "decision"):
        df[col] = df[col].astype("string")
    df["decision_reason"] = df["decision_reason"].astype("string")
    return df


def export(state_dir: Path, fmt: str, output: Path | None = None) -> tuple[Path, int]:
    """Write the evidence table as ``fmt`` (csv, parquet, json: a list of row objects); returns (path, rows)."""
    if fmt not in FORMATS:
        raise ReportError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    d = Path(state_dir)
    if not (d / "verdicts.jsonl").exists():
        raise ReportError(f"{d / 'verdicts.jsonl'}: no looks recorded yet; the judge writes one line per look")
    df = frame(d)
    out = Path(output) if output is not None else d / f"evidence.{fmt}"
    tmp = out.with_name(out.name + ".tmp")
    if fmt == "csv":
        df.to_csv(tmp, index=False)
    elif fmt == "json":
        df.to_json(tmp, orient="records", date_format="iso", date_unit="ms", double_precision=15, indent=1)
    else:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ReportError(
                "--format parquet needs pyarrow: pip install 'bakeoff[export]' (or use --format csv or json)"
            ) from None
        df.to_parquet(tmp, index=False, engine="pyarrow")
    tmp.replace(out)
    return out, len(df)


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError:
        raise ReportError("--format needs pandas: pip install 'bakeoff[export]'") from None
    return pd
