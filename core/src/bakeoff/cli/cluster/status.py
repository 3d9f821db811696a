"""``bakeoff status``: the Bakeoffs of a namespace, or one Bakeoff with its Variants (from resource status)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from bakeoff.cli.cluster.common import UsageError, custom_api, get_bakeoff, now_rfc3339, run_command
from bakeoff.cli.cluster.render import Report, bakeoff_report, list_report, render_plain, render_rich
from bakeoff.common import kube
from bakeoff.contracts.resources import GROUP, VERSION


def add_status_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bakeoff", nargs="?", metavar="B", help="one Bakeoff with its variants (default: list them all)")
    p.add_argument(
        "--json", action="store_true", help='JSON: {"bakeoff": ..., "variants": [...]} (or {"bakeoffs": [...]})'
    )
    p.add_argument("--watch", "-w", action="store_true", help="refresh until Ctrl-C")
    p.add_argument("--interval", type=float, default=2.0, metavar="S", help="seconds between refreshes (default 2)")
    kube.add_arguments(p)


def list_variants(cluster: kube.Cluster, bakeoff: str | None = None) -> list[dict[str, Any]]:
    items = custom_api(cluster).list_namespaced_custom_object(GROUP, VERSION, cluster.namespace, "variants")["items"]
    if bakeoff is not None:
        items = [v for v in items if (v.get("spec") or {}).get("bakeoff") == bakeoff]
    return sorted(items, key=lambda v: (v["metadata"].get("creationTimestamp") or "", v["metadata"]["name"]))


def list_bakeoffs(cluster: kube.Cluster) -> list[dict[str, Any]]:
    items = custom_api(cluster).list_namespaced_custom_object(GROUP, VERSION, cluster.namespace, "bakeoffs")["items"]
    return sorted(items, key=lambda b: b["metadata"]["name"])


def collect(cluster: kube.Cluster, bakeoff: str | None) -> tuple[dict[str, Any], Report]:
    """The status document (for --json) and the report (for people) as they are now."""
    if bakeoff is None:
        bs = list_bakeoffs(cluster)
        vs = list_variants(cluster)
        return {"bakeoffs": bs}, list_report(cluster.namespace, bs, vs)
    b = get_bakeoff(cluster, bakeoff)
    vs = list_variants(cluster, bakeoff)
    return {"bakeoff": b, "variants": vs}, bakeoff_report(cluster.namespace, b, vs)


def status(args: argparse.Namespace) -> int:
    def go() -> int:
        if args.interval <= 0:
            raise UsageError("--interval must be above 0")
        cluster = kube.connect_from_args(args)
        console = None
        if not args.json and sys.stdout.isatty():
            from rich.console import Console

            console = Console()
        try:
            while True:
                doc, report = collect(cluster, args.bakeoff)
                if args.json:
                    print(json.dumps(doc, sort_keys=True) if args.watch else json.dumps(doc, indent=2, sort_keys=True))
                elif console is not None:
                    if args.watch:
                        console.clear()
                        console.print(f"every {args.interval:g}s — {now_rfc3339()} — Ctrl-C to stop", style="dim")
                    render_rich(report, console)
                else:
                    if args.watch:
                        print(f"--- {now_rfc3339()}")
                    sys.stdout.write(render_plain(report))
                sys.stdout.flush()
                if not args.watch:
                    return 0
                time.sleep(args.interval)
        except KeyboardInterrupt:
            return 0
        finally:
            cluster.close()

    return run_command(go)
