"""Running a router process from the command line (``bakeoff router``)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

import structlog
import uvloop

from bakeoff.router.config import ConfigError, RouterConfig

log = structlog.get_logger("bakeoff.router")


async def _serve_single(config: RouterConfig, stop: asyncio.Event) -> int:
    from bakeoff.router.server import Router

    router = Router(config)
    await router.start()
    await stop.wait()
    await router.stop()
    return 0


async def _serve(config: RouterConfig) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if config.workers > 1:
        from bakeoff.router.workers import Supervisor

        return await Supervisor(config, None).run(stop)
    return await _serve_single(config, stop)


async def _serve_cluster(config: RouterConfig, cluster, bakeoff: str, sticky_from_file, mainline=None) -> int:
    """--kubernetes: the routes come from the Bakeoff's status.routing (router.cluster)."""
    import dataclasses

    from bakeoff.router.admin import LocalBackend, start_admin
    from bakeoff.router.cluster import DEFAULT_STICKINESS, ClusterBackend, ClusterSource, read_stickiness

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The Bakeoff's stickiness now if it can be read (else a default); ClusterSource follows it live.
    sticky, why = await loop.run_in_executor(None, read_stickiness, cluster.api, cluster.namespace, bakeoff)
    if why is not None:
        sticky = sticky_from_file or DEFAULT_STICKINESS
        log.warning("cannot read the Bakeoff's stickiness at start; using a default until it can be read",
                    bakeoff=bakeoff, namespace=cluster.namespace, error=why,
                    stickiness=f"{sticky[0]}: {sticky[1]}")  # fmt: skip
    elif sticky_from_file and sticky != sticky_from_file:
        log.warning("the config file's stickiness is ignored: the Bakeoff's spec.routing.stickiness applies",
                    bakeoff=bakeoff, file=f"{sticky_from_file[0]}: {sticky_from_file[1]}")  # fmt: skip
    config = dataclasses.replace(
        config,
        sticky_header=sticky[1] if sticky and sticky[0] == "header" else None,
        sticky_cookie=sticky[1] if sticky and sticky[0] == "cookie" else None,
    )
    sticky_on = sticky is not None
    if config.workers > 1:
        from bakeoff.router.workers import Supervisor, WorkerBackend

        holder: dict = {}
        sup = Supervisor(config, None, wrap_backend=lambda b: ClusterBackend(b, holder["source"]))
        workers = WorkerBackend(sup)

        async def apply_to_workers(specs, version, request_routes):
            await workers.put_routes(specs, version, request_routes)

        async def sticky_to_workers(st):
            await workers.set_stickiness(*(st or (None, None)))

        source = holder["source"] = ClusterSource(
            cluster.api, cluster.namespace, bakeoff, apply_to_workers, sticky, mainline, sticky_to_workers
        )
        log.info("router in cluster mode", bakeoff=bakeoff, namespace=cluster.namespace, source=cluster.source,
                 workers=config.workers, stickiness=f"{sticky[0]}: {sticky[1]}" if sticky else None)  # fmt: skip
        source.start()
        try:
            return await sup.run(stop)
        finally:
            await source.stop()
            cluster.close()
    from bakeoff.router.server import Router

    router = Router(config)

    async def apply_local(specs, version, request_routes):
        if request_routes is not None:
            router.set_request_routes(request_routes)
        router.set_routes(specs, version)

    async def sticky_local(st):
        router.set_stickiness(*(st or (None, None)))

    source = ClusterSource(cluster.api, cluster.namespace, bakeoff, apply_local, sticky, mainline, sticky_local)
    await router.start(admin=False)
    admin = await start_admin(ClusterBackend(LocalBackend(router), source), config.admin, config.token,
                              sticky=sticky_on, events_token=config.events_token)  # fmt: skip
    log.info("router in cluster mode", bakeoff=bakeoff, namespace=cluster.namespace, source=cluster.source,
             traffic=f"{config.listen[0]}:{router.port}", admin=f"{config.admin[0]}:{admin.port}",
             stickiness=f"{sticky[0]}: {sticky[1]}" if sticky else None)  # fmt: skip
    source.start()
    try:
        await stop.wait()
    finally:
        await source.stop()
        await router.stop()
        await admin.stop()
        cluster.close()
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    from bakeoff.common.kube import add_arguments as kube_arguments

    p.add_argument("--config", "-c", help="router YAML file (see docs/router.md)")
    p.add_argument("--listen", help="traffic address host:port (overrides the file)")
    p.add_argument("--admin", help="control-plane address host:port (overrides the file)")
    p.add_argument(
        "--events-token", help="bearer token POST /-/events requires (overrides eventsToken and $BAKEOFF_EVENTS_TOKEN)"
    )
    p.add_argument("--workers", type=int, help="processes sharing the traffic port (SO_REUSEPORT)")
    p.add_argument("--kubernetes", action="store_true",
                   help="take the routes from a Bakeoff's status.routing and its Services' EndpointSlices "
                        "(docs/kubernetes.md); needs --bakeoff")  # fmt: skip
    p.add_argument("--bakeoff", help="with --kubernetes: the Bakeoff whose traffic this router splits")
    p.add_argument("--mainline-service", metavar="NAME[:PORT]",
                   help="with --kubernetes: the Service that gets all traffic while the Bakeoff is absent or "
                        "deleted (else the last mainline seen in its status.routing)")  # fmt: skip
    kube_arguments(
        p, namespace_help="with --kubernetes: the Bakeoff's namespace (default: the context's, else default)"
    )


