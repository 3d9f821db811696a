"""``bakeoff run FILE``: a whole bake-off on this machine.

Reads the Bakeoff and Variant resources (docs/resources.md), starts the
router in-process and the variants as processes (or uses their URLs), judges
them on live traffic, ramps, rolls back and promotes (docs/run.md).  Exit
status: 0 after a decision or a clean stop, 2 for a bad command line or
resource file (nothing is started), 1 when the run could not start.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="YAML with one Bakeoff and its Variant documents")
    p.add_argument(
        "--state-dir", default=None, help="journal, judge state and reports (default ./.bakeoff-state/<bakeoff name>)"
    )
    p.add_argument(
        "--exit-on-decision", action="store_true", help="stop everything and exit once a promotion or stop is decided"
    )
    p.add_argument("--headless", action="store_true", help="one line per event instead of the live view")
    p.add_argument(
        "--load",
        default=None,
        metavar="users=N[,think=S]",
        help="drive load with bakeoff.cli.loadgen (simulated shoppers), e.g. users=32 or users=32,think=0.1 "
        "(mean seconds between a shopper's pages; default 0.1)",
    )
    p.add_argument(
        "--drain",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds a retired variant keeps running for requests in flight (default 2)",
    )


def parse_load(value: str | None) -> tuple[int, float]:
    """``users=N[,think=S]`` -> (N, S); (0, 0.1) for no load."""
    if value is None:
        return 0, 0.1
    m = re.fullmatch(r"\s*(?:users\s*=\s*)?(\d+)\s*(?:,\s*think\s*=\s*([0-9.]+)\s*)?", value)
    if not m or int(m.group(1)) < 1:
        raise ValueError(f"--load must be users=N[,think=S] with N >= 1, got {value!r}")
    return int(m.group(1)), float(m.group(2)) if m.group(2) else 0.1


def run(args: argparse.Namespace) -> int:
    from bakeoff.controller.resources import ResourceError, load_resources

    try:
        resources = load_resources(args.file)
        users, think = parse_load(args.load)
        if args.drain < 0:
            raise ValueError("--drain must be >= 0")
    except (ResourceError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    state_dir = Path(args.state_dir) if args.state_dir else Path(".bakeoff-state") / resources.bakeoff.name
    import uvloop

    def early_stop(signum, frame):  # before the event loop takes the signals over
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, early_stop)
    try:
        code, _ = uvloop.run(
            execute(
                resources,
                state_dir,
                base_dir=Path(args.file).resolve().parent,
                headless=args.headless,
                exit_on_decision=args.exit_on_decision,
                drain=args.drain,
                load_users=users,
                load_think=think,
            )
        )
        return code
    except KeyboardInterrupt:
        return 130


async def execute(
    resources,
    state_dir: Path,
    *,
    base_dir: Path,
    headless: bool,
    exit_on_decision: bool,
    drain: float = 2.0,
    load_users: int = 0,
    load_think: float = 0.1,
    load=None,
):
    """Run one bake-off until a decision (or a signal); returns (exit status, the Runner)."""
    import structlog

    from bakeoff.controller.journal import Journal
    from bakeoff.controller.platforms import make_platform
    from bakeoff.controller.runner import RunError, Runner
    from bakeoff.controller.view import make_view

    b = resources.bakeoff
    journal = Journal(state_dir)
    view = make_view(headless=headless, bakeoff=b, state_dir=state_dir)
    if view.live:
        # the live view owns the terminal: log lines go to a file in the state directory
        logfile = open(state_dir / "bakeoff.log", "a", buffering=1)
        procs = list(structlog.get_config()["processors"])
        procs[-1] = structlog.processors.JSONRenderer()
        structlog.configure(processors=procs, logger_factory=structlog.PrintLoggerFactory(file=logfile))
    platform = make_platform(
        "local",
        listen=b.listen,
        admin=b.admin,
        sticky_header=b.routing.sticky_header,
        sticky_cookie=b.routing.sticky_cookie,
        state_dir=state_dir,
        base_dir=base_dir,
        drain=drain,
    )
    runner = Runner(
        resources,
        platform,
        journal,
        base_dir=base_dir,
        view=view,
        exit_on_decision=exit_on_decision,
        load_users=load_users,
        load_think=load_think,
        load=load,
    )
    stop = asyncio.Event()
    got: list[int] = []
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda s=sig: (got.append(s), stop.set()))
    view.start()
    try:
        code = await runner.run(stop)
    except RunError as e:
        view.stop()
        print(f"error: {e}", file=sys.stderr)
        return 2, runner
    except OSError as e:
        view.stop()
        print(f"error: {e}", file=sys.stderr)
        return 1, runner
    finally:
        view.stop()
    view.summary(runner)
    if got:
        return 128 + got[0], runner
    return code, runner
