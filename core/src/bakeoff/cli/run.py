"""``bakeoff run FILE``: a whole bake-off on this machine.

Reads the Bakeoff and Variant resources (docs/resources.md), starts the
router in-process and the variants as processes (or uses their URLs), drives
the load the Bakeoff describes (``spec.load``) or a locustfile, judges the
variants on live traffic, ramps, rolls back and promotes (docs/run.md).

Exit codes (bakeoff.cli.errors): 0 promoted, 3 stopped without a winner,
4 stopped because most requests to every variant failed, 2 bad command line
or resource file (nothing is started), 1 the run could not start, 5 ended
before a decision, 130/143 interrupted before a decision.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from bakeoff.cli.errors import EXIT_CONFIG, EXIT_FAILED, CommandError, decision_exit_code, error


class Run:
    name = "run"
    help = "run a bake-off from Bakeoff/Variant resources: judge, ramp, roll back, promote"
    description = (
        "Run the bake-off FILE describes on this machine until a decision (with --exit-on-decision) or Ctrl-C. "
        "Exit codes: 0 promoted, 3 stopped without a winner, 4 most requests failed on every variant, "
        "2 bad file or options, 1 could not start, 5 ended before a decision."
    )

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        add_arguments(p)

    def run(self, args: argparse.Namespace) -> int:
        return run(args)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="YAML with one Bakeoff and its Variant documents")
    p.add_argument(
        "--state-dir", default=None, help="journal, judge state and reports (default ./.bakeoff-state/<bakeoff name>)"
    )
    p.add_argument(
        "--exit-on-decision", action="store_true", help="stop everything and exit once a promotion or stop is decided"
    )
    p.add_argument(
        "--headless",
        action="store_true",
        help="one line per event on stdout instead of the live view (log lines go to STATE_DIR/bakeoff.log)",
    )
    p.add_argument(
        "--load",
        default=None,
        metavar="users=N[,think=S]",
        help="how many users drive the Bakeoff's spec.load (or --locustfile), e.g. users=32,think=0.1; "
        "overrides spec.load.users and spec.load.think",
    )
    p.add_argument("--locustfile", default=None, metavar="FILE", help="drive load with this locust file (headless)")
    p.add_argument("--no-load", action="store_true", help="drive no load even if the file has spec.load")
    p.add_argument(
        "--metrics",
        default=None,
        metavar="HOST:PORT",
        help="serve the decisions as Prometheus metrics on http://HOST:PORT/metrics (share, phase, the judge's "
        "estimates and bounds, decisions by action; docs/run.md)",
    )
    add_ui_arguments(p)
    p.add_argument(
        "--drain",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds a retired variant keeps running for requests in flight (default 2)",
    )


def add_ui_arguments(p: argparse.ArgumentParser) -> None:
    """--ui/--no-ui and --ui-port (bakeoff run and bakeoff demo); check them with ui_of."""
    p.add_argument(
        "--ui",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve the live web dashboard on 127.0.0.1 (its address is printed at start); "
        "on by default without --headless",
    )
    p.add_argument(
        "--ui-port", type=int, default=0, metavar="PORT", help="the dashboard's port (default 0: a free one)"
    )


def ui_of(args: argparse.Namespace) -> tuple[bool, int]:
    """(serve the dashboard?, its port) from add_ui_arguments' options; ValueError for a bad port."""
    if not 0 <= args.ui_port <= 65535:
        raise ValueError(f"--ui-port must be 0..65535, got {args.ui_port}")
    return (not args.headless) if args.ui is None else bool(args.ui), args.ui_port


def parse_load(value: str | None) -> tuple[int, float | None]:
    """``users=N[,think=S]`` -> (N, S or None); (0, None) for no option."""
    if value is None:
        return 0, None
    m = re.fullmatch(r"\s*(?:users\s*=\s*)?(\d+)\s*(?:,\s*think\s*=\s*([0-9.]+)\s*)?", value)
    if not m or int(m.group(1)) < 1:
        raise ValueError(f"--load must be users=N[,think=S] with N >= 1, got {value!r}")
    return int(m.group(1)), float(m.group(2)) if m.group(2) else None


def load_plan(resources: Any, args: argparse.Namespace) -> Any:
    """The resources with the load to drive (spec.load as the options change it; None with --no-load)."""
    from bakeoff.controller.resources import LoadSpec
    from bakeoff.load import locust_available

    users, think = parse_load(args.load)
    b = resources.bakeoff
    spec = b.load
    if args.locustfile:
        if not Path(args.locustfile).is_file():
            raise ValueError(f"--locustfile {args.locustfile}: no such file")
        spec = replace(spec or LoadSpec(), requests=(), shoppers=False, locustfile=str(Path(args.locustfile).resolve()))
    if args.no_load:
        spec = None
    elif spec is None and args.load is not None:
        raise ValueError(
            f"--load: {resources.origin} has no spec.load; describe the requests a user sends there "
            "(docs/resources.md, spec.load) or pass --locustfile"
        )
    if spec is not None:
        spec = replace(spec, users=users or spec.users, think=spec.think if think is None else think)
        if spec.locustfile and not locust_available():
            raise ValueError("the load is a locustfile, but locust is not installed (pip install locust)")
    return replace(resources, bakeoff=replace(b, load=spec))


