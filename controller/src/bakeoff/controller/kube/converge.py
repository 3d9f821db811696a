"""Converging: make the cluster match the record, declaratively and idempotently.

Deployments and Services per variant with the replicas its phase calls for,
the promotion patch of the mainline Deployment (guarded by the winner's uid in
an annotation, so it happens once), the hand-over of traffic to the updated
mainline, and the cleanup of deleted Variants.  Runs only after the record
(Bakeoff.status) was written.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from typing import Any

import structlog

from bakeoff.common.kube import GROUP, VERSION, api_error_message
from bakeoff.controller.kube import objects as ko
from bakeoff.controller.kube.context import BakeoffView, Clients, Conflict, Pass
from bakeoff.controller.kube.events import EventRecorder
from bakeoff.controller.kube.status import (
    StatusWriter,
    parse_time,
    rfc3339,
    routing_entries,
    routing_for,
    set_condition,
)
from bakeoff.controller.reconcile import DONE_PROMOTED, PENDING, PROMOTED, SERVING, WINNER
from bakeoff.controller.resources import VariantResource

log = structlog.get_logger("bakeoff.controller.kube")


class Converger:
    """Makes the cluster match the record; a Bakeoff deleted mid-run: all traffic back to the mainline first,
    then the candidates go, then the Bakeoff."""

    def __init__(
        self,
        k: Clients,
        status: StatusWriter,
        events: EventRecorder,
        leading: Callable[[], bool],
        deletion_drain: float,
    ) -> None:
        self.k = k
        self.status = status
        self.events = events
        self.leading = leading  # whether this replica still holds the Lease
        self.deletion_drain = deletion_drain  # seconds between the mainline-only split and removing candidates

    def converge(self, p: Pass) -> None:
        assert p.mainline is not None and p.port is not None
        b, ns, bname, mname, st = p.obj, p.ns, p.name, p.mname, p.decided
        # The mainline's Service.
        self._ensure_service(p, ko.child_name(bname, mname), ko.selector_of(p.mainline), ko.labels_for(bname, mname), b)
        winner = (st.decision or {}).get("winner") if st.phase == DONE_PROMOTED else None
        for n, v in p.valid.items():
            if v["metadata"].get("deletionTimestamp"):
                continue
            self._ensure_finalizer(v)
            phase = p.record[n]["phase"]
            wanted = p.parsed[n].workload.replicas
            # Pending here means its gate passed this pass (a blocked one is Gated by now).
            serving = phase in (PENDING, SERVING, WINNER) or (phase == PROMOTED and not p.handed_over)
            replicas = wanted if serving else 0
            if phase == PROMOTED and not p.handed_over:
                # it takes all traffic until the mainline has rolled out: as many replicas as the mainline
                replicas = max(wanted, int(p.mainline["spec"].get("replicas") or 1))
            dname = ko.child_name(bname, n)
            dep = p.view.children.get(dname)
            if dep is None:
                if replicas == 0:
                    continue
                body = ko.candidate_deployment(
                    p.mainline,
                    b,
                    v,
                    mainline_name_container=p.bres.mainline.container,
                    replicas=replicas,
                    progress_deadline=self._deadline(v, p.parsed[n]),
                )
                self._create(self.k.apps.create_namespaced_deployment, ns, body)
            elif (dep["spec"].get("replicas") or 0) != replicas:
                self._call(
                    "patch", self.k.apps.patch_namespaced_deployment, dname, ns, {"spec": {"replicas": replicas}}
                )
            self._ensure_service(p, dname, {ko.LABEL_BAKEOFF: bname, ko.LABEL_VARIANT: n}, ko.labels_for(bname, n), v)
        if winner and winner in p.valid:
            self._promote(p, p.valid[winner])

    def _deadline(self, v: dict[str, Any], parsed: VariantResource) -> int | None:
        """The Deployment's progressDeadlineSeconds: spec.startTimeout (as parsed at admission), if set."""
        if (v.get("spec") or {}).get("startTimeout") is None:
            return None
        return max(1, int(round(parsed.workload.start_timeout)))

    def _promote(self, p: Pass, winner: dict[str, Any]) -> None:
        from kubernetes.client import ApiException

        assert p.mainline is not None
        b, ns, bname, now, mainline = p.obj, p.ns, p.name, p.now, p.mainline
        done = ko.promotion_of(mainline)
        recorded = ((b.get("status") or {}).get("decision") or {}).get("mainlinePatched")
        if not recorded and (done is None or done.get("uid") != winner["metadata"]["uid"]):
            body = ko.promotion_patch(
                mainline, winner["spec"]["image"], p.bres.mainline.container, bname, winner, rfc3339(now)
            )
            try:
                self.k.apps.replace_namespaced_deployment(mainline["metadata"]["name"], ns, body)
            except ApiException as e:
                if e.status == 409:
                    raise Conflict() from None
                raise
            self.k.metrics.promotions.inc()
            # Recorded, so that a `bakeoff revert` (which removes the annotations) is not undone by a
            # re-patch; a crash before this write is covered by the annotation's uid.
            status = copy.deepcopy(b.get("status") or {})
            status.setdefault("decision", {})["mainlinePatched"] = rfc3339(now)
            status["previousTemplate"] = mainline["spec"]["template"]
            with contextlib.suppress(Conflict):
                self.status.write_bakeoff(b, status)
                b["status"] = status
            log.info(
                "mainline patched",
                bakeoff=bname,
                deployment=mainline["metadata"]["name"],
                image=winner["spec"]["image"],
            )
            self.events.record(
                b,
                {
                    "type": "mainline_patched",
                    "variant": None,
                    "reason": f"Deployment {mainline['metadata']['name']} now runs {winner['spec']['image']} "
                    f"(the template before is in annotation {ko.ANN_PREVIOUS_TEMPLATE}; bakeoff revert {bname})",
                },
            )
            return
        elif not recorded:
            assert done is not None
            status = copy.deepcopy(b.get("status") or {})
            status.setdefault("decision", {})["mainlinePatched"] = done.get("at") or rfc3339(now)
            with contextlib.suppress(Conflict):
                self.status.write_bakeoff(b, status)
                b["status"] = status
        if not p.handed_over and ko.rolled_out(mainline) and ko.promotion_of(mainline) is not None:
            conds = set_condition(
                list((b.get("status") or {}).get("conditions") or []),
                "MainlineUpdated",
                True,
                "RolledOut",
                f"Deployment {mainline['metadata']['name']} runs the winner; traffic goes to it",
                b["metadata"].get("generation"),
                now,
            )
            status = dict(b.get("status") or {}, conditions=conds)
            port = (status.get("routing") or {}).get("variants", [{}])[0].get("port")
            if port:
                status["routing"] = routing_for(
                    bname, p.mname, p.decided, port, True, status.get("routing"), p.view.commits()
                )
            self.status.write_bakeoff(b, status)
            b["status"] = status
            self.events.record(
                b,
                {
                    "type": "handed_over",
                    "variant": None,
                    "reason": f"traffic moved to Deployment {mainline['metadata']['name']} (now the winner's build)",
                },
            )

    def _ensure_service(
        self, p: Pass, name: str, selector: dict[str, str], labels: dict[str, str], owner: dict[str, Any]
    ) -> None:
        if name in p.view.services:
            return
        assert p.port is not None
        self._create(
            self.k.core.create_namespaced_service, p.ns, ko.service(name, p.ns, selector, p.port, labels, owner)
        )
        p.view.services.add(name)

    def _ensure_finalizer(self, v: dict[str, Any]) -> None:
        self._add_finalizer(v, "variants")

    def _add_finalizer(self, obj: dict[str, Any], plural: str) -> None:
        """Our finalizer on a Bakeoff or Variant (guarded by its resourceVersion; a 409 waits for the next pass)."""
        meta = obj["metadata"]
        fins = meta.get("finalizers") or []
        if ko.FINALIZER in fins:
            return
        body = {"metadata": {"finalizers": fins + [ko.FINALIZER], "resourceVersion": meta["resourceVersion"]}}
        try:
            out = self.k.custom.patch_namespaced_custom_object(
                GROUP, VERSION, meta["namespace"], plural, meta["name"], body
            )
            obj["metadata"] = out["metadata"]
        except Exception as e:  # noqa: BLE001 - next pass tries again
            if getattr(e, "status", None) == 409:
                self.k.metrics.conflicts.inc()
            else:
                log.warning("finalizer not added", kind=plural, name=meta["name"], error=api_error_message(e))

    def finish_deletions(self, view: BakeoffView, routing_names: set[str] | None) -> None:
        """Deleted Variants: once routing has dropped them, delete their children, then the finalizer."""
        b = view.obj
        bname = b["metadata"]["name"]
        for v in view.variants:
            if not v["metadata"].get("deletionTimestamp") or ko.FINALIZER not in (
                v["metadata"].get("finalizers") or []
            ):
                continue
            n = v["metadata"]["name"]
            if routing_names is not None and n in routing_names:
                continue  # still routed: the status write that drops it comes first
            self._delete_children(v["metadata"]["namespace"], ko.child_name(bname, n))
            self._remove_finalizer(v)

    def _delete_children(self, ns: str, name: str) -> None:
        from kubernetes.client import ApiException

        for fn in (self.k.apps.delete_namespaced_deployment, self.k.core.delete_namespaced_service):
            try:
                fn(name, ns)
            except ApiException as e:
                if e.status != 404:
                    raise

    def _remove_finalizer(self, v: dict[str, Any]) -> None:
        fins = [f for f in v["metadata"].get("finalizers") or [] if f != ko.FINALIZER]
        body = {"metadata": {"finalizers": fins or None, "resourceVersion": v["metadata"]["resourceVersion"]}}
        try:
            self.k.custom.patch_namespaced_custom_object(
                GROUP, VERSION, v["metadata"]["namespace"], "variants", v["metadata"]["name"], body
            )
            log.info("variant cleaned up", variant=v["metadata"]["name"])
        except Exception as e:  # noqa: BLE001
            if getattr(e, "status", None) not in (404, 409):
                log.warning("finalizer not removed", variant=v["metadata"]["name"], error=api_error_message(e))

    def cleanup_orphans(self, variants: list[dict[str, Any]], bakeoff_keys: set[tuple[str, str]]) -> None:
        """Variants being deleted whose Bakeoff is gone (or never existed): clean up and let go."""
        for v in variants:
            meta = v["metadata"]
            key = (meta["namespace"], (v.get("spec") or {}).get("bakeoff"))
            if key in bakeoff_keys:
                continue
            if meta.get("deletionTimestamp") and ko.FINALIZER in (meta.get("finalizers") or []):
                self._delete_children(meta["namespace"], ko.child_name(key[1] or "", meta["name"]))
                self._remove_finalizer(v)
            elif not meta.get("deletionTimestamp"):
                conds = list((v.get("status") or {}).get("conditions") or [])
                new = set_condition(
                    conds,
                    "Accepted",
                    False,
                    "BakeoffNotFound",
                    f"spec.bakeoff: no Bakeoff {key[1]!r} in namespace {meta['namespace']}",
                    meta.get("generation"),
                    self.k.clock(),
                )
                if new != conds:
                    self.status.replace("variants", v, dict(v.get("status") or {}, conditions=new))

    def _create(self, fn: Callable[..., Any], ns: str, body: dict[str, Any]) -> None:
        from kubernetes.client import ApiException

        try:
            fn(ns, body)
            log.info("created", kind=body["kind"], name=body["metadata"]["name"], namespace=ns)
        except ApiException as e:
            if e.status != 409:  # already there: a previous pass (or replica) made it
                self.k.metrics.api_errors.labels("create").inc()
                raise

    def _call(self, verb: str, fn: Callable[..., Any], *args: Any) -> Any:
        from kubernetes.client import ApiException

        try:
            return fn(*args)
        except ApiException as e:
            if e.status == 409:
                self.k.metrics.conflicts.inc()
                return None
            self.k.metrics.api_errors.labels(verb).inc()
            raise

    def ensure_bakeoff_finalizer(self, b: dict[str, Any]) -> None:
        if not b["metadata"].get("deletionTimestamp"):
            self._add_finalizer(b, "bakeoffs")

    def delete_bakeoff(self, view: BakeoffView, now: float, mname: str) -> None:
        """Record the mainline-only split; after deletion_drain (routers watch it) delete candidates, let go."""
        b = view.obj
        meta = b["metadata"]
        if ko.FINALIZER not in (meta.get("finalizers") or []):
            return
        ns, bname = meta["namespace"], meta["name"]
        status = copy.deepcopy(b.get("status") or {})
        conds = list(status.get("conditions") or [])
        first = not any(c.get("type") == "Deleting" for c in conds)
        conds = set_condition(
            conds,
            "Deleting",
            True,
            "Deleting",
            f"the Bakeoff is being deleted: all traffic goes to the mainline, candidates are removed "
            f"{self.deletion_drain:g}s later",
            meta.get("generation"),
            now,
        )
        status["conditions"] = conds
        current = status.get("routing")
        port = next((e.get("port") for e in (current or {}).get("variants") or []), None)
        if port:
            entry = {"name": mname, "service": ko.child_name(bname, mname), "port": port, "weight": 1.0}
            status["routing"] = routing_entries([entry], current)
        if not self.leading():
            return
        if status != (b.get("status") or {}):
            self.status.write_bakeoff(b, status)  # raises Conflict: redone on a fresh read
            b["status"] = status
        if first:
            self.events.record(
                b, {"type": "deleting", "variant": None, "reason": "Bakeoff deleted: traffic back to the mainline"}
            )
        since = parse_time(next(c for c in conds if c["type"] == "Deleting").get("lastTransitionTime"))
        if since is not None and now - since < self.deletion_drain:
            return
        names = set(status.get("variants") or {}) | {v["metadata"]["name"] for v in view.variants}
        for n in sorted(names - {mname}):
            self._delete_children(ns, ko.child_name(bname, n))
        fins = [f for f in meta.get("finalizers") or [] if f != ko.FINALIZER]
        body = {"metadata": {"finalizers": fins or None, "resourceVersion": meta["resourceVersion"]}}
        self.k.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "bakeoffs", bname, body)
        log.info("bakeoff deleted: candidates removed, finalizer released", bakeoff=bname, namespace=ns)
