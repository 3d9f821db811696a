"""Per-source baselines: from cumulative snapshots to this look's new requests (pure).

A router's counters only grow while its process lives; the judge keeps, per
source (one router process, or one merged set of them: ``router_id@started_at``
joined), the last counters seen of *each variant* and subtracts them from the
next snapshot.  A variant missing from a look keeps its baseline, so when it
returns only its new requests count.  A source not seen before, a merged set
that changed, or counters that went backwards rebase without consuming
anything (every request counts once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bakeoff.judge.counters import VariantCounters

MAX_SOURCES = 64  # baselines kept (one per router process or merged set of them)

REBASED = "router restarted or counters went backwards: rebased, nothing consumed this look"


def source_key(fingerprint: tuple) -> str:
    return "|".join(f"{rid}@{started!r}" for rid, started in fingerprint)


@dataclass
class Baseline:
    """One source's last counters per variant, when they were taken, and at which look."""

    taken_at: float | None
    variants: dict[str, VariantCounters]
    look: int
    sources: list[str]

    def copy(self) -> Baseline:
        return Baseline(self.taken_at, {n: c.copy() for n, c in self.variants.items()}, self.look, list(self.sources))

    def to_json(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at,
            "variants": {n: c.to_json() for n, c in self.variants.items()},
            "look": self.look,
            "sources": self.sources,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Baseline:
        return cls(
            d.get("taken_at"),
            {n: VariantCounters.from_json(c) for n, c in d["variants"].items()},
            int(d.get("look", 0)),
            list(d.get("sources", ())),
        )


@dataclass
class Intake:
    """What one look's snapshots brought: increments per variant, the variants present,
    notes, how many rebases, and the newest ``taken_at``."""

    increments: dict[str, VariantCounters] = field(default_factory=dict)
    present: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    resets: int = 0
    last_taken_at: float | None = None


@dataclass
class Baselines:
    """The baselines of every source (insertion order: the oldest is dropped first)."""

    by_source: dict[str, Baseline] = field(default_factory=dict)

    def copy(self) -> Baselines:
        return Baselines({k: b.copy() for k, b in self.by_source.items()})

    def __bool__(self) -> bool:
        return bool(self.by_source)

    def to_json(self) -> dict[str, Any]:
        return {k: b.to_json() for k, b in self.by_source.items()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Baselines:
        return cls({k: Baseline.from_json(b) for k, b in d.items()})

    def consume(
        self,
        parsed: list[tuple[dict[str, VariantCounters], tuple, float | None]],
        look: int,
        baseline_only: bool = False,
    ) -> Intake:
        """Subtract each snapshot's baseline and keep its counters as the next baseline.

        ``baseline_only``: the first look of a round on long-lived routers -- every
        snapshot becomes a baseline and nothing is consumed.
        """
        out = Intake()
        first_look = not self.by_source
        for counters, fingerprint, taken_at in parsed:
            key = source_key(fingerprint)
            sources = {f"{rid}@{started!r}" for rid, started in fingerprint}
            out.present.update(counters)
            base = self.by_source.get(key)
            if base is not None and taken_at is not None and base.taken_at is not None and taken_at < base.taken_at:
                out.notes.append("ignored: snapshot is older than the previous one")
                continue
            # A baseline is stale when a router process in it was since counted under another
            # key (a merged set that changed): diffing against it would count that again.
            stale = base is not None and any(
                other.look > base.look and sources & set(other.sources)
                for k2, other in self.by_source.items()
                if k2 != key
            )
            fresh = Baseline(taken_at, counters, look, sorted(sources))
            if base is None or stale:
                self.by_source.pop(key, None)
                self.by_source[key] = fresh
                while len(self.by_source) > MAX_SOURCES:
                    self.by_source.pop(next(iter(self.by_source)))
                if baseline_only:
                    continue
                if not first_look:
                    # A router process (or set of them) not seen before, or seen again after
                    # its counts went in under another key: only later increments count.
                    out.resets += 1
                    out.notes.append(REBASED)
                    continue
                new = {name: c.copy() for name, c in counters.items()}
            else:
                old = base.variants
                diffs = {
                    name: (c.minus_checked(old[name]) if name in old else c.copy()) for name, c in counters.items()
                }
                if any(d is None for d in diffs.values()):  # some counter went backwards
                    self.by_source[key] = fresh
                    out.resets += 1
                    out.notes.append(REBASED)
                    continue
                new = {name: d for name, d in diffs.items() if d is not None}
                # A variant missing from this look keeps its last counters as its baseline.
                fresh.variants = {**old, **counters}
                self.by_source[key] = fresh
            for name, inc in new.items():
                acc = out.increments.get(name)
                if acc is None:
                    out.increments[name] = inc  # a new object (a difference or a copy): ours to keep
                else:
                    acc.add(inc)
            if taken_at is not None:
                out.last_taken_at = max(out.last_taken_at or taken_at, taken_at)
        return out
