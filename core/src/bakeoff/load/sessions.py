"""The built-in load generator: seats that run session plans, on one aiohttp session.

A *session plan* is a generator that yields the next HTTP request
(:class:`Step`) and is sent back the reply (:class:`Reply`); it is written
once and executed here or, for the shop's shoppers, by a locust user too.
Each of ``users`` seats runs one session after another, each under a fresh
user id sent in the target's sticky header, so new sticky keys keep
arriving as on a real service.  A request that gets no answer ends its
session.  A 2xx answer to a ``purchase`` step is posted to the router's
``POST /-/events`` as ``{"key": <user id>, "metric": "conversion", "value": 1}``,
batched.

:func:`request_mix` is the plan of a Bakeoff's ``spec.load.requests``:
:data:`SESSION_REQUESTS` requests picked at random by weight.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from bakeoff.load import LoadStats, Target

SESSION_REQUESTS = 20  # requests of one user id in a request mix


@dataclass(frozen=True)
class Step:
    """One request of a session.  ``name`` groups requests in locust's statistics."""

    method: str
    path: str
    name: str = ""
    body: Any = None  # sent as JSON
    data: bytes | None = None  # sent as it is
    headers: tuple[tuple[str, str], ...] = ()
    want_json: bool = False
    purchase: bool = False  # a 2xx answer to this request is a purchase


@dataclass(frozen=True)
class Reply:
    status: int  # 0 when no HTTP answer arrived
    data: Any = None  # the decoded JSON body when the step asked for it and it parsed


Plan = Callable[[str, random.Random], Generator[Step, Reply, None]]


def new_user_id(seat: int, rng: random.Random) -> str:
    return f"user-{seat}-{rng.getrandbits(48):012x}"


@dataclass(frozen=True)
class SessionLoad:
    """``users`` seats running ``plan`` until stopped; ``think``: mean pause between a user's requests (exponential).

    The first requests are spread over ``spread`` seconds rather than sent all at once.
    """

    plan: Plan
    users: int
    think: float = 0.0
    description: str = ""
    seed: int = 0
    spread: float = 1.0
    event_interval: float = 0.5
    request_timeout: float = 10.0

    async def run(self, target: Target, stop: asyncio.Event, stats: LoadStats | None = None) -> LoadStats:
        stats = stats if stats is not None else LoadStats()
        base = target.url.rstrip("/")
        connector = aiohttp.TCPConnector(limit=self.users + 2)
        timeout = aiohttp.ClientTimeout(total=self.request_timeout)

        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            batcher = (
                _EventBatcher(session, target.events_url, stats, self.event_interval) if target.events_url else None
            )

            async def seat(index: int) -> None:
                rng = random.Random(f"{self.seed}/{index}")
                await pause(stop, rng.random() * self.spread)
                while not stop.is_set():
                    user = new_user_id(index, rng)
                    plan = self.plan(user, rng)
                    step = next(plan)
                    while True:
                        stats.requests += 1
                        try:
                            reply = await _request(session, base, target.sticky_header, user, step)
                        except (TimeoutError, aiohttp.ClientError, OSError):
                            stats.errors += 1
                            await pause(stop, 0.05)  # do not spin on a target that is down
                            break
                        if reply.status >= 500:
                            stats.errors += 1
                        if step.purchase and 200 <= reply.status < 300:
                            stats.purchases += 1
                            if batcher is not None:
                                batcher.add(user)
                        if stop.is_set():
                            break
                        if self.think > 0:
                            await pause(stop, rng.expovariate(1 / self.think))
                        try:
                            step = plan.send(reply)
                        except StopIteration:
                            stats.sessions += 1
                            break

            flusher = asyncio.create_task(batcher.run(stop)) if batcher else None
            try:
                await asyncio.gather(*(seat(i) for i in range(self.users)))
            finally:
                if flusher is not None and batcher is not None:
                    if stop.is_set():
                        await flusher  # its loop ends with one last flush
                    else:  # we are being cancelled
                        flusher.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await flusher
                    await batcher.flush()  # whatever is still pending
        return stats


class RequestKind(Protocol):
    """One kind of request of a mix (``spec.load.requests[i]``)."""

    @property
    def path(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def weight(self) -> float: ...
    @property
    def headers(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def body(self) -> bytes | None: ...


def request_mix(requests: Sequence[RequestKind], users: int, think: float, seed: int = 0) -> SessionLoad:
    """Sessions of :data:`SESSION_REQUESTS` requests, each picked from ``requests`` at random by weight."""
    steps = [Step(r.method, r.path, r.path, data=r.body, headers=tuple(r.headers)) for r in requests]
    weights = [r.weight for r in requests]

    def plan(user: str, rng: random.Random) -> Generator[Step, Reply, None]:
        for _ in range(SESSION_REQUESTS):
            yield rng.choices(steps, weights)[0]

    total = sum(weights)
    mix = ", ".join(f"{r.method} {r.path} {r.weight / total:.0%}" for r in requests)
    return SessionLoad(plan, users, think, f"{users} users, think {think:g}s: {mix}", seed, spread=max(think, 0.05))


class _EventBatcher:
    """Collects purchases and posts them to the router as one JSON list per interval."""

    def __init__(self, session: aiohttp.ClientSession, url: str, stats: LoadStats, interval: float) -> None:
        self.session = session
        self.url = url
        self.stats = stats
        self.interval = interval
        self.pending: list[dict[str, Any]] = []

    def add(self, user: str) -> None:
        self.pending.append({"key": user, "metric": "conversion", "value": 1})

    async def flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        try:
            async with self.session.post(self.url, json=batch) as r:
                body = await r.json(content_type=None)
            results = body.get("results", []) if isinstance(body, dict) else []
            accepted = sum(1 for x in results if isinstance(x, dict) and "error" not in x)
        except (TimeoutError, aiohttp.ClientError, ValueError):
            accepted = 0
        except BaseException:
            # Cancelled mid-post: keep the batch for the final flush rather than lose it.
            self.pending = batch + self.pending
            raise
        self.stats.events_sent += accepted
        self.stats.events_failed += len(batch) - accepted

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await pause(stop, self.interval)
            await self.flush()


async def _request(
    session: aiohttp.ClientSession, base: str, sticky_header: str | None, user: str, step: Step
) -> Reply:
    headers = dict(step.headers)
    if sticky_header:
        headers.setdefault(sticky_header, user)
    async with session.request(step.method, base + step.path, json=step.body, data=step.data, headers=headers) as r:
        if step.want_json and r.status == 200:
            try:
                return Reply(r.status, await r.json(content_type=None))
            except ValueError:
                return Reply(r.status)
        await r.read()
        return Reply(r.status)


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