def run(args: argparse.Namespace) -> int:
    from bakeoff.controller.load import load_of
    from bakeoff.controller.resources import ResourceError, load_resources
    from bakeoff.controller.runner import local_webhooks

    try:
        resources = load_plan(load_resources(args.file), args)
        local_webhooks(resources, Path(args.file).resolve().parent)  # a URL or key that cannot be used: refused now
        if args.drain < 0:
            raise ValueError("--drain must be >= 0")
        metrics = _metrics_address(args.metrics)
        ui, ui_port = ui_of(args)
    except (ResourceError, ValueError) as e:
        raise CommandError(str(e), EXIT_CONFIG) from None
    state_dir = Path(args.state_dir) if args.state_dir else Path(".bakeoff-state") / resources.bakeoff.name
    base_dir = Path(args.file).resolve().parent
    spec = resources.bakeoff.load
    load = load_of(spec, base_dir=base_dir, log_dir=state_dir / "logs") if spec is not None else None
    import uvloop

    def early_stop(signum: int, frame: Any) -> None:  # before the event loop takes the signals over
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, early_stop)
    try:
        code, _ = uvloop.run(
            execute(
                resources,
                state_dir,
                base_dir=base_dir,
                headless=args.headless,
                exit_on_decision=args.exit_on_decision,
                drain=args.drain,
                load=load,
                metrics=metrics,
                ui=ui,
                ui_port=ui_port,
            )
        )
        return code
    except KeyboardInterrupt:
        return 130


def _metrics_address(value: str | None) -> tuple[str, int] | None:
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--metrics must be HOST:PORT (e.g. 127.0.0.1:9464), got {value!r}")
    return (host or "127.0.0.1").strip("[]"), int(port)


def _log_to_file(path: Path) -> None:
    """Log lines (JSON) go to a file: stdout stays the view's, stderr stays for errors."""
    import structlog

    path.parent.mkdir(parents=True, exist_ok=True)
    logfile = open(path, "a", buffering=1)
    procs = list(structlog.get_config()["processors"])
    procs[-1] = structlog.processors.JSONRenderer()
    structlog.configure(processors=procs, logger_factory=structlog.PrintLoggerFactory(file=logfile))


async def _start_dashboard(runner: Any, port: int) -> Any:
    """The live dashboard of this run, its address printed; a port in use is a warning (the run goes on)."""
    from bakeoff.controller.dashboard import Dashboard, DashboardError
    from bakeoff.controller.dashboard.local import RunSource

    dashboard = Dashboard(RunSource(runner), port=port)
    try:
        url = await dashboard.start()
    except DashboardError as e:
        print(f"bakeoff: warning: {e}; the run goes on without it", file=sys.stderr, flush=True)
        return None
    print(f"dashboard: {url}b/{runner.b.name}", flush=True)
    return dashboard


async def execute(
    resources: Any,
    state_dir: Path,
    *,
    base_dir: Path,
    headless: bool,
    exit_on_decision: bool,
    drain: float = 2.0,
    load: Any = None,
    metrics: tuple[str, int] | None = None,
    ui: bool = False,
    ui_port: int = 0,
) -> tuple[int, Any]:
    """Run one bake-off until a decision (or a signal); returns (exit code, the Runner)."""
    from bakeoff.controller.journal import Journal
    from bakeoff.controller.platforms import make_platform
    from bakeoff.controller.runner import MainlineFailed, RunError, Runner
    from bakeoff.controller.view import make_view

    b = resources.bakeoff
    journal = Journal(state_dir)
    view = make_view(headless=headless, bakeoff=b, state_dir=state_dir)
    _log_to_file(state_dir / "bakeoff.log")
    platform = make_platform(
        "local",
        listen=b.listen,
        admin=b.admin,
        sticky_header=b.routing.sticky_header,
        sticky_cookie=b.routing.sticky_cookie,
        state_dir=state_dir,
        base_dir=base_dir,
        drain=drain,
        routes=b.routing.routes,
        bakeoff=b.name,
    )
    decision_metrics = metrics_runner = None
    if metrics is not None:
        from prometheus_client import CollectorRegistry

        from bakeoff.controller.decision_metrics import DecisionMetrics, serve

        registry = CollectorRegistry()
        decision_metrics = DecisionMetrics(registry)
        try:
            metrics_runner, port = await serve(registry, *metrics)
        except OSError as e:
            return error(f"--metrics {metrics[0]}:{metrics[1]}: cannot listen ({e.strerror})", EXIT_FAILED), None
        import structlog

        structlog.get_logger("bakeoff").info("decision metrics", url=f"http://{metrics[0]}:{port}/metrics")
    runner = Runner(
        resources,
        platform,
        journal,
        base_dir=base_dir,
        view=view,
        exit_on_decision=exit_on_decision,
        load=load,
        decision_metrics=decision_metrics,
    )
    stop = asyncio.Event()
    got: list[int] = []
    loop = asyncio.get_running_loop()

    def on_signal(sig: int) -> None:
        got.append(sig)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    dashboard = await _start_dashboard(runner, ui_port) if ui else None
    view.start()
    try:
        await runner.run(stop)
    except MainlineFailed as e:
        view.stop()
        return error(str(e), EXIT_FAILED), runner
    except (RunError, ValueError) as e:  # ValueError: the router refused its configuration
        view.stop()
        return error(str(e), EXIT_CONFIG), runner
    except OSError as e:
        view.stop()
        return error(str(e), EXIT_FAILED), runner
    finally:
        view.stop()
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        if dashboard is not None:
            await dashboard.stop()
    view.summary(runner)
    sys.stdout.flush()
    if runner.state.decision is None and got:
        return 128 + got[0], runner
    return decision_exit_code(runner.state.decision), runner
