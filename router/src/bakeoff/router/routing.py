"""The routing table: which variant serves a request.

Keyed requests use weighted rendezvous hashing (Schindelhauer & Schomaker,
"Weighted Distributed Hash Tables", SPAA 2005; the logarithmic form in
Resch, "New Hashing Algorithms for Data Storage", 2015): every variant scores
``-weight / ln(u)`` with ``u`` a uniform hash of (key, variant), and the
highest score wins.  A key lands on variant ``i`` with probability
``w_i / sum(w)``.  When weights change, a key moves from x to y only if y's
weight grew relative to x's: removing a variant moves only its users, and
ramping candidates up against the mainline moves exactly the minimal share,
all of it from the mainline, none between candidates.  (An arbitrary change
can move a little more than the minimum; tests/router/test_routing.py
measures both.)

The hash is blake2b of the key mixed with a per-variant seed derived from the
variant's name, so every router replica and worker, in any process, agrees
on every user's variant.  Keyless requests are split at random by weight.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
import re
from collections.abc import Iterable
from typing import NamedTuple

from bakeoff.contracts.snapshot import OTHER_ROUTE
from bakeoff.router.config import RouteSpec, VariantSpec

_MASK = (1 << 64) - 1
_CACHE_LIMIT = 1 << 16


def _mix64(x: int) -> int:
    # splitmix64's finaliser: a cheap bijection with full avalanche.
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def key_hash(key: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


class Upstream(NamedTuple):
    """An upstream address; a tuple, so hashing it (pool look-ups) stays in C."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class Variant:
    """A variant in a table: its name, upstream addresses and weight."""

    __slots__ = ("name", "name_bytes", "header_line", "upstreams", "weight", "seed", "_next", "protocol", "version")

    def __init__(self, spec: VariantSpec) -> None:
        self.name = spec.name
        self.name_bytes = spec.name.encode()
        self.header_line = b"X-Bakeoff-Variant: " + self.name_bytes + b"\r\n"
        self.upstreams = tuple(Upstream(h, p) for h, p in spec.upstreams)
        self.weight = spec.weight
        self.protocol = spec.protocol  # "http1" or "h2c"
        self.version = spec.version  # the commit: service.version on its spans
        self.seed = key_hash(b"bakeoff-variant\0" + self.name_bytes)
        self._next = 0

    def next_upstream(self) -> Upstream:
        """Round-robin over this variant's addresses."""
        ups = self.upstreams
        if len(ups) == 1:
            return ups[0]
        self._next = (self._next + 1) % len(ups)
        return ups[self._next]

    def to_json(self) -> dict:
        out = {"name": self.name, "upstreams": [str(u) for u in self.upstreams], "weight": self.weight}
        if self.protocol != "http1":
            out["protocol"] = self.protocol
        if self.version is not None:
            out["version"] = self.version
        return out


class RouteTable:
    """An immutable table; the router swaps whole tables, never edits one."""

    def __init__(self, specs: Iterable[VariantSpec], version: int = 0) -> None:
        self.variants = tuple(Variant(s) for s in specs)
        self.version = version
        self.by_name = {v.name: v for v in self.variants}
        self.by_name_bytes = {v.name_bytes: v for v in self.variants}
        self._live = tuple(v for v in self.variants if v.weight > 0)
        cumulative = []
        total = 0.0
        for v in self._live:
            total += v.weight
            cumulative.append(total)
        self._cumulative = cumulative
        self._total = total
        self._cache: dict[bytes, Variant] = {}

    @property
    def weights(self) -> dict[str, float]:
        return {v.name: v.weight for v in self.variants}

    def pick_random(self) -> Variant | None:
        if not self._live:
            return None
        i = bisect.bisect_right(self._cumulative, random.random() * self._total)
        return self._live[min(i, len(self._live) - 1)]

    def pick_sticky(self, key: bytes) -> Variant | None:
        variant = self._cache.get(key)
        if variant is not None:
            return variant
        if not self._live:
            return None
        h = key_hash(key)
        best = None
        best_score = -math.inf
        for v in self._live:
            u = (_mix64(h ^ v.seed) + 0.5) / 18446744073709551616.0
            score = -v.weight / math.log(u)
            if score > best_score:
                best, best_score = v, score
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = best  # type: ignore[assignment]
        return best

    def choose(self, key: bytes | None, override: bytes | None = None) -> Variant | None:
        """The variant for a request: a pinned name if it is in the table, else by key, else by weight."""
        if override is not None:
            variant = self.by_name_bytes.get(override)
            if variant is not None:
                return variant
        return self.pick_sticky(key) if key else self.pick_random()

    def to_json(self) -> dict:
        return {"version": self.version, "variants": [v.to_json() for v in self.variants]}


class RequestRoutes:
    """Which configured route a request path belongs to, for per-route statistics.

    All globs are one regular expression of alternatives, tried in order, so
    the first pattern that matches wins with one C-level match per request.
    """

    def __init__(self, specs: Iterable[RouteSpec], slots: tuple[int, ...] | None = None) -> None:
        specs = tuple(specs)
        self.specs = specs
        self.names = (*(s.name for s in specs), OTHER_ROUTE)
        # Where each name's counts live (RouterStats.route_slots); by default its position.
        self.slots = slots if slots is not None else tuple(range(len(self.names)))
        self._other = self.slots[-1]
        alternatives = b"|".join(
            b"(" + b".*".join(re.escape(part.encode()) for part in s.match.split("*")) + b")" for s in specs
        )
        self._regex = re.compile(rb"(?:" + alternatives + rb")\Z", re.DOTALL)

    def index(self, target: bytes) -> int:
        """Index into ``names`` of the route of a request target (its path: the part before ``?``)."""
        q = target.find(b"?")
        m = self._regex.match(target if q < 0 else target[:q])
        return self._other if m is None else self.slots[m.lastindex - 1]  # type: ignore[operator]
