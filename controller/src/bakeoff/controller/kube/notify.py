"""Webhook notifications (``spec.notify``) from the Kubernetes controller.

After a pass has recorded its transitions (status first, then Events), the
ones that notify are queued on the shared :class:`~bakeoff.controller.notify.Dispatcher`,
which delivers them from its own thread: a failing or hanging endpoint never
delays a pass. A webhook's URL and signing key come from a Secret in the
Bakeoff's namespace (``urlFrom.secretKeyRef``, ``keyFrom.secretKeyRef``), read
when there is something to send; a missing Secret or key, or a URL that is not
http(s), is a Warning Event ``NotificationFailed`` on the Bakeoff naming the
field and the Secret, and the log line says the same.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import structlog

from bakeoff.common.kube import api_error_message
from bakeoff.controller.kube.context import Clients, Pass
from bakeoff.controller.kube.events import EventRecorder
from bakeoff.controller.notify import Dispatcher, NotifyError, notification, resolve

log = structlog.get_logger("bakeoff.controller.kube")


class Notifier:
    def __init__(self, k: Clients, events: EventRecorder) -> None:
        self.k = k
        self.events = events
        self.dispatcher: Dispatcher | None = None  # started with the first notification

    def send(self, p: Pass, transitions: list[dict[str, Any]]) -> None:
        specs = p.bres.notify
        if not specs:
            return
        commits = {
            v["metadata"]["name"]: ((v.get("spec") or {}).get("change") or {}).get("commit") for v in p.view.variants
        }
        out = []
        for e in transitions:
            n = notification(e, bakeoff=p.name, namespace=p.ns)
            if n is not None:
                n["commit"] = n["commit"] or commits.get(n["variant"] or "")
                out.append(n)
        if not out:
            return
        origin = f"Bakeoff {p.ns}/{p.name}"
        secrets: dict[str, Any] = {}

        def read(ref: Any, where: str) -> str:
            name, key = ref.secret
            if name not in secrets:
                try:
                    secrets[name] = self.k.core.read_namespaced_secret(name, p.ns)
                except Exception as ex:  # noqa: BLE001 - named in the message, the pass goes on
                    self.k.metrics.api_errors.labels("secret").inc()
                    hint = (
                        " (the chart grants get on the Secrets named in controller.notifySecrets)"
                        if getattr(ex, "status", None) == 403
                        else ""
                    )
                    raise NotifyError(
                        f"{origin}: {where}.secretKeyRef: cannot read Secret {name!r}: {api_error_message(ex)}{hint}"
                    ) from None
            data = secrets[name].data or {}
            if key not in data:
                raise NotifyError(
                    f"{origin}: {where}.secretKeyRef: Secret {name!r} has no key {key!r}"
                    f" (keys: {', '.join(sorted(data)) or 'none'})"
                )
            try:
                return base64.b64decode(data[key]).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise NotifyError(f"{origin}: {where}.secretKeyRef: Secret {name!r} key {key!r} is not text") from None

        hooks = []
        for s in specs:
            try:
                hooks.append(resolve(s, read, origin))
            except NotifyError as e:
                log.warning("notification not sent", bakeoff=p.name, namespace=p.ns, error=str(e))
                self.events.record(p.obj, {"type": "notify_failed", "variant": None, "reason": str(e)})
        if not hooks:
            return
        if self.dispatcher is None:
            self.dispatcher = Dispatcher()
        for n in out:
            self.dispatcher.send(hooks, n)

    def close(self, grace: float = 5.0) -> None:
        if self.dispatcher is not None:
            self.dispatcher.close(grace)
            self.dispatcher = None
