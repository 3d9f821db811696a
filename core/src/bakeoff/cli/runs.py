"""Commands on local runs (``bakeoff run``), addressed by their state directory.

``status``: the run's phase, decision and variants (from ``status.json``).
``approve``: let a winner waiting for approval (``promotion: manual``) be promoted.
``abort``: stop a running bake-off without a winner; the mainline keeps all traffic.
``report``: write ``report.md`` and ``report.html`` again from ``report.json``; with ``--format``
the evidence over time as a table (csv, parquet, json; bakeoff.controller.report.export).
``list``: every run under a directory (default ``./.bakeoff-state``).

A running ``bakeoff run`` watches its state directory for the ``approve`` and
``abort`` files these commands write, so they work from any shell.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from bakeoff.cli.errors import EXIT_CONFIG, CommandError

DEFAULT_ROOT = Path(".bakeoff-state")


def _state_dir(arg: str) -> Path:
    p = Path(arg)
    if not p.exists():
        raise CommandError(f"{arg}: no such directory (a state directory of bakeoff run)", EXIT_CONFIG)
    if not (p / "status.json").exists() and not (p / "journal.jsonl").exists():
        raise CommandError(
            f"{arg}: not the state directory of a bakeoff run (no status.json or journal.jsonl in it)", EXIT_CONFIG
        )
    return p


def _read_status(d: Path) -> dict[str, Any]:
    try:
        st = json.loads((d / "status.json").read_text())
    except (OSError, ValueError) as e:
        raise CommandError(f"{d / 'status.json'}: cannot read: {e}") from None
    if not isinstance(st, dict):
        raise CommandError(f"{d / 'status.json'}: not a status document")
    return st


def _decision_text(st: dict[str, Any]) -> str:
    d = st.get("decision")
    if not d:
        return "no decision yet"
    if d.get("action") == "promote":
        return f"promoted {d.get('winner')}: {d.get('reason', '')}"
    return f"stopped without a winner: {d.get('reason', '')}"


def _width() -> int:
    """The terminal's width (COLUMNS, else the terminal, else 100)."""
    import shutil

    return max(60, shutil.get_terminal_size((100, 24)).columns)


def show_status(d: Path, as_json: bool = False) -> int:
    st = _read_status(_state_dir(str(d)))
    if as_json:
        print(json.dumps(st, indent=1))
        return 0
    running = "running" if st.get("running") else "not running"
    print(f"bake-off {st.get('bakeoff')} ({running}), phase {st.get('phase')}; {_decision_text(st)}")
    weights = st.get("weights") or {}
    from bakeoff.controller.journal import read_records
    from bakeoff.controller.view import share_history, shown_phase, status_rows

    try:
        records = read_records(_state_dir(str(d)) / "journal.jsonl")
    except OSError:  # an unreadable journal: the table without its history column
        records = []
    history = share_history(records)
    for line in status_rows(st, weights, shown_phase, _width(), history):
        print(line)
    if (d / "report.html").exists():
        print(f"report: {d / 'report.html'}")
    return 0


class Approve:
    name = "approve"
    help = "approve the winner of a local run waiting for approval (promotion: manual)"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("state_dir", metavar="STATE_DIR", help="the run's state directory")
        p.add_argument("variant", nargs="?", help="the winner to approve (default: the one waiting)")
        p.add_argument("--reason", default="", help="recorded with the approval in the journal and the report")

    def run(self, args: argparse.Namespace) -> int:
        d = _state_dir(args.state_dir)
        st = _read_status(d)
        waiting = [n for n, v in (st.get("variants") or {}).items() if v.get("phase") == "Winner"]
        if args.variant and args.variant not in (st.get("variants") or {}):
            raise CommandError(f"{d}: no variant named {args.variant!r}", EXIT_CONFIG)
        if not waiting:
            raise CommandError(
                f"{d}: no winner is waiting for approval (phase {st.get('phase')}; {_decision_text(st)})"
            )
        if args.variant and args.variant not in waiting:
            raise CommandError(
                f"{d}: {args.variant} is not waiting for approval "
                f"(phase {(st.get('variants') or {})[args.variant].get('phase')}); waiting: {', '.join(waiting)}"
            )
        name = args.variant or waiting[0]
        _write_request(d / "approve", {"variant": name, "reason": args.reason.strip()})
        print(f"approved {name}; the run promotes it on its next pass")
        return 0


