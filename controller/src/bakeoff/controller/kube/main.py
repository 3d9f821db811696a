"""``bakeoff controller``: the Kubernetes controller as a process (the chart's controller Deployment)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys

import structlog

log = structlog.get_logger("bakeoff.controller.kube")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from bakeoff.common.kube import add_arguments as kube_args

    kube_args(p, namespace_help="watch only this namespace (default: all namespaces)")
    p.add_argument(
        "--metrics",
        default="0.0.0.0:9090",
        metavar="HOST:PORT",
        help="serve /metrics and /healthz here (default 0.0.0.0:9090; port 0 picks one)",
    )
    p.add_argument(
        "--lease-name", default="bakeoff-controller", help="the leader election Lease (default bakeoff-controller)"
    )
    p.add_argument(
        "--lease-namespace",
        default=None,
        help="namespace of the Lease (default: --namespace, else the pod's, else default)",
    )
    p.add_argument("--identity", default=None, help="this replica's name in the Lease (default: hostname + random)")
    p.add_argument("--lease-duration", type=float, default=15.0, help="seconds before a silent leader is replaced")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between reconcile passes (default 0.5)")


def run(args: argparse.Namespace) -> int:
    import uvloop

    from bakeoff.common.kube import SA_NAMESPACE, KubeConfigError, connect

    if not 0.05 <= args.interval <= 60:
        print("bakeoff controller: --interval must be from 0.05 to 60 seconds", file=sys.stderr)
        return 2
    if not 2 <= args.lease_duration <= 600:
        print("bakeoff controller: --lease-duration must be from 2 to 600 seconds", file=sys.stderr)
        return 2
    try:
        host, port = _address(args.metrics)
    except ValueError:
        print(f"bakeoff controller: --metrics must be HOST:PORT, got {args.metrics!r}", file=sys.stderr)
        return 2
    try:
        # --namespace limits what is watched; connect() would default it from the kubeconfig, so keep it apart.
        cluster = connect(args.kubeconfig, args.context, None)
    except KubeConfigError as e:
        print(f"bakeoff controller: {e}", file=sys.stderr)
        return 2
    lease_ns = args.lease_namespace or args.namespace
    if not lease_ns:
        lease_ns = SA_NAMESPACE.read_text().strip() if SA_NAMESPACE.exists() else cluster.namespace
    identity = args.identity or f"{socket.gethostname()}-{os.getpid()}"
    return uvloop.run(_serve(cluster, args, host, port, lease_ns, identity))


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(text)
    return host.strip("[]"), int(port)


async def _serve(cluster, args, host: str, port: int, lease_ns: str, identity: str) -> int:
    from bakeoff.controller.kube.metrics import ControllerMetrics, serve
    from bakeoff.controller.kube.operator import KubeController, Lease, Settings

    metrics = ControllerMetrics()
    lease = Lease(args.lease_name, lease_ns, args.lease_duration, renew_deadline=args.lease_duration * 2 / 3)
    ctl = KubeController(
        cluster.api,
        Settings(namespace=args.namespace, identity=identity, interval=args.interval, lease=lease),
        metrics=metrics,
    )
    try:
        runner, bound_port = await serve(metrics, host, port, ctl.health)
    except OSError as e:
        print(f"bakeoff controller: cannot listen on {args.metrics}: {e}", file=sys.stderr)
        return 1
    log.info(
        "metrics listening",
        address=f"{host}:{bound_port}",
        source=cluster.source,
        lease=f"{lease_ns}/{args.lease_name}",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await ctl.run(stop)
    finally:
        await runner.cleanup()
        cluster.close()
