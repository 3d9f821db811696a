"""Subcommands whose code lives with another part: the router, the judge, the
Kubernetes controller and the cluster commands (bakeoff.cli.cluster).

Each class only connects the part's ``add_arguments``/``run`` to the command
line.  ``bakeoff status`` serves both kinds of bake-off: given a state
directory of a local run it shows that run, otherwise the cluster's.
"""

from __future__ import annotations

import argparse
from pathlib import Path


class Router:
    name = "router"
    help = "run the traffic-splitting router"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        from bakeoff.router.main import add_arguments

        add_arguments(p)

    def run(self, args: argparse.Namespace) -> int:
        from bakeoff.router.main import run

        return run(args)


class Judge:
    name = "judge"
    help = "judge variants from router snapshots or Prometheus (bakeoff judge --help for its options)"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        # the judge parses its own arguments (bakeoff.cli.main hands them over)
        p.add_argument("judge_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def run(self, args: argparse.Namespace) -> int:
        from bakeoff.judge.cli import main

        return main(list(args.judge_args))


class Controller:
    name = "controller"
    help = "the Kubernetes controller (Bakeoff and Variant resources)"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        from bakeoff.controller.kube.main import add_arguments

        add_arguments(p)

    def run(self, args: argparse.Namespace) -> int:
        from bakeoff.controller.kube.main import run

        return run(args)


class Submit:
    name = "submit"
    help = "enter a build into a Bakeoff in a cluster (creates a Variant)"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        from bakeoff.cli.cluster import add_submit_arguments

        add_submit_arguments(p)

    def run(self, args: argparse.Namespace) -> int:
        from bakeoff.cli.cluster import submit

        return submit(args)


class Revert:
    name = "revert"
    help = "put the mainline's pod template from before a promotion back (cluster)"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        from bakeoff.cli.cluster import add_revert_arguments

        add_revert_arguments(p)

    def run(self, args: argparse.Namespace) -> int:
        from bakeoff.cli.cluster import revert

        return revert(args)


def is_state_dir(arg: str | None) -> bool:
    """A local run's state directory (what ``bakeoff run --state-dir`` writes), not a cluster Bakeoff's name."""
    if not arg:
        return False
    p = Path(arg)
    return p.is_dir() and ((p / "status.json").exists() or (p / "journal.jsonl").exists())


def looks_like_path(arg: str | None) -> bool:
    """A path, not a Bakeoff's name (names have no "/" and do not start with "."): something on disk,
    or written as a path; a missing one is then reported as missing, not looked up in a cluster."""
    if not arg:
        return False
    return "/" in arg or arg.startswith(("~", ".")) or Path(arg).exists()


class Status:
    name = "status"
    help = "a local run's state (bakeoff status STATE_DIR) or the bake-offs in a cluster (bakeoff status [B] [-n NS])"
    description = (
        "With a state directory of `bakeoff run` (a directory holding status.json): that run's phase, "
        "decision and variants.  Otherwise the bake-offs in a cluster: all of them, or the Bakeoff B with "
        "its variants and verdicts (--kubeconfig, --context, -n select the cluster)."
    )

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        from bakeoff.cli.cluster import add_status_arguments

        add_status_arguments(p)  # its positional is the Bakeoff's name, or a local state directory

    def run(self, args: argparse.Namespace) -> int:
        kube_flags = any(getattr(args, k, None) for k in ("kubeconfig", "context", "namespace"))
        if not kube_flags and (is_state_dir(args.bakeoff) or looks_like_path(args.bakeoff)):
            from bakeoff.cli.runs import show_status

            return show_status(Path(args.bakeoff), as_json=bool(args.json))
        from bakeoff.cli.cluster import status

        return status(args)
