"""``bakeoff dashboard``: the live web dashboard of a cluster's bake-offs, on 127.0.0.1.

Reads Bakeoffs, Variants and Events with the user's own kubeconfig (as ``kubectl`` would);
an approval from the page is written as that user, so the cluster's RBAC applies.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from bakeoff.cli.errors import EXIT_CONFIG, EXIT_FAILED, CommandError
from bakeoff.common import kube

DEFAULT_PORT = 8470


class Dashboard:
    name = "dashboard"
    help = "serve the live web dashboard of a cluster's bake-offs on 127.0.0.1 (with your kubeconfig)"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT})")
        kube.add_arguments(p)

    def run(self, args: argparse.Namespace) -> int:
        from bakeoff.controller.dashboard import Dashboard as Server
        from bakeoff.controller.dashboard import DashboardError, SourceError
        from bakeoff.controller.dashboard.cluster import ClusterSource

        if not 0 <= args.port <= 65535:
            raise CommandError(f"--port must be 0..65535, got {args.port}", EXIT_CONFIG)
        try:
            cluster = kube.connect_from_args(args)
        except kube.KubeConfigError as e:
            raise CommandError(str(e), EXIT_CONFIG) from None
        source = ClusterSource(cluster)
        try:  # fail at once, with the API server's words, when the kubeconfig cannot read bake-offs
            source.rows()
        except SourceError as e:
            raise CommandError(str(e), EXIT_FAILED) from None

        async def serve() -> None:
            server = Server(source, port=args.port)
            try:
                url = await server.start()
            except DashboardError as e:
                raise CommandError(str(e).replace("--ui-port", "--port"), EXIT_FAILED) from None
            print(f"dashboard: {url} (namespace {cluster.namespace}); Ctrl-C to stop", flush=True)
            try:
                await asyncio.Event().wait()
            finally:
                await server.stop()

        try:
            asyncio.run(serve())
        except KeyboardInterrupt:
            pass
        finally:
            cluster.close()
        sys.stdout.flush()
        return 0
