"""The ``bakeoff`` command: one subcommand per part.

Each subcommand's code lives with its part; this file only dispatches, and
imports a part only when its subcommand runs (the router's start-up stays
free of numpy and scipy).
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bakeoff",
        description="Run several implementations of a service on live traffic; promote the one that wins.",
    )
    p.add_argument("--log-level", default=None, help="debug, info (default), warning, error")
    p.add_argument("--log-json", action="store_true", default=None, help="JSON log lines even on a terminal")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    from bakeoff.router.main import add_arguments as router_args

    router_args(sub.add_parser("router", help="run the traffic-splitting router"))

    j = sub.add_parser("judge", help="judge variants from router snapshots or Prometheus", add_help=False)
    j.add_argument("judge_args", nargs=argparse.REMAINDER)

    from bakeoff.cli.run import add_arguments as run_args

    run_args(
        sub.add_parser("run", help="run a bake-off from Bakeoff/Variant resources: judge, ramp, roll back, promote")
    )

    from bakeoff.cli.demo import add_arguments as demo_args

    demo_args(sub.add_parser("demo", help="a live demo on this machine: router, three variants, load"))

    from bakeoff.controller.kube.main import add_arguments as controller_args

    controller_args(sub.add_parser("controller", help="the Kubernetes controller (Bakeoff and Variant resources)"))

    from bakeoff.cli.cluster import add_revert_arguments, add_status_arguments, add_submit_arguments

    add_submit_arguments(sub.add_parser("submit", help="enter a build into a Bakeoff in a cluster (creates a Variant)"))
    add_status_arguments(sub.add_parser("status", help="bake-offs in a cluster, their variants and verdicts"))
    add_revert_arguments(sub.add_parser("revert", help="put the mainline's pod template from before a promotion back"))
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if "judge" in argv:
        # The judge parses its own arguments (argparse's REMAINDER would
        # swallow options such as --help that come first).
        i = argv.index("judge")
        args = parser.parse_args(argv[:i] + ["judge"])
        args.judge_args = argv[i + 1 :]
    else:
        args = parser.parse_args(argv)
    from bakeoff.common.logs import configure_logging

    configure_logging(args.log_level, args.log_json)
    if args.command == "router":
        from bakeoff.router.main import run

        return run(args)
    if args.command == "judge":
        from bakeoff.judge.cli import main as judge_main

        return judge_main(args.judge_args)
    if args.command == "run":
        from bakeoff.cli.run import run as run_main

        return run_main(args)
    if args.command == "demo":
        from bakeoff.cli.demo import run as demo_run

        return demo_run(args)
    if args.command == "controller":
        from bakeoff.controller.kube.main import run as controller_run

        return controller_run(args)
    if args.command in ("submit", "status", "revert"):
        from bakeoff.cli import cluster as cluster_cli

        return getattr(cluster_cli, args.command)(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
