"""The ``bakeoff`` command: one subcommand per part.

Each subcommand is an object with ``name``, ``help``, ``add_arguments(parser)``
and ``run(args) -> exit code``; this file only registers them.  Failures are
reported by every command as ``bakeoff: error: ...`` on stderr with the exit
codes of :mod:`bakeoff.cli.errors`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn, Protocol

from bakeoff.cli.errors import EXIT_CONFIG, CommandError, error
from bakeoff.common.version import VERSION
from bakeoff.router import hot_path


class Command(Protocol):
    name: str
    help: str

    def add_arguments(self, p: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


class Parser(argparse.ArgumentParser):
    """argparse with the command's one error format (usage first, then ``bakeoff: error: ...``)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        where = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        self.exit(EXIT_CONFIG, f"bakeoff: error: {where}{message}\n")


def commands() -> list[Command]:
    from bakeoff.cli.commands import Controller, Judge, Revert, Router, Status, Submit
    from bakeoff.cli.dashboard import Dashboard
    from bakeoff.cli.demo import Demo
    from bakeoff.cli.run import Run
    from bakeoff.cli.runs import Abort, Approve, List, Report

    return [
        Run(),
        Demo(),
        Status(),
        Approve(),
        Abort(),
        Report(),
        List(),
        Router(),
        Judge(),
        Controller(),
        Submit(),
        Revert(),
        Dashboard(),
    ]


GLOBAL_WITH_VALUE = ("--log-level",)

EPILOG = """exit codes: 0 promoted (or success), 1 failed, 2 bad command line or configuration,
3 stopped without a winner, 4 stopped: most requests to every variant failed,
5 ended before a decision, 130/143 interrupted (docs/run.md)"""


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="bakeoff",
        description="Run several implementations of a service on live traffic; promote the one that wins.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"bakeoff {VERSION}; router hot path: {hot_path()}")
    p.add_argument("--log-level", default=None, help="debug, info (default), warning, error")
    p.add_argument("--log-json", action="store_true", default=None, help="JSON log lines even on a terminal")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for c in commands():
        cp = sub.add_parser(
            c.name, help=c.help, description=getattr(c, "description", None) or c.help, add_help=c.name != "judge"
        )
        c.add_arguments(cp)
        cp.set_defaults(handler=c)
    return p


def command_index(argv: list[str]) -> int | None:
    """Where the subcommand's name is in argv: the first word that is not a global option or its value."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in GLOBAL_WITH_VALUE:
            i += 2
        elif a.startswith("-"):
            i += 1
        else:
            return i
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    i = command_index(argv)
    if i is not None and argv[i] == "judge":
        # The judge parses its own arguments (argparse's REMAINDER would swallow
        # options such as --help that come first); only the judge's own position
        # counts, so `bakeoff submit --bakeoff judge` is not the judge.
        args = parser.parse_args(argv[: i + 1])
        args.judge_args = argv[i + 1 :]
    else:
        args = parser.parse_args(argv)
    handler: Any = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    from bakeoff.common.logs import configure_logging

    configure_logging(args.log_level, args.log_json)
    try:
        return int(handler.run(args))
    except CommandError as e:
        return error(str(e), e.code)


if __name__ == "__main__":
    raise SystemExit(main())
