"""List-then-watch caches of the resources the controller reads, so a pass reads memory, not the API server.

Each cache lists its resource once, then watches from the list's
resourceVersion; a watch the server ends is resumed from the last version
seen, and an expired one (410 Gone) or a broken connection lists again (with
a growing, jittered delay while the API server is away).  Every change calls
``on_change`` so the controller passes at once instead of polling.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from typing import Any

import structlog

from bakeoff.common.kube import api_error_message

log = structlog.get_logger("bakeoff.controller.kube")

WATCH_SECONDS = 300
BACKOFF_MIN, BACKOFF_MAX = 0.5, 30.0

Key = tuple[str, str]


class WatchCache:
    def __init__(self, what: str, list_fn: Callable[..., Any], on_change: Callable[[], None], **kw: Any) -> None:
        self.what, self.list_fn, self.kw, self.on_change = what, list_fn, kw, on_change
        self.items: dict[Key, dict[str, Any]] = {}
        self.synced = threading.Event()
        self.lock = threading.Lock()
        self._stopping = threading.Event()
        self._watch: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"watch-{self.what}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        w = self._watch
        if w is not None:
            w.stop()

    def list(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.items.values())

    def get(self, ns: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            return self.items.get((ns, name))

    def put(self, obj: dict[str, Any]) -> None:
        """An object this process just wrote (newer than the cache until its watch event arrives)."""
        meta = obj.get("metadata") or {}
        with self.lock:
            old = self.items.get((meta.get("namespace", ""), meta.get("name", "")))
            if old is None or _newer(meta.get("resourceVersion"), (old.get("metadata") or {}).get("resourceVersion")):
                self.items[(meta.get("namespace", ""), meta.get("name", ""))] = obj

    def _loop(self) -> None:
        from kubernetes.client.exceptions import ApiException

        rv: str | None = None
        delay = BACKOFF_MIN
        while not self._stopping.is_set():
            try:
                rv = self._once(rv)
                delay = BACKOFF_MIN
                continue
            except ApiException as e:
                if e.status == 410:
                    log.info("watch expired; listing again", watch=self.what)
                    rv = None
                    continue
                error = f"{e.status} {api_error_message(e)}"
            except Exception as e:  # noqa: BLE001 - connection refused/reset, TLS, timeouts: retry
                error = str(e)[:300]
            if self._stopping.is_set():
                return
            rv = None
            log.warning("API server watch failed; retrying", watch=self.what, error=error, retry_in=round(delay, 1))
            self._stopping.wait(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, BACKOFF_MAX)

    def _once(self, rv: str | None) -> str | None:
        from kubernetes import watch

        if rv is None:
            resp = self.list_fn(**self.kw, _preload_content=False, _request_timeout=(10, 60))
            listed = json.loads(resp.data)
            items = {_key(o): o for o in listed.get("items") or []}
            with self.lock:
                self.items = items
            rv = (listed.get("metadata") or {}).get("resourceVersion")
            self.synced.set()
            self.on_change()
        w = watch.Watch()
        self._watch = w
        try:
            for ev in w.stream(
                self.list_fn,
                resource_version=rv,
                timeout_seconds=WATCH_SECONDS,
                allow_watch_bookmarks=True,
                _request_timeout=(10, WATCH_SECONDS + 30),
                **self.kw,
            ):
                obj = ev.get("raw_object") or {}
                new_rv = (obj.get("metadata") or {}).get("resourceVersion")
                if ev["type"] in ("ADDED", "MODIFIED"):
                    with self.lock:
                        self.items[_key(obj)] = obj
                    self.on_change()
                elif ev["type"] == "DELETED":
                    with self.lock:
                        self.items.pop(_key(obj), None)
                    self.on_change()
                if new_rv:
                    rv = new_rv
                if self._stopping.is_set():
                    break
        finally:
            self._watch = None
        return rv


def _key(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace", ""), meta.get("name", ""))


def _newer(a: Any, b: Any) -> bool:
    """resourceVersions are opaque, but etcd's are integers: compare them when they are."""
    try:
        return int(a) >= int(b)
    except (TypeError, ValueError):
        return True


def matches(labels: dict[str, str] | None, selector: dict[str, str]) -> bool:
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())
