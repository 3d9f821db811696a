"""Running a router process from the command line (``bakeoff router``)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import structlog
import uvloop

from router.config import ConfigError, RouterConfig

log = structlog.get_logger("bakeoff.router")


async def _serve_single(config: RouterConfig, stop: asyncio.Event) -> int:
    from router.server import Router

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
        from router.workers import Supervisor

        return await Supervisor(config, None).run(stop)
    return await _serve_single(config, stop)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="router YAML file (see docs/router.md)")
    p.add_argument("--listen", help="traffic address host:port (overrides the file)")
    p.add_argument("--admin", help="control-plane address host:port (overrides the file)")
    p.add_argument("--workers", type=int, help="processes sharing the traffic port (SO_REUSEPORT)")


def run(args: argparse.Namespace) -> int:
    try:
        config = RouterConfig.from_file(args.config) if args.config else RouterConfig()
        overrides = {}
        if args.listen:
            overrides["listen"] = args.listen
        if args.admin:
            overrides["admin"] = args.admin
        if args.workers is not None:
            overrides["workers"] = args.workers
        if overrides:
            config = _with_overrides(config, overrides, args.config or "command line")
    except ConfigError as e:
        print(f"bakeoff router: {e}", file=sys.stderr)
        return 2
    if not config.variants:
        print(f"bakeoff router: {args.config or 'command line'}: variants: at least one variant is needed",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        return uvloop.run(_serve(config))
    except OSError as e:
        print(f"bakeoff router: cannot listen: {e}", file=sys.stderr)
        return 1


def _with_overrides(config: RouterConfig, overrides: dict, origin: str) -> RouterConfig:
    import dataclasses

    from router.config import parse_address

    kw = {}
    if "listen" in overrides:
        kw["listen"] = parse_address(overrides["listen"], "--listen")
    if "admin" in overrides:
        kw["admin"] = parse_address(overrides["admin"], "--admin")
    if "workers" in overrides:
        if not 1 <= overrides["workers"] <= 64:
            raise ConfigError("--workers must be from 1 to 64")
        kw["workers"] = overrides["workers"]
    return dataclasses.replace(config, **kw)