def _check_cluster_flags(args: argparse.Namespace) -> str | None:
    """A one-line error about the --kubernetes flags, or None."""
    import re

    if not getattr(args, "kubernetes", False):
        for flag in ("bakeoff", "kubeconfig", "context", "namespace", "mainline_service"):
            if getattr(args, flag, None):
                return f"--{flag.replace('_', '-')} needs --kubernetes"
        return None
    if not args.bakeoff:
        return "--bakeoff is required with --kubernetes (the Bakeoff whose status.routing to apply)"
    if len(args.bakeoff) > 253 or not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", args.bakeoff):
        return f"--bakeoff: {args.bakeoff!r} is not a valid resource name"
    if getattr(args, "mainline_service", None):
        from bakeoff.router.cluster import parse_mainline_service

        try:
            parse_mainline_service(args.mainline_service)
        except ValueError as e:
            return str(e)
    return None


def run(args: argparse.Namespace) -> int:
    problem = _check_cluster_flags(args)
    if problem:
        print(f"bakeoff router: {problem}", file=sys.stderr)
        return 2
    try:
        # from_dict, not RouterConfig(): $BAKEOFF_ROUTER_TOKEN applies without a file too
        config = RouterConfig.from_file(args.config) if args.config else RouterConfig.from_dict({}, "command line")
        overrides = {}
        if args.listen:
            overrides["listen"] = args.listen
        if args.admin:
            overrides["admin"] = args.admin
        if args.workers is not None:
            overrides["workers"] = args.workers
        if getattr(args, "events_token", None):
            overrides["events_token"] = args.events_token
        if overrides:
            config = _with_overrides(config, overrides, args.config or "command line")
    except ConfigError as e:
        print(f"bakeoff router: {e}", file=sys.stderr)
        return 2
    if getattr(args, "kubernetes", False):
        return _run_cluster(args, config)
    if not config.variants:
        print(f"bakeoff router: {args.config or 'command line'}: variants: at least one variant is needed",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        return uvloop.run(_serve(config))
    except OSError as e:
        print(f"bakeoff router: cannot listen: {e}", file=sys.stderr)
        return 1


def _run_cluster(args: argparse.Namespace, config: RouterConfig) -> int:
    from bakeoff.common.kube import KubeConfigError, connect_from_args

    if config.variants:
        print(f"bakeoff router: {args.config}: variants: not allowed with --kubernetes "
              "(the routes come from the Bakeoff's status.routing)", file=sys.stderr)  # fmt: skip
        return 2
    sticky_from_file = None
    if config.sticky_header:
        sticky_from_file = ("header", config.sticky_header)
    elif config.sticky_cookie:
        sticky_from_file = ("cookie", config.sticky_cookie)
    try:
        cluster = connect_from_args(args)
    except KubeConfigError as e:
        print(f"bakeoff router: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # a kubeconfig that is not YAML, a missing key, ...
        where = f"--kubeconfig {args.kubeconfig}" if args.kubeconfig else "kubeconfig"
        print(f"bakeoff router: {where}: {type(e).__name__}: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    try:
        mainline = None
        if getattr(args, "mainline_service", None):
            from bakeoff.router.cluster import parse_mainline_service

            mainline = parse_mainline_service(args.mainline_service)
        return uvloop.run(_serve_cluster(config, cluster, args.bakeoff, sticky_from_file, mainline))
    except OSError as e:
        print(f"bakeoff router: cannot listen: {e}", file=sys.stderr)
        return 1


def _with_overrides(config: RouterConfig, overrides: dict, origin: str) -> RouterConfig:
    import dataclasses

    from bakeoff.router.config import parse_address

    kw: dict[str, Any] = {}
    if "listen" in overrides:
        kw["listen"] = parse_address(overrides["listen"], "--listen")
    if "admin" in overrides:
        kw["admin"] = parse_address(overrides["admin"], "--admin")
    if "workers" in overrides:
        if not 1 <= overrides["workers"] <= 64:
            raise ConfigError("--workers must be from 1 to 64")
        kw["workers"] = overrides["workers"]
    if "events_token" in overrides:
        kw["events_token"] = overrides["events_token"]
    return dataclasses.replace(config, **kw)
