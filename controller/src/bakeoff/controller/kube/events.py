"""core/v1 Events for every transition (what ``kubectl describe`` shows)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import structlog

from bakeoff.common.kube import api_error_message
from bakeoff.controller.kube.context import Clients

log = structlog.get_logger("bakeoff.controller.kube")

EVENT_REASONS = {
    "admitted": ("Admitted", "Normal"),
    "ramped": ("Ramped", "Normal"),
    "rolled_back": ("RolledBack", "Warning"),
    "failed": ("Failed", "Warning"),
    "gated": ("Gated", "Warning"),
    "winner": ("Winner", "Normal"),
    "lost": ("Lost", "Normal"),
    "promoted": ("Promoted", "Normal"),
    "stopped": ("Stopped", "Normal"),
    "mainline_failed": ("MainlineFailed", "Warning"),
    "mainline_patched": ("MainlinePatched", "Normal"),
    "handed_over": ("MainlineServing", "Normal"),
    "rejected": ("Rejected", "Warning"),
    "deleting": ("Deleting", "Normal"),
    "notify_failed": ("NotificationFailed", "Warning"),
}


def event_body(obj: dict[str, Any], e: dict[str, Any], identity: str) -> dict[str, Any]:
    """The Event recording transition ``e`` on ``obj``."""
    reason, etype = EVENT_REASONS.get(e["type"], ("Transition", "Normal"))
    if e["type"] == "entered":
        reason = "Entered"
    meta = obj["metadata"]
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    msg = e.get("reason") or e["type"]
    if e.get("share") is not None:
        msg += f" (share {float(e['share']):.3g})"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": msg[:1024],
        "type": etype,
        "source": {"component": "bakeoff-controller"},
        "reportingComponent": "bakeoff.dev/controller",
        "reportingInstance": identity,
        "action": e["type"],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class EventRecorder:
    """Records transitions as Events, best effort."""

    def __init__(self, k: Clients) -> None:
        self.k = k

    def record(self, obj: dict[str, Any], e: dict[str, Any]) -> None:
        meta = obj["metadata"]
        try:
            self.k.core.create_namespaced_event(meta["namespace"], event_body(obj, e, self.k.identity))
        except Exception as ex:  # noqa: BLE001 - an Event is best effort; the status has the record
            self.k.metrics.api_errors.labels("event").inc()
            log.warning("event not recorded", object=meta["name"], error=api_error_message(ex))