def _write_request(path: Path, data: dict[str, Any]) -> None:
    """The file a running ``bakeoff run`` picks up: one JSON object with the OS user and the time."""
    from bakeoff.controller.journal import write_request

    write_request(path, data)


class Abort:
    name = "abort"
    help = "stop a local run without a winner (the mainline keeps all traffic)"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("state_dir", metavar="STATE_DIR", help="the run's state directory")
        p.add_argument("--reason", default="aborted by a person", help="recorded in the journal and the report")

    def run(self, args: argparse.Namespace) -> int:
        d = _state_dir(args.state_dir)
        st = _read_status(d)
        if st.get("decision"):
            raise CommandError(f"{d}: already decided ({_decision_text(st)}); nothing to abort")
        _write_request(d / "abort", {"reason": args.reason.strip()})
        if not st.get("running"):
            print("aborted; the run is not running: the abort takes effect when it is resumed")
        else:
            print("aborting; the run stops without a winner on its next pass")
        return 0


class Report:
    name = "report"
    help = "write a local run's report.md and report.html again (from its report.json)"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("state_dir", metavar="STATE_DIR", help="the run's state directory")
        p.add_argument("--open", action="store_true", help="print only the HTML report's path (for scripts)")
        p.add_argument(
            "--format",
            choices=("csv", "parquet", "json"),
            default=None,
            help="instead: write the evidence over time (one row per look, variant, metric and route) as a table,"
            " STATE_DIR/evidence.FORMAT (needs pandas; parquet also pyarrow: pip install 'bakeoff[export]')",
        )
        p.add_argument("--output", "-o", default=None, metavar="FILE", help="with --format: write here instead")

    def run(self, args: argparse.Namespace) -> int:
        from bakeoff.controller.report import ReportError, rerender

        d = _state_dir(args.state_dir)
        if args.output is not None and args.format is None:
            raise CommandError("--output needs --format (csv, parquet or json)", EXIT_CONFIG)
        if args.format is not None:
            from bakeoff.controller.report.export import export

            try:
                path, rows = export(d, args.format, Path(args.output) if args.output else None)
            except ReportError as e:
                raise CommandError(str(e)) from None
            except OSError as e:
                raise CommandError(f"{args.output or d}: cannot write ({e.strerror or e})") from None
            print(f"{args.format}: {path} ({rows} rows)")
            return 0
        try:
            paths = rerender(d)
        except ReportError as e:
            raise CommandError(str(e)) from None
        if args.open:
            print(paths["html"])
        else:
            for kind, path in paths.items():
                print(f"{kind}: {path}")
        return 0


class List:
    name = "list"
    help = "list local runs (state directories) and their decisions"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "root",
            nargs="?",
            default=str(DEFAULT_ROOT),
            help="directory holding state directories (default .bakeoff-state)",
        )
        p.add_argument("--json", action="store_true", help="one JSON document: a list of runs")

    def run(self, args: argparse.Namespace) -> int:
        root = Path(args.root)
        if not root.is_dir():
            raise CommandError(
                f"{root}: no such directory (bakeoff run keeps its state under ./.bakeoff-state)", EXIT_CONFIG
            )
        runs = []
        for d in sorted(p for p in root.iterdir() if p.is_dir() and (p / "status.json").exists()):
            try:
                st = json.loads((d / "status.json").read_text())
            except (OSError, ValueError):
                continue
            runs.append(
                {
                    "state_dir": str(d),
                    "bakeoff": st.get("bakeoff"),
                    "phase": st.get("phase"),
                    "running": bool(st.get("running")),
                    "decision": st.get("decision"),
                    "updated": st.get("at"),
                }
            )
        if args.json:
            print(json.dumps(runs, indent=1))
            return 0
        if not runs:
            print(f"no runs under {root}")
            return 0
        for r in runs:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["updated"] or 0))
            state = "running" if r["running"] else "ended"
            print(
                f"{r['state_dir']:<32} {r['bakeoff'] or '?':<16} {r['phase'] or '?':<16} {state:<8} {when}  {_decision_text(r)}"
            )
        return 0
