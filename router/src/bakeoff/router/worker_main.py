"""Entry point of one worker process under ``--workers N`` (see router.workers)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal

import uvloop

from bakeoff.common.logs import configure_logging
from bakeoff.router.admin import LocalBackend, start_admin
from bakeoff.router.config import RouterConfig, parse_variants
from bakeoff.router.server import Router


async def main(args: argparse.Namespace) -> int:
    config = RouterConfig.from_dict(json.loads(args.config_json), origin="worker config")
    routes = json.loads(open(args.routes_file).read())
    router = Router(config, router_id=args.worker_id, reuse_port=True)
    router.set_routes(parse_variants(routes["variants"], args.routes_file), routes["version"])
    await router.start(admin=False)
    admin = await start_admin(LocalBackend(router), args.control_socket, os.environ.get("BAKEOFF_WORKER_TOKEN"),
                              sticky=router.sticky is not None)  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # the supervisor decides when to stop
    await stop.wait()
    await router.stop()
    await admin.stop()
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--config-json", required=True)
    p.add_argument("--routes-file", required=True)
    p.add_argument("--control-socket", required=True)
    p.add_argument("--worker-id", required=True)
    configure_logging()
    raise SystemExit(uvloop.run(main(p.parse_args())))
