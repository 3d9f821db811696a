"""What a person watching ``bakeoff run`` sees.

On a terminal: a live table (rich) — per variant its phase, share, requests,
error rate, p50/p99, the objective, and the judge's state per metric — above
a log of events.  Otherwise (or with ``--headless``): one plain line per
event and a progress line per variant every few seconds.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Any

STATE_MARK = {"worse": "worse", "better": "better", "non_inferior": "ok", "unknown": "?"}
SYMBOL = {"worse": "✗", "better": "▲", "non_inferior": "≈", "unknown": "?"}


def short_metric(name: str) -> str:
    """A metric label for the live table: the metric shortened, its route (" @checkout") kept whole."""
    name, at, route = name.partition(" @")
    if name == "error_rate":
        short = "err"
    elif name.startswith("latency_"):
        short = name[len("latency_") :]
    else:
        short = name.replace(" (objective)", "")[:8]
    return f"{short} @{route}" if at else short


FAILED_TO_START = "Failed to start"


def shown_phase(v: dict[str, Any]) -> tuple[str, str]:
    """The phase and reason a person reads for a candidate (``VariantState.to_json()``).

    A candidate that never became healthy (never admitted: step -1) is "Failed to start",
    whether its workload failed or it was still starting when another variant won.
    """
    phase, reason = str(v.get("phase", "?")), str(v.get("reason") or "")
    if int(v.get("step", 0) if v.get("step") is not None else 0) >= 0 or phase not in ("RolledBack", "Lost"):
        return phase, reason
    if v.get("failed"):
        return FAILED_TO_START, reason
    if phase == "Lost" and reason != "stopped without a winner" and reason.endswith(" won"):
        return FAILED_TO_START, f"never became healthy before the decision ({reason})"
    return phase, reason


SERVING_ORDER = {"Mainline": 0, "Winner": 1, "Promoted": 1, "Serving": 2, "Pending": 3, "Gated": 4}


SPARK = "▁▂▃▄▅▆▇█"


def spark(shares: list[float], width: int = 8) -> str:
    """A share's history as a sparkline of ``width`` cells (the last ``width`` intervals), 0 to 100%."""
    tail = shares[-width:]
    return "".join(" " if x <= 0 else SPARK[min(len(SPARK) - 1, int(x * len(SPARK)))] for x in tail).rjust(width)


