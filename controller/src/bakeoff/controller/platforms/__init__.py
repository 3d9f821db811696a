"""The Platform seam: where variants run and how traffic reaches them.

The reconcile loop decides; a platform carries the actions out.  One file per
implementation, chosen by :func:`make_platform` (``local``).  On Kubernetes
the same pure decision logic runs in controller/kube/operator.py, which acts
declaratively on Deployments, Services and ``Bakeoff.status.routing`` instead
of through this imperative interface: there the state lives in resource
status, not in one process.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from bakeoff.controller.resources import Workload


class PlatformError(RuntimeError):
    pass


@runtime_checkable
class Platform(Protocol):
    """What the controller needs from a platform.

    Workloads are named by variant.  ``start`` returns at once; a workload
    appears in :meth:`ready` once it passed its health check, or in
    :meth:`failures` when it could not start or stopped on its own.
    """

    async def open(self) -> None:
        """Bring up the traffic path (the router) with no variants yet."""

    def start(self, name: str, workload: Workload, labels: dict[str, Any]) -> None: ...

    def ready(self) -> frozenset[str]: ...

    def failures(self) -> dict[str, str]:
        """Every workload that failed so far, with why (cumulative)."""

    def set_weights(self, weights: dict[str, float]) -> None:
        """Apply a traffic split (variant -> share); only ready workloads are named."""

    def retire(self, name: str, reason: str) -> None:
        """Stop a workload once requests in flight had time to drain (returns at once)."""

    def snapshot(self) -> dict[str, Any]:
        """The router's cumulative statistics (bakeoff.snapshot/v1)."""

    def describe(self) -> dict[str, Any]:
        """Addresses and process ids, for status.json."""

    async def close(self) -> None:
        """Stop every workload and the router; leave nothing running."""


def make_platform(kind: str, **options: Any) -> Platform:
    if kind == "local":
        from bakeoff.controller.platforms.local import LocalPlatform

        return LocalPlatform(**options)
    raise PlatformError(f"unknown platform {kind!r} (known: local)")


__all__ = ["Platform", "PlatformError", "make_platform"]
