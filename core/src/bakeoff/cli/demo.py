"""``bakeoff demo``: the whole loop on this machine, on a real example service.

It runs examples/shop/bakeoff.yaml -- the shop's mainline against four
candidate builds -- through the same code as ``bakeoff run``: the router
splits simulated shoppers (locust in a child process when it is installed,
the built-in generator otherwise) across the five processes, the judge
watches, the slow and the buggy candidates are rolled back, and the one that
converts better is promoted.  At the end it prints how long each decision
took and how many requests it needed, and one JSON line:

    {"decisions": [{"variant": ..., "action": ..., "after_s": ..., "requests": ...}, ...], "winner": ...}
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from bakeoff.cli.errors import EXIT_CONFIG, CommandError
from bakeoff.common.paths import examples_dir

SHOP = examples_dir() / "shop" / "bakeoff.yaml"
DECISION_EVENTS = ("rolled_back", "failed", "promoted", "stopped")


class Demo:
    name = "demo"
    help = "a live demo on this machine: the example shop's mainline against four candidates, with load"
    description = (
        "Runs examples/shop/bakeoff.yaml with simulated shoppers until the decision (about a minute): "
        "the slow and the buggy candidates are rolled back, the one that converts better is promoted. "
        "Exit code 0 when a candidate was promoted (see bakeoff --help for the others)."
    )

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        add_arguments(p)

    def run(self, args: argparse.Namespace) -> int:
        return run(args)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--headless", action="store_true", help="one line per event instead of the live view")
    p.add_argument("--users", type=int, default=32, help="simulated shoppers (default 32)")
    p.add_argument("--think", type=float, default=0.1, help="mean seconds between a shopper's pages (default 0.1)")
    p.add_argument("--state-dir", default=None, help="journal and reports (default: a new temporary directory)")
    p.add_argument("--no-locust", action="store_true", help="use the built-in load generator even if locust is there")
    from bakeoff.cli.run import add_ui_arguments

    add_ui_arguments(p)


def run(args: argparse.Namespace) -> int:
    from bakeoff.cli.run import execute, ui_of
    from bakeoff.controller.resources import load_resources

    if args.users < 1 or args.think < 0:
        raise CommandError("demo: --users must be >= 1 and --think >= 0", EXIT_CONFIG)
    try:
        ui, ui_port = ui_of(args)
    except ValueError as e:
        raise CommandError(f"demo: {e}", EXIT_CONFIG) from None
    resources = load_resources(SHOP)
    state_dir = Path(args.state_dir) if args.state_dir else Path(tempfile.mkdtemp(prefix="bakeoff-demo-"))
    from bakeoff.load import locust_available
    from bakeoff.load.locustload import LocustLoad
    from bakeoff.load.shoppers import shoppers

    if args.no_locust or not locust_available():
        load: Any = shoppers(args.users, args.think)
    else:
        load = LocustLoad(
            SHOP.parent / "locustfile.py", args.users, args.think, log_path=state_dir / "logs" / "locust.log"
        )

    import uvloop

    def early_stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, early_stop)
    try:
        code, runner = uvloop.run(
            execute(
                resources,
                state_dir,
                base_dir=SHOP.parent,
                headless=args.headless,
                exit_on_decision=True,
                load=load,
                ui=ui,
                ui_port=ui_port,
            )
        )
    except KeyboardInterrupt:
        return 130
    summary = decisions_of(runner.events, runner.history)
    for d in summary["decisions"]:
        print(f"{d['action']:>12} {d['variant']:<16} after {d['after_s']:6.1f} s, {d['requests']} requests to it")
    print(json.dumps(summary), flush=True)
    sys.stdout.flush()
    return code


def decisions_of(events: list[dict[str, Any]], history: list[dict[str, Any]]) -> dict[str, Any]:
    """The demo's closing line from the journal's events and the judge's looks.

    ``after_s`` counts from the first admission (when candidates first got
    traffic); ``requests`` is how many requests the variant had served at
    the judge's last look before the decision.
    """
    admitted = [e["at"] for e in events if e.get("type") == "admitted"]
    start = min(admitted) if admitted else min((e["at"] for e in events), default=0.0)
    decisions = []
    winner = None
    for e in events:
        if e.get("type") not in DECISION_EVENTS:
            continue
        variant = e.get("variant")
        looks = [h for h in history if h["at"] <= e["at"] + 1e-6 and variant in h.get("variants", {})]
        requests = looks[-1]["variants"][variant]["requests"] if looks else None
        action = {"rolled_back": "rollback", "failed": "rollback", "promoted": "promote", "stopped": "stop"}[e["type"]]
        decisions.append(
            {"variant": variant, "action": action, "after_s": round(e["at"] - start, 1), "requests": requests}
        )
        if e["type"] == "promoted":
            winner = variant
    return {"decisions": decisions, "winner": winner}
