"""Where the judge's data comes from: one small interface, one file per source.

Every source returns the same thing -- a snapshot-shaped dict in the
``bakeoff.snapshot/v1`` format (docs/snapshot.md) -- so the pure core never
knows whether the numbers came from the routers themselves or from
Prometheus.  :func:`make_source` picks the implementation from the locations:

- ``http(s)://router:port/-/snapshot`` or a file path (one or many: several
  router replicas are merged with ``bakeoff.contracts.snapshot.merge_snapshots``);
- ``prometheus+http(s)://prometheus:9090`` (optionally ``?selector=job="bakeoff"``):
  PromQL over HTTP against the router's metric names (also works with
  anything that speaks the Prometheus query API).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


class SourceError(RuntimeError):
    """The data could not be fetched or did not have the expected shape."""


@runtime_checkable
class Source(Protocol):
    description: str

    async def fetch(self) -> dict[str, Any]:
        """The current cumulative snapshot."""
        ...

    async def fetch_each(self) -> list[dict[str, Any]]:
        """The current snapshots, one per independent source (what judge.core.step keeps a
        baseline for): one per router location, or one for a source that already aggregates."""
        ...

    async def close(self) -> None: ...


PROMETHEUS_SCHEMES = ("prometheus+http://", "prometheus+https://")


def make_source(locations: list[str], *, timeout: float = 10.0) -> Source:
    if not locations:
        raise ValueError("no source given: pass --snapshot URL|FILE (or prometheus+http://host:9090)")
    prom = [loc for loc in locations if loc.startswith(PROMETHEUS_SCHEMES)]
    if prom:
        if len(locations) > 1:
            raise ValueError("a Prometheus source already aggregates every router; give it alone")
        from bakeoff.judge.sources.prometheus import PrometheusSource

        return PrometheusSource.from_location(prom[0], timeout=timeout)
    from bakeoff.judge.sources.snapshot import SnapshotSource

    return SnapshotSource(locations, timeout=timeout)