def share_history(journal: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Each variant's share after every interval in which adaptive allocation moved shares (the
    journal's ``allocated`` records); empty for a fixed split, whose steps the report draws."""
    out: dict[str, list[float]] = {}
    current: dict[str, float] = {}
    for e in journal:
        shares = e.get("shares")
        if e.get("type") != "allocated" or not isinstance(shares, dict):
            continue
        current = {str(k): float(v) for k, v in shares.items() if isinstance(v, (int, float))}
        for name in set(out) | set(current):
            out.setdefault(name, []).append(current.get(name, 0.0))
    return out


def status_rows(
    st: dict[str, Any],
    weights: dict[str, float],
    phase_of: Any,
    width: int,
    history: dict[str, list[float]] | None = None,
) -> list[str]:
    """`bakeoff status`'s table: one row per variant (mainline, then the serving candidates by share,
    then the retired ones), its current share, its share over the last intervals (a sparkline, from
    ``history``) and why it was retired; a long reason wraps under the reason column, so no line is
    wider than ``width`` at any number of variants."""
    import textwrap

    mainline = st.get("mainline", "")
    rows: list[tuple[str, str, float, str]] = [(mainline, "Mainline", weights.get(mainline, 0.0), "")]
    for name, v in (st.get("variants") or {}).items():
        if name == mainline:
            continue
        phase, reason = phase_of(v)
        rows.append((name, phase, weights.get(name, 0.0), reason))
    rows[1:] = sorted(rows[1:], key=lambda r: (SERVING_ORDER.get(r[1], 5), -r[2], r[0]))
    name_w = min(max(len("variant"), *(len(r[0]) for r in rows)), 24)
    phase_w = max(len("phase"), *(len(r[1]) for r in rows))
    hist_w = 9 if history else 0  # 8 cells and a space
    lead = 2 + name_w + 1 + phase_w + 1 + 7 + 2 + hist_w
    reason_w = max(20, width - lead)
    head = f"{'history':<8} " if history else ""
    out = [f"  {'variant':<{name_w}} {'phase':<{phase_w}} {'share':>7}  {head}reason"]
    for name, phase, share, reason in rows:
        shown = name if len(name) <= name_w else name[: name_w - 1] + "…"
        parts = textwrap.wrap(reason, reason_w) or [""]
        line = spark((history or {}).get(name, [])) + " " if history else ""
        out.append(f"  {shown:<{name_w}} {phase:<{phase_w}} {share:>7.1%}  {line}{parts[0]}".rstrip())
        out += [" " * lead + p for p in parts[1:]]
    serving = sum(1 for r in rows[1:] if r[2] > 0)
    retired = sum(1 for r in rows[1:] if r[1] in ("Lost", "RolledBack"))
    out.append(f"  {len(rows) - 1} candidates: {serving} serving, {retired} retired or rolled back")
    return out


def variant_rows(runner: Any) -> list[dict[str, Any]]:
    """Per-variant figures from the last snapshot, the controller state and the last verdict."""
    from bakeoff.contracts.histogram import decode_counts, quantile_from_counts
    from bakeoff.judge.contrast import unit_stats
    from bakeoff.judge.counters import InvalidSnapshot, parse_snapshot

    snap = runner.last_snapshot or {}
    svars = snap.get("variants", {})
    st = runner.state
    obj = runner.b.judge.objective
    names = [st.mainline] + [n for n in st.variants if n != st.mainline]
    if runner.b.mainline_name not in names:
        names.insert(1, runner.b.mainline_name)
    counters: dict[str, Any] = {}
    if obj is not None and snap:
        with contextlib.suppress(InvalidSnapshot):
            counters = parse_snapshot(snap)[0]
    rows = []
    for name in names:
        v = svars.get(name) or {}
        n = v.get("requests", 0)
        o = v.get("outcomes", {})
        errors = o.get("5xx", 0) + o.get("connect_error", 0) + o.get("timeout", 0)
        p50 = p99 = None
        if n:
            counts = decode_counts(v["latency"])
            p50, p99 = quantile_from_counts(counts, 0.5), quantile_from_counts(counts, 0.99)
        objective = judged_objective(runner, name) if obj is not None else None
        if objective is None and obj is not None and name in counters:
            # not judged yet (e.g. no candidate serving): the judge's own per-variant statistic
            objective = _finite_or_none(unit_stats(obj, counters[name])[1])
        vs = st.variants.get(name)
        if name == st.mainline:
            phase = "Mainline" if vs is None else vs.phase
        elif name == runner.b.mainline_name and vs is None:
            phase = "Retired"
        else:
            phase = vs.phase if vs else "?"
        reason = vs.reason if vs else ""
        if vs is not None and name != st.mainline:
            phase, reason = shown_phase(vs.to_json())
        judge = {}
        changes: dict[str, str] = {}
        if runner.verdict is not None and name in runner.verdict.variants:
            vv = runner.verdict.variants[name]
            judge = {m: mv.state for m, mv in vv.metrics.items()}
            changes = {m: change_text(asdict(mv)) for m, mv in vv.metrics.items()}
        rows.append(
            {
                "variant": name,
                "phase": phase,
                "share": st.weights.get(name, 0.0),
                "requests": n,
                "error_rate": errors / n if n else None,
                "p50_ms": p50 * 1000 if p50 is not None else None,
                "p99_ms": p99 * 1000 if p99 is not None else None,
                "objective": objective,
                "judge": judge,
                "changes": changes,
                "commit": runner.commit_of(name),
                "reason": reason,
            }
        )
    return rows


def _finite_or_none(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def judged_objective(runner: Any, name: str) -> float | None:
    """The objective's value for a variant as the judge estimates it (the per-request mean of the
    reported values: a response reporting ``conversion: 0`` is a request without a conversion),
    from the last verdict: a candidate's own, or the mainline's as every candidate's control."""
    v = runner.verdict
    if v is None:
        return None
    for cand, vv in v.variants.items():
        for mv in vv.metrics.values():
            if mv.role != "objective" or mv.route is not None:
                continue
            if cand == name:
                return _finite_or_none(mv.candidate)
            if name == v.control:
                got = _finite_or_none(mv.control)
                if got is not None:
                    return got
    return None


def change_text(mv: dict[str, Any]) -> str:
    """A metric's change and its tolerance in one unit: ``+3.1% (tol +25%)``, ``+0.40 pp (tol +1.00 pp)``."""
    from bakeoff.controller.report import change_in_units, format_change, format_in_units

    u = change_in_units(mv)
    if u["change"] is None:
        return "?"
    text = format_change(u)
    if u["tolerance"] is not None:
        text += f" (tol {format_in_units(u['tolerance'], u['unit'])})"
    return text


def _f(x: Any, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def event_line(e: dict[str, Any], t0: float | None = None) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(e.get("at") or time.time()))
    parts = [when, f"{e['type']:<12}"]
    if e.get("variant"):
        parts.append(e["variant"])
    if e.get("share") is not None:
        parts.append(f"share={e['share']:.1%}")
    if e.get("commit"):
        parts.append(f"commit={str(e['commit'])[:10]}")
    if e.get("reason"):
        parts.append(f"- {e['reason']}")
    return " ".join(parts)


class LineView:
    live = False

    def __init__(self, bakeoff: Any, state_dir: Path, out=None, every: float = 5.0) -> None:
        self.b = bakeoff
        self.out = out or sys.stdout
        self.every = every
        self.last = 0.0
        self.state_dir = state_dir

    def start(self) -> None:
        print(f"bakeoff {self.b.name}: state in {self.state_dir}", file=self.out, flush=True)

    def stop(self) -> None:
        pass

    def event(self, e: dict[str, Any]) -> None:
        print(event_line(e), file=self.out, flush=True)

    def update(self, runner: Any) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            return
        if self.last == 0.0:
            r = runner.platform.describe().get("router") or {}
            if r:
                print(f"router {r.get('url')}  admin http://{r.get('admin')}", file=self.out, flush=True)
        self.last = now
        if runner.last_snapshot is None:
            return
        obj = self.b.judge.objective
        rows = variant_rows(runner)
        name_w = max([14] + [len(r["variant"]) for r in rows])  # names line up, however long
        for r in rows:
            judge = " ".join(f"{m}={STATE_MARK.get(s, s)}[{r['changes'].get(m, '?')}]" for m, s in r["judge"].items())
            print(
                f"  {r['variant']:<{name_w}} {r['phase']:<10} share={r['share']:6.1%} requests={r['requests']:<7} "
                f"errors={_f(r['error_rate'], '.2%')} p50={_f(r['p50_ms'], '.1f')}ms p99={_f(r['p99_ms'], '.1f')}ms "
                + (f"{obj.name}={_f(r['objective'], '.3f')} " if obj is not None else "")
                + judge,
                file=self.out,
                flush=True,
            )

    def summary(self, runner: Any) -> None:
        d = runner.state.decision
        if d is None:
            print(
                f"stopped before a decision; phase {runner.state.phase}; resume with the same --state-dir",
                file=self.out,
                flush=True,
            )
        elif runner.decided_before:
            print(f"already decided by an earlier run: {d['action']} — {d['reason']} (report kept)", file=self.out)
        elif d["action"] == "promote":
            print(f"decision: promote {d['winner']} — {d['reason']}", file=self.out, flush=True)
        else:
            print(f"decision: stop without a winner — {d['reason']}", file=self.out, flush=True)
        print(f"report: {runner.journal.dir / 'report.html'}", file=self.out, flush=True)


class LiveView(LineView):
    live = True

    def __init__(self, bakeoff: Any, state_dir: Path) -> None:
        super().__init__(bakeoff, state_dir)
        from rich.console import Console

        self.console = Console()
        self.events: deque[str] = deque(maxlen=12)
        self.live_obj: Any = None  # rich.live.Live while shown
        self.runner = None

    def start(self) -> None:
        from rich.live import Live

        self.live_obj = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
        self.live_obj.start()

    def stop(self) -> None:
        if self.live_obj is not None:
            self.live_obj.update(self._render())
            self.live_obj.stop()
            self.live_obj = None

    def event(self, e: dict[str, Any]) -> None:
        self.events.append(event_line(e))
        if self.live_obj is not None:
            self.live_obj.update(self._render())

    def update(self, runner: Any) -> None:
        self.runner = runner
        now = time.monotonic()
        if now - self.last < 0.5 or self.live_obj is None:
            return
        self.last = now
        self.live_obj.update(self._render())

    def _render(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        r = self.runner
        if r is None:
            return Text(f"bakeoff {self.b.name}: starting …")
        router = r.platform.describe().get("router") or {}
        d = r.state.decision
        head = f"bakeoff [bold]{self.b.name}[/]  phase [bold]{r.state.phase}[/]  router {router.get('url', '-')}"
        if d:
            colour = "green" if d["action"] == "promote" else ("red" if d.get("cause") == "traffic" else "yellow")
            what = "promote" if d["action"] == "promote" else "stopped without a winner"
            head += f"  decision: [bold {colour}]{what}[/] {d.get('winner') or ''}"
        obj = self.b.judge.objective
        t = Table(expand=False)
        cols = ["variant", "phase", "share", "requests", "errors", "p50 ms", "p99 ms", "judge", "why"]
        if obj is not None:
            arrow = "\u2191" if obj.harm < 0 else "\u2193"  # which way the objective should go
            cols.insert(7, f"{obj.name} {arrow}")
        rows = variant_rows(r)
        # With many variants every row stays one line (long cells end in an ellipsis) so the table
        # fits a terminal; with a few the judge column folds on a narrow terminal instead.
        many = len(rows) > 8
        widths = {
            "variant": min(24, max(len(row["variant"]) for row in rows)),
            "phase": max(len(row["phase"]) for row in rows),
            "judge": 14,
            "why": 20 if many else 8,
        }
        for c in cols:
            # The figures never wrap or shrink.
            t.add_column(
                c,
                justify="left" if c in ("variant", "phase", "judge", "why") else "right",
                no_wrap=c not in ("judge", "why") or many,
                overflow="fold" if c in ("judge", "why") and not many else "ellipsis",
                min_width=widths.get(c, len(c)),
                max_width=(48 if many else None) if c == "judge" else (44 if c == "why" else None),
            )
        colour = {"worse": "red", "better": "green", "non_inferior": "cyan", "unknown": "dim"}
        for row in rows:
            judge = " ".join(
                f"[{colour.get(s, 'white')}]{short_metric(m)}{SYMBOL.get(s, s)} {row['changes'].get(m, '?')}[/]"
                for m, s in row["judge"].items()
            )
            cells = [
                row["variant"],
                row["phase"],
                f"{row['share']:.1%}",
                str(row["requests"]),
                _f(row["error_rate"], ".2%"),
                _f(row["p50_ms"], ".1f"),
                _f(row["p99_ms"], ".1f"),
            ]
            if obj is not None:
                cells.append(_f(row["objective"], ".3f"))
            t.add_row(*cells, judge, row["reason"] if row["phase"] not in ("Serving", "Mainline") else "")
        log = Text("\n".join(self.events) or "(no events yet)")
        legend = Text(
            "judge: ▲ better  ≈ within tolerance  ✗ worse  ? not yet known; change vs mainline "
            "(% relative, pp = percentage points) and its tolerance",
            style="dim",
        )
        return Group(Text.from_markup(head), t, legend, Text("events", style="bold"), log)


def make_view(*, headless: bool, bakeoff: Any, state_dir: Path) -> LineView:
    if headless or not sys.stdout.isatty():
        return LineView(bakeoff, state_dir)
    return LiveView(bakeoff, state_dir)
