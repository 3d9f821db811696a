"""Webhook notifications (``spec.notify``), sent off the decision path.

A bake-off's decisions -- a candidate admitted, rolled back, promoted, the run
stopped, a winner awaiting approval -- are posted to each configured webhook:

- ``format: json`` (the default): a generic JSON object (``bakeoff.notification/v1``),
  signed with HMAC-SHA256 when a key is given: ``Bakeoff-Timestamp: <unix seconds>``
  and ``Bakeoff-Signature: v1=<hex of HMAC-SHA256(key, "<timestamp>.<body>")>``
  (docs/resources.md, "Notifications", says how to verify it);
- ``format: slack``: ``{"text": ...}``, what a Slack (or Mattermost, Teams
  workflow) incoming webhook accepts.

The runner and the Kubernetes controller only *enqueue*: a :class:`Dispatcher`
owns a thread with its own event loop, one bounded queue and one worker per
webhook, so a failing or hanging endpoint never delays a decision or the next
look. A delivery is retried with exponential backoff (connection errors,
timeouts, 408, 429 and 5xx) up to ``retries`` times and then abandoned; a full
queue drops the oldest notification. Both are logged and counted
(:attr:`Dispatcher.counts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

log = structlog.get_logger("bakeoff.controller.notify")

# the journal's transition types that notify, and the name each is sent as
EVENT_NAMES = {
    "admitted": "admitted",
    "rolled_back": "rolled_back",
    "failed": "rolled_back",  # a candidate whose workload failed leaves the split: a rollback
    "promoted": "promoted",
    "stopped": "stopped",
    "winner": "awaiting_approval",
}
EVENTS: tuple[str, ...] = ("admitted", "rolled_back", "promoted", "stopped", "awaiting_approval")
QUEUE_LIMIT = 256  # notifications waiting per webhook; beyond it the oldest is dropped
BACKOFF_BASE = 0.5  # seconds before the first retry; doubled each time
BACKOFF_MAX = 30.0
SIGNATURE_HEADER = "Bakeoff-Signature"
TIMESTAMP_HEADER = "Bakeoff-Timestamp"


class NotifyError(ValueError):
    """A webhook's URL or key cannot be used; the message names the field and where it came from."""


@dataclass(frozen=True)
class Webhook:
    """One resolved ``spec.notify[i]``: where to post, how, and with which key."""

    url: str
    format: str = "json"  # json | slack
    key: bytes | None = None
    events: frozenset[str] = frozenset(EVENTS)
    timeout: float = 5.0
    retries: int = 5
    where: str = "spec.notify[0]"  # for messages

    def wants(self, event: str) -> bool:
        return event in self.events


def check_url(url: str, where: str) -> str:
    """A webhook URL must be http:// or https:// with a host."""
    from urllib.parse import urlsplit

    u = url.strip()
    parts = urlsplit(u)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise NotifyError(f"{where} must be an http:// or https:// URL, got {url!r}")
    return u


