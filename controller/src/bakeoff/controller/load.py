"""Load a local run drives through its router, as the Bakeoff's ``spec.load`` describes it.

- ``requests``: the built-in generator.  ``users`` concurrent users each
  send one request after another, picked at random by ``weight``, with an
  exponential pause of mean ``think`` between them.  Each user carries a user
  id in the stickiness header (``X-User-Id`` unless the Bakeoff names
  another) and takes a new id every :data:`SESSION_REQUESTS` requests, so new
  sticky keys keep arriving as on a real service.
- ``locustfile``: the user's own locust file, run headless by locust in a
  child process (its output in ``<state dir>/logs/locust.log``) until the
  run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import structlog

from bakeoff.controller.resources import LoadRequest, LoadSpec

log = structlog.get_logger("bakeoff.controller.load")

SESSION_REQUESTS = 20


@dataclass
class LoadCounts:
    requests: int = 0
    failed: int = 0  # no answer (connection refused, timeout)


def describe(spec: LoadSpec, users: int, base_dir: Path) -> str:
    """One line for the report and the log: what the load was."""
    if spec.locustfile:
        return f"locust, {users} users, {base_dir / spec.locustfile}"
    if spec.shoppers:
        return f"{users} simulated shoppers"
    total = sum(r.weight for r in spec.requests)
    mix = ", ".join(f"{r.method} {r.path} {r.weight / total:.0%}" for r in spec.requests)
    return f"{users} users, think {spec.think:g}s: {mix}"


def locust_available() -> bool:
    # find_spec, not import: importing locust patches this process with gevent
    return importlib.util.find_spec("locust") is not None


async def drive(
    spec: LoadSpec,
    url: str,
    stop: asyncio.Event,
    *,
    users: int | None = None,
    base_dir: Path = Path("."),
    log_dir: Path | None = None,
    sticky_header: str | None = "X-User-Id",
    seed: int = 0,
) -> LoadCounts:
    users = users or spec.users
    if spec.locustfile:
        return await run_locustfile(base_dir / spec.locustfile, url, users, stop, log_dir=log_dir)
    return await run_requests(spec.requests, url, users, stop, think=spec.think, sticky_header=sticky_header, seed=seed)


async def run_requests(
    requests: tuple[LoadRequest, ...],
    url: str,
    users: int,
    stop: asyncio.Event,
    *,
    think: float = 0.05,
    sticky_header: str | None = "X-User-Id",
    seed: int = 0,
    timeout: float = 10.0,
) -> LoadCounts:
    counts = LoadCounts()
    base = url.rstrip("/")
    weights = [r.weight for r in requests]
    connector = aiohttp.TCPConnector(limit=users + 2)

    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:

        async def user(seat: int) -> None:
            rng = random.Random(f"{seed}/{seat}")
            await _pause(stop, rng.random() * max(think, 0.05))  # spread the first requests out
            n = 0
            uid = f"u{seat}-{rng.getrandbits(40):x}"
            while not stop.is_set():
                if n and n % SESSION_REQUESTS == 0:
                    uid = f"u{seat}-{rng.getrandbits(40):x}"
                n += 1
                r = rng.choices(requests, weights)[0]
                headers = dict(r.headers)
                if sticky_header:
                    headers.setdefault(sticky_header, uid)
                counts.requests += 1
                try:
                    async with session.request(r.method, base + r.path, data=r.body, headers=headers) as resp:
                        await resp.read()
                except (TimeoutError, aiohttp.ClientError, OSError):
                    counts.failed += 1
                    await _pause(stop, 0.05)  # do not spin against a router that is gone
                    continue
                if think > 0:
                    await _pause(stop, rng.expovariate(1 / think))

        await asyncio.gather(*(user(i) for i in range(users)))
    return counts


async def run_locustfile(
    locustfile: Path, url: str, users: int, stop: asyncio.Event, *, log_dir: Path | None = None
) -> LoadCounts:
    if not locust_available():
        log.error("spec.load.locustfile needs locust: pip install locust", locustfile=str(locustfile))
        return LoadCounts()
    out = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        out = open(log_dir / "locust.log", "ab")
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--host", url,
            "--users", str(users), "--spawn-rate", str(users), "--only-summary",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out if out is not None else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.STDOUT if out is not None else asyncio.subprocess.DEVNULL,
            cwd=str(locustfile.parent),
        )  # fmt: skip
    finally:
        if out is not None:
            out.close()
    waiter = asyncio.ensure_future(proc.wait())
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(asyncio.shield(waiter), 10)
            except TimeoutError:
                proc.kill()
                await waiter
    return LoadCounts()


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
