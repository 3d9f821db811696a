"""``bakeoff judge``: fetch snapshots, run the judge, print the verdict.

    bakeoff judge --config FILE --snapshot URL|FILE [URL|FILE ...] [--watch] [--interval S] [--json]

Without ``--watch`` the judge looks once (everything the routers have seen so
far is one batch).  With ``--watch`` it looks every ``--interval`` seconds,
threading its state from look to look, until it promotes or stops.  Exit
status: 0 on a verdict, 1 when the source cannot be read (single look),
2 for a bad command line or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from pathlib import Path
from typing import TextIO

from bakeoff.judge.config import JudgeConfigError, load_config
from bakeoff.judge.core import JudgeState, step
from bakeoff.judge.sources import SourceError, make_source
from bakeoff.judge.verdict import Verdict


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bakeoff judge", description="Judge candidates against the mainline.")
    p.add_argument("--config", required=True, help="judge YAML (spec.judge) or a whole Bakeoff resource")
    p.add_argument(
        "--snapshot",
        required=True,
        nargs="+",
        action="extend",
        metavar="URL|FILE",
        help="router /-/snapshot URLs or files (merged), or prometheus+http://host:9090",
    )
    p.add_argument("--watch", action="store_true", help="keep looking until a final decision")
    p.add_argument("--interval", type=float, default=10.0, metavar="S", help="seconds between looks (default 10)")
    p.add_argument("--json", action="store_true", help="print verdicts as JSON (one per line)")
    p.add_argument(
        "--state", metavar="FILE", help="load the judge state from FILE if it exists and save it after each look"
    )
    p.add_argument("--max-looks", type=int, default=0, help=argparse.SUPPRESS)
    return p


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "+inf" if x > 0 else "-inf"
    return f"{x * 100:+.2f}%" if pct else f"{x:.4g}"


def render_table(verdict: Verdict, out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, highlight=False, width=None if out.isatty() else 150)
    d = verdict.decision
    colour = {"continue": "yellow", "rollback": "red", "promote": "green", "stop": "cyan"}[d.action]
    title = f"[bold {colour}]{d.action.upper()}[/]"
    if d.winner:
        title += f" winner: [bold]{d.winner}[/]"
    if d.rollback:
        title += f"  rollback: {', '.join(d.rollback)}"
    console.print(
        f"look {verdict.look}  control {verdict.control}  alpha {verdict.alpha:g} "
        f"(Bonferroni over {verdict.tests_in_family} tests)  {title}"
    )
    if d.reason:
        console.print(f"  {d.reason}")
    for note in verdict.notes:
        console.print(f"  [dim]{note}[/]")
    table = Table(show_lines=False)
    for col in (
        "variant",
        "status",
        "requests",
        "metric",
        "state",
        "control",
        "candidate",
        "change",
        "confidence sequence",
        "p",
    ):
        table.add_column(
            col, justify="right" if col in ("requests", "control", "candidate", "p") else "left", no_wrap=True
        )
    state_colour = {"worse": "red", "better": "green", "non_inferior": "cyan", "unknown": "dim"}
    for name, vv in verdict.variants.items():
        first = True
        for mname, mv in vv.metrics.items():
            pct = mv.scale == "ratio" or mv.kind in ("error_rate", "proportion")
            lo, hi = mv.ci
            change = _fmt(mv.estimate, pct)
            ci = f"[{_fmt(lo, pct)}, {_fmt(hi, pct)}]"
            p = min(mv.p_worse, mv.p_better, mv.p_non_inferior)
            table.add_row(
                name if first else "",
                vv.status if first else "",
                str(vv.requests) if first else "",
                mname,
                f"[{state_colour[mv.state]}]{mv.state}[/]",
                _fmt(mv.control),
                _fmt(mv.candidate),
                change,
                ci,
                _fmt(p),
            )
            first = False
    console.print(table)


async def _run(args, out: TextIO, err: TextIO) -> int:
    import structlog

    log = structlog.get_logger("bakeoff.judge")
    try:
        config = load_config(args.config)
    except JudgeConfigError as e:
        print(f"error: {e}", file=err)
        return 2
    try:
        source = make_source(args.snapshot)
    except ValueError as e:
        print(f"error: {e}", file=err)
        return 2
    state = JudgeState.new(config)
    if args.state and Path(args.state).exists():
        try:
            state = JudgeState.from_json(json.loads(Path(args.state).read_text()), config)
        except (ValueError, KeyError, TypeError) as e:
            print(f"error: {args.state}: not a judge state: {e}", file=err)
            return 2
    looks = 0
    try:
        while True:
            try:
                # Several routers: each snapshot on its own, so each keeps its own baseline.
                snapshot = await source.fetch_each()
            except SourceError as e:
                if not args.watch:
                    print(f"error: {e}", file=err)
                    return 1
                log.warning("source unavailable", source=source.description, error=str(e))
                await asyncio.sleep(args.interval)
                continue
            state, verdict = step(state, snapshot, time.time())
            looks += 1
            if args.state:
                Path(args.state).write_text(json.dumps(state.to_json()))
            if args.json:
                print(verdict.dumps(), file=out, flush=True)
            else:
                render_table(verdict, out)
            if not args.watch or verdict.decision.action in ("promote", "stop"):
                return 0
            if args.max_looks and looks >= args.max_looks:
                return 0
            await asyncio.sleep(args.interval)
    finally:
        await source.close()


def main(argv: list[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if args.interval <= 0:
        print("error: --interval must be positive", file=err)
        return 2
    try:
        return asyncio.run(_run(args, out, err))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