def notification(e: dict[str, Any], *, bakeoff: str, namespace: str | None = None) -> dict[str, Any] | None:
    """The JSON payload for journal record ``e``, or None when its type does not notify."""
    event = EVENT_NAMES.get(str(e.get("type")))
    if event is None:
        return None
    at = float(e.get("at") or time.time())
    return {
        "format": "bakeoff.notification/v1",
        "id": uuid.uuid4().hex,
        "event": event,
        "bakeoff": bakeoff,
        "namespace": namespace,
        "variant": e.get("variant") or (e.get("winner") if event == "promoted" else None),
        "commit": e.get("commit"),
        "phase": e.get("phase"),
        "reason": e.get("reason") or "",
        "at": at,
        "time": datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


def slack_text(n: dict[str, Any]) -> str:
    what = {
        "admitted": "admitted",
        "rolled_back": "rolled back",
        "promoted": "promoted",
        "stopped": "stopped without a winner",
        "awaiting_approval": "won; awaiting approval",
    }.get(n["event"], n["event"])
    where = f"{n['namespace']}/{n['bakeoff']}" if n.get("namespace") else n["bakeoff"]
    who = f"*{n['variant']}*" + (f" ({n['commit']})" if n.get("commit") else "") if n.get("variant") else "the run"
    if n["event"] == "stopped":
        who = "the run"
    return f"bakeoff {where}: {who} {what}" + (f": {n['reason']}" if n.get("reason") else "")


def sign(key: bytes, timestamp: str, body: bytes) -> str:
    """``v1=`` and the hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``key``."""
    return "v1=" + hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def request_of(hook: Webhook, n: dict[str, Any], now: float | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers posted for notification ``n``."""
    doc = {"text": slack_text(n)} if hook.format == "slack" else n
    body = json.dumps(doc, separators=(",", ":"), default=str).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "bakeoff", "Bakeoff-Event": n["event"]}
    headers["Bakeoff-Delivery"] = n["id"]
    if hook.key:
        ts = str(int(now if now is not None else time.time()))
        headers[TIMESTAMP_HEADER] = ts
        headers[SIGNATURE_HEADER] = sign(hook.key, ts, body)
    return body, headers


@dataclass
class _Queue:
    hook: Webhook
    items: asyncio.Queue
    task: asyncio.Task | None = None


@dataclass
class Counts:
    sent: int = 0
    retried: int = 0
    abandoned: int = 0
    dropped: int = 0
    by_url: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, what: str, url: str) -> None:
        setattr(self, what, getattr(self, what) + 1)
        per = self.by_url.setdefault(url, {"sent": 0, "retried": 0, "abandoned": 0, "dropped": 0})
        per[what] += 1


class Dispatcher:
    """Delivers notifications from its own thread and event loop; :meth:`send` never blocks."""

    def __init__(self, *, sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self.counts = Counts()
        self._sleep = sleep
        self._queues: dict[tuple[str, str, bytes | None], _Queue] = {}
        self._loop = asyncio.new_event_loop()
        self._session: Any = None
        self._closed = False
        self._thread = threading.Thread(target=self._loop.run_forever, name="bakeoff-notify", daemon=True)
        self._thread.start()

    # -- the caller's side (any thread) --------------------------------------------
    def send(self, hooks: list[Webhook], n: dict[str, Any]) -> None:
        """Queue ``n`` for every hook that wants its event; returns at once."""
        targets = [h for h in hooks if h.wants(n["event"])]
        if targets and not self._closed:
            self._loop.call_soon_threadsafe(self._enqueue, targets, n)

    def close(self, grace: float = 5.0) -> None:
        """Deliver what is queued within ``grace`` seconds, then abandon the rest and stop the thread."""
        if self._closed:
            return
        self._closed = True
        fut = asyncio.run_coroutine_threadsafe(self._drain(grace), self._loop)
        with contextlib.suppress(Exception):
            fut.result(grace + 5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # -- the dispatcher's loop -----------------------------------------------------
    def _enqueue(self, hooks: list[Webhook], n: dict[str, Any]) -> None:
        for h in hooks:
            key = (h.url, h.format, h.key)
            q = self._queues.get(key)
            if q is None:
                q = self._queues[key] = _Queue(h, asyncio.Queue(QUEUE_LIMIT))
            q.hook = h  # the latest settings (events, timeout, retries) of the same endpoint
            if q.items.full():
                old = q.items.get_nowait()
                q.items.task_done()
                self.counts.add("dropped", h.url)
                log.warning(
                    "notification dropped: queue full", webhook=h.where, notification=old["event"], limit=QUEUE_LIMIT
                )
            q.items.put_nowait(n)
            if q.task is None:
                q.task = self._loop.create_task(self._worker(q))

    async def _worker(self, q: _Queue) -> None:
        while True:
            n = await q.items.get()
            try:
                await self._deliver(q.hook, n)
            except asyncio.CancelledError:
                self.counts.add("abandoned", q.hook.url)
                log.warning("notification abandoned at shutdown", webhook=q.hook.where, notification=n["event"])
                q.items.task_done()
                raise
            except Exception as e:  # noqa: BLE001 - a notification never takes anything down
                self.counts.add("abandoned", q.hook.url)
                log.warning("notification abandoned", webhook=q.hook.where, notification=n["event"], error=str(e))
            q.items.task_done()

    async def _deliver(self, hook: Webhook, n: dict[str, Any]) -> None:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession()
        last = ""
        for attempt in range(hook.retries + 1):
            if attempt:
                self.counts.add("retried", hook.url)
                delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)
                await self._sleep(delay)
            body, headers = request_of(hook, n)
            try:
                async with self._session.post(
                    hook.url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=hook.timeout)
                ) as r:
                    await r.read()
                    if 200 <= r.status < 300:
                        self.counts.add("sent", hook.url)
                        log.info("notification sent", webhook=hook.where, notification=n["event"], attempts=attempt + 1)
                        return
                    last = f"HTTP {r.status}"
                    if not (r.status in (408, 429) or r.status >= 500):
                        break  # the endpoint refuses it: retrying will not help
            except TimeoutError:
                last = f"no answer within {hook.timeout:g}s"
            except aiohttp.ClientError as e:
                last = f"{type(e).__name__}: {e}"
        self.counts.add("abandoned", hook.url)
        log.warning(
            "notification abandoned",
            webhook=hook.where,
            notification=n["event"],
            variant=n.get("variant"),
            attempts=attempt + 1,
            error=last,
        )

    async def _drain(self, grace: float) -> None:
        pending = [q.items.join() for q in self._queues.values()]
        if pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*pending), grace)
        for q in self._queues.values():
            if q.task is not None:
                q.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await q.task
            while not q.items.empty():
                n = q.items.get_nowait()
                self.counts.add("abandoned", q.hook.url)
                log.warning("notification abandoned at shutdown", webhook=q.hook.where, notification=n["event"])
        if self._session is not None:
            await self._session.close()


def resolve(spec: Any, read: Callable[[Any, str], str], origin: str) -> Webhook:
    """A ``NotifySpec`` (bakeoff.controller.resources) made usable: its URL and key read through
    ``read(ref, where)`` (a Secret in a cluster; a variable or file locally) and the URL checked.
    Raises :class:`NotifyError` naming ``origin`` (the file or resource) and the field."""
    if spec.url is not None:
        url = spec.url
    else:
        where = f"{spec.where}.urlFrom"
        url = read(spec.url_from, where).strip()
        try:
            check_url(url, "")
        except NotifyError:
            shown = url if len(url) < 16 else url[:12] + "..."
            raise NotifyError(
                f"{origin}: {where} ({ref_text(spec.url_from)}) must hold an http:// or https:// URL, got {shown!r}"
            ) from None
    key = None
    if spec.key_from is not None:
        key = read(spec.key_from, f"{spec.where}.keyFrom").strip().encode()
        if not key:
            raise NotifyError(f"{origin}: {spec.where}.keyFrom ({ref_text(spec.key_from)}) is empty")
    return Webhook(url, spec.format, key, frozenset(spec.events), spec.timeout, spec.retries, f"{origin}: {spec.where}")


def ref_text(ref: Any) -> str:
    if ref.secret is not None:
        return f"Secret {ref.secret[0]!r} key {ref.secret[1]!r}"
    return f"environment variable {ref.env}" if ref.env else f"file {ref.file}"


def local_reader(base_dir: Any, origin: str) -> Callable[[Any, str], str]:
    """Reads a local ``ValueRef``: an environment variable, or a file relative to ``base_dir``."""
    import os
    from pathlib import Path

    def read(ref: Any, where: str) -> str:
        if ref.env:
            val = os.environ.get(ref.env)
            if val is None:
                raise NotifyError(f"{origin}: {where}.env: the environment variable {ref.env} is not set")
            return val
        path = Path(base_dir) / str(ref.file)
        try:
            return path.read_text()
        except OSError as e:
            raise NotifyError(f"{origin}: {where}.file: cannot read {path} ({e.strerror or e})") from None

    return read
