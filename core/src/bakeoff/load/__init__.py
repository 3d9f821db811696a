"""Load bakeoff drives through a router: one interface, one implementation of each kind.

A :class:`Load` says what it is (``description``, for the report and the
log) and runs against a :class:`Target` (the router's URL, its events URL,
the sticky header) until ``stop`` is set, returning :class:`LoadStats`.
Two implementations:

- :class:`bakeoff.load.sessions.SessionLoad`, the built-in generator
  (asyncio and aiohttp only): ``users`` seats, each running one session
  plan after another.  :func:`~bakeoff.load.sessions.request_mix` is the
  plan of a Bakeoff's ``spec.load.requests``,
  :func:`~bakeoff.load.shoppers.shoppers` the example shop's shoppers.
- :class:`bakeoff.load.locustload.LocustLoad`, a locust file run headless
  by locust as a library in a child process.

The controller picks one from the Bakeoff's ``spec.load``
(``bakeoff.controller.load.load_of``); ``bakeoff demo`` picks the shop's.
This package sits below the controller and beside the router and the judge:
it imports none of them (import-linter keeps it so).
"""

from __future__ import annotations

import asyncio
import importlib.util
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from bakeoff.contracts.resources import DEFAULT_STICKY_HEADER


@dataclass(frozen=True)
class Target:
    """Where load goes: the router's URL, its ``POST /-/events`` URL, and the header that keeps a user sticky."""

    url: str
    events_url: str | None = None
    sticky_header: str | None = DEFAULT_STICKY_HEADER


@dataclass
class LoadStats:
    """What the load did.  Plain counters, updated from the event loop only."""

    requests: int = 0
    errors: int = 0  # 5xx answers and requests that got no answer
    sessions: int = 0  # finished sessions
    purchases: int = 0  # successful checkouts (the shop's shoppers)
    events_sent: int = 0  # conversion events the router accepted
    events_failed: int = 0  # ... it refused or that could not be delivered

    @property
    def conversion_per_session(self) -> float | None:
        return self.purchases / self.sessions if self.sessions else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Load(Protocol):
    """Load that runs against a router until ``stop`` is set."""

    @property
    def description(self) -> str: ...

    async def run(self, target: Target, stop: asyncio.Event) -> LoadStats: ...


def locust_available() -> bool:
    # find_spec, not import: importing locust monkey-patches the whole process with gevent.
    return importlib.util.find_spec("locust") is not None
