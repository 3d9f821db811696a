"""Leader election on a coordination.k8s.io/v1 Lease, so two controller replicas never act at once.

The scheme is client-go's (k8s.io/client-go/tools/leaderelection): the holder
renews ``spec.renewTime`` every ``retry_period``; a candidate takes the Lease
only when its record has not changed for ``lease_duration`` *as measured on
the candidate's own clock* since it last saw it change (so clock skew between
nodes does not matter), and every write carries the ``resourceVersion`` it
read, so of two candidates racing for an expired Lease the API server lets
exactly one through (the other gets 409 Conflict).  A leader that cannot
renew within ``renew_deadline`` steps down before anyone else may take over
(renew_deadline < lease_duration).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

log = structlog.get_logger("bakeoff.controller.leader")


def _micro_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        api: Any,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        from kubernetes import client

        if renew_deadline >= lease_duration:
            raise ValueError("renew_deadline must be shorter than lease_duration")
        self.coord = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_duration, self.renew_deadline = lease_duration, renew_deadline
        self.clock, self.wall = clock, wall
        self.leading = False
        self.transitions = 0  # times this replica became leader
        self._observed: tuple[Any, ...] | None = None  # (holder, renewTime, transitions) last seen
        self._observed_at = 0.0
        self._last_renew = 0.0

    def _record(self, lease: Any) -> tuple[Any, ...]:
        s = lease.spec
        return (s.holder_identity, str(s.renew_time), s.lease_transitions)

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True while this replica leads.  Never raises for API trouble."""
        from kubernetes.client import ApiException

        now = self.clock()
        try:
            lease = self.coord.read_namespaced_lease(self.name, self.namespace)
        except ApiException as e:
            if e.status != 404:
                return self._failed(f"read lease: {e.status} {e.reason}")
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(transitions=0, acquire=True),
            }
            try:
                self.coord.create_namespaced_lease(self.namespace, body)  # type: ignore[arg-type] # a dict body is accepted
            except ApiException as e2:
                return self._failed(f"create lease: {e2.status} {e2.reason}")
            return self._became_leader()
        except Exception as e:  # noqa: BLE001 - the API server may be unreachable
            return self._failed(f"read lease: {type(e).__name__}: {e}")
        if lease.spec is None or lease.metadata is None:
            return self._failed("read lease: no spec or metadata")
        record = self._record(lease)
        if record != self._observed:
            self._observed, self._observed_at = record, now
        holder = lease.spec.holder_identity
        mine = holder == self.identity
        expired = not holder or now - self._observed_at >= (lease.spec.lease_duration_seconds or self.lease_duration)
        if not mine and not expired:
            if self.leading:
                log.warning("lost leadership", lease=self.name, holder=holder)
            self.leading = False
            return False
        transitions = (lease.spec.lease_transitions or 0) + (0 if mine else 1)
        spec = self._spec(transitions=transitions, acquire=not mine)
        if mine and lease.spec.acquire_time is not None:
            spec["acquireTime"] = _micro_time(lease.spec.acquire_time.timestamp())
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "resourceVersion": lease.metadata.resource_version,
            },
            "spec": spec,
        }
        try:
            updated = self.coord.replace_namespaced_lease(self.name, self.namespace, body)  # type: ignore[arg-type]
        except ApiException as e:
            return self._failed(f"update lease: {e.status} {e.reason}")
        except Exception as e:  # noqa: BLE001
            return self._failed(f"update lease: {type(e).__name__}: {e}")
        self._observed, self._observed_at = self._record(updated), now
        if mine:
            self._last_renew = now
            self.leading = True
            return True
        return self._became_leader()

    def _spec(self, transitions: int, acquire: bool) -> dict[str, Any]:
        t = _micro_time(self.wall())
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, int(round(self.lease_duration))),
            "renewTime": t,
            "leaseTransitions": transitions,
        }
        if acquire:
            spec["acquireTime"] = t
        return spec

    def _became_leader(self) -> bool:
        self._last_renew = self.clock()
        if not self.leading:
            self.transitions += 1
            log.info("became leader", lease=self.name, identity=self.identity)
        self.leading = True
        return True

    def _failed(self, why: str) -> bool:
        # A leader keeps leading through short API trouble, but steps down
        # before renew_deadline passes, well before anyone may take over.
        if self.leading and self.clock() - self._last_renew < self.renew_deadline:
            log.warning("lease not renewed; still leading", lease=self.name, error=why)
            return True
        if self.leading:
            log.warning("stepping down: lease not renewed in time", lease=self.name, error=why)
        self.leading = False
        return False

    def release(self) -> None:
        """On a clean shutdown: give the Lease up so another replica takes over at once."""
        from kubernetes.client import ApiException

        if not self.leading:
            return
        self.leading = False
        try:
            lease = self.coord.read_namespaced_lease(self.name, self.namespace)
            if lease.spec is None or lease.metadata is None or lease.spec.holder_identity != self.identity:
                return
            body = {
                "metadata": {"resourceVersion": lease.metadata.resource_version},
                "spec": {"holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": _micro_time(self.wall())},
            }
            self.coord.patch_namespaced_lease(self.name, self.namespace, body)
        except (ApiException, Exception) as e:  # noqa: BLE001
            log.warning("lease not released", lease=self.name, error=str(e))
