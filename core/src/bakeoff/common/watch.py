"""One list-then-watch cache of a Kubernetes resource, for the router and the controller alike.

A ``WatchCache`` lists its resource once, keeps the items in memory, then
watches from the list's resourceVersion:

* a watch the server ends (``timeout_seconds``) is resumed from the last
  resourceVersion seen, bookmarks included: no list, nothing missed;
* an expired resourceVersion (410 Gone) lists again at once;
* any other failure (connection refused or reset, TLS, a 5xx, RBAC) lists
  again after a growing, jittered delay (``BACKOFF_MIN`` doubling up to
  ``BACKOFF_MAX``), reset by the next successful list.  A list replaces the whole
  store (a resync), so objects deleted while the API server was away are
  gone from the cache too.

``on_change()`` runs after every list and every added, modified or deleted
object; ``on_error(message)`` after every failure, and ``on_error(None)``
after each successful list.  Both run in the watch thread: callers hand over
to their event loop themselves.  ``stop()`` ends the watch at once by shutting
its connection down, rather than leaving it open until the next event or the
server's timeout.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from typing import Any

import structlog

from bakeoff.common.kube import api_error_message

WATCH_SECONDS = 300  # server-side watch timeout; the watch is then resumed from its resourceVersion
LIST_TIMEOUT = (10, 60)  # (connect, read) seconds of a list
BACKOFF_MIN, BACKOFF_MAX = 0.5, 30.0

Key = tuple[str, str]  # (namespace, name)


class WatchCache:
    def __init__(
        self,
        what: str,
        list_fn: Callable[..., Any],
        on_change: Callable[[], None],
        *,
        on_error: Callable[[str | None], None] | None = None,
        logger: Any = None,
        log_fields: dict[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        self.what, self.list_fn, self.kw, self.on_change = what, list_fn, kw, on_change
        self.on_error = on_error
        self.log = logger or structlog.get_logger("bakeoff.common.watch")
        self.log_fields = log_fields or {}
        self.items: dict[Key, dict[str, Any]] = {}
        self.synced = threading.Event()
        self.lock = threading.Lock()
        self.lists = 0  # successful lists so far: the first, then one per 410 or failure
        self._stopping = threading.Event()
        self._resp: Any = None  # the open watch response, to shut down on stop()
        self._thread: threading.Thread | None = None

    # -- life cycle --------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"watch-{self.what}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the watch now: its thread returns promptly and the API server sees the connection close."""
        self._stopping.set()
        resp = self._resp
        if resp is not None:
            try:
                resp.shutdown()  # urllib3 >= 2.3: unblocks the watch thread's read
            except Exception:  # noqa: BLE001 - already closed or released; the thread ends on its own
                pass

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the watch thread to end; whether it has."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    # -- reading -----------------------------------------------------------
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

    # -- the watch thread ----------------------------------------------------
    def _loop(self) -> None:
        from kubernetes.client.exceptions import ApiException

        rv: str | None = None  # the resourceVersion to watch from; None: list first
        delay = BACKOFF_MIN
        while not self._stopping.is_set():
            lists = self.lists
            try:
                rv = self._once(rv)  # returns when the server ends the watch; rv is where to resume
                delay = BACKOFF_MIN
                continue
            except ApiException as e:
                if e.status == 410:
                    self.log.info("watch expired; listing again", watch=self.what, **self.log_fields)
                    rv = None
                    continue
                error = f"{e.status} {api_error_message(e)}"
            except Exception as e:  # noqa: BLE001 - connection refused/reset, TLS, timeouts: retry
                error = short_error(e)
            if self._stopping.is_set():
                return
            rv = None  # list again once reconnected: nothing missed, and the error clears
            if self.lists > lists:  # it listed, then failed: a new outage, whose back-off starts over
                delay = BACKOFF_MIN
            if self.on_error is not None:
                self.on_error(error)
            self.log.warning("API server watch failed; retrying", watch=self.what, error=error,
                             retry_in=round(delay, 1), **self.log_fields)  # fmt: skip
            self._stopping.wait(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, BACKOFF_MAX)

    def _once(self, rv: str | None) -> str | None:
        from kubernetes import watch

        if rv is None:
            resp = self.list_fn(**self.kw, _preload_content=False, _request_timeout=LIST_TIMEOUT)
            listed = json.loads(resp.data)
            items = {_key(o): o for o in listed.get("items") or []}
            with self.lock:
                self.items = items
            rv = (listed.get("metadata") or {}).get("resourceVersion")
            self.lists += 1
            self.synced.set()
            if self.on_error is not None:
                self.on_error(None)
            self.on_change()
        if self._stopping.is_set():
            return rv

        def opened(*args: Any, **kwargs: Any) -> Any:  # the watch's response, kept so stop() can shut it
            self._resp = self.list_fn(*args, **kwargs)
            if self._stopping.is_set():
                self.stop()
            return self._resp

        w = watch.Watch()
        try:
            for ev in w.stream(
                opened,
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
        except Exception:
            if self._stopping.is_set():  # our own shutdown of the connection
                return rv
            raise
        finally:
            self._resp = None
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


def short_error(e: BaseException) -> str:
    """urllib3 wraps the cause in long reprs; the innermost reason says it best."""
    reason: Any = e
    while getattr(reason, "reason", None) is not None and reason.reason is not reason:
        reason = reason.reason
    text = " ".join(str(reason).split())
    for marker in ("Failed to establish a new connection: ", "Read timed out", "Connection aborted"):
        i = text.find(marker)
        if i >= 0:
            text = text[i:].removeprefix("Failed to establish a new connection: ")
            break
    return text[:300] or type(e).__name__
