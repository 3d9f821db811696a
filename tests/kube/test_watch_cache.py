"""The one list-then-watch cache (bakeoff.common.watch), against a real kube-apiserver.

The router's cluster mode and the controller both keep their view of the
cluster in a ``WatchCache``; its relist on 410 Gone, its resync (a watch the
server ends resumes without a list; a list after an outage replaces the
store) and its back-off are tested here once, for both.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

kubernetes = pytest.importorskip("kubernetes")
kclient = kubernetes.client

from bakeoff.common import watch as cw  # noqa: E402
from tests.conftest import eventually  # noqa: E402

NS_PREFIX = "watch"


def until(cond, what: str, timeout: float = 60.0) -> None:
    eventually(cond, what=what, timeout=timeout)


class Logs:
    """Stands in for the structlog logger: records (level, event, fields)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.records.append(("info", event, kw))

    def warning(self, event: str, **kw: Any) -> None:
        self.records.append(("warning", event, kw))

    def events(self, event: str) -> list[dict[str, Any]]:
        return [kw for _, e, kw in list(self.records) if e == event]


class Proxy:
    """A TCP relay on 127.0.0.1 to the API server that can be cut (as an outage) and restored."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(16)
        self.port = ls.getsockname()[1]
        self.listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def cut(self) -> None:
        assert self.listener is not None
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not, on Linux)
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                client, _ = ls.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def configmap(core, ns: str, name: str) -> None:
    core.create_namespaced_config_map(ns, {"metadata": {"name": name}, "data": {"k": "v"}})


def names(cache: cw.WatchCache) -> set[str]:
    return {name for _, name in list(cache.items)}


def started(api, ns: str, **kw: Any) -> tuple[cw.WatchCache, Logs, list[dict[str, Any]], list[str | None]]:
    """A cache of the ConfigMaps of ns; the watch requests it made and the errors it reported."""
    core = kclient.CoreV1Api(api)
    requests: list[dict[str, Any]] = []
    errors: list[str | None] = []
    rewrite = kw.pop("rewrite", None)

    def list_fn(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("watch"):
            if rewrite is not None:
                rewrite(kwargs)
            requests.append(dict(kwargs))
        return core.list_namespaced_config_map(*args, **kwargs)

    logs = Logs()
    cache = cw.WatchCache("configmaps", list_fn, lambda: None, on_error=errors.append, logger=logs, namespace=ns)
    cache.start()
    until(cache.synced.is_set, "the first list")
    return cache, logs, requests, errors


def compact_etcd(kube) -> None:
    """Compact the test cluster's etcd at its current revision: older resourceVersions are gone (410)."""
    pid = (Path(kube.state_dir) / "etcd.pid").read_text().strip()
    args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    url = next(a.split("=", 1)[1] for a in args if a.startswith("--listen-client-urls=")).split(",")[0]

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    revision = post("/v3/kv/range", {"key": "YQ=="})["header"]["revision"]
    post("/v3/kv/compaction", {"revision": revision})


def test_follows_changes_and_lists_again_on_410(kube, ns):
    # scripts/kube-test-cluster.sh serves ConfigMaps without the watch cache, so a compacted
    # resourceVersion is answered by etcd: 410 Gone, as after a long outage or a slow consumer.
    core = kclient.CoreV1Api(kube.api)
    configmap(core, ns, "a")
    expired: list[str] = []

    def expire_first_watch(kwargs: dict[str, Any]) -> None:
        if not expired:  # between the list and the first watch: a change, then the history is compacted
            expired.append(kwargs["resource_version"])
            core.patch_namespaced_config_map("a", ns, {"data": {"k": "changed before the watch"}})
            configmap(core, ns, "created-before-the-watch")
            compact_etcd(kube)  # beyond the first change: the watch cannot start from the list's version

    cache, logs, requests, _ = started(kube.api, ns, rewrite=expire_first_watch)
    try:
        until(lambda: cache.lists >= 2, "a list after the 410")
        assert logs.events("watch expired; listing again"), logs.records
        assert not logs.events("API server watch failed; retrying"), "a 410 lists again at once, not after a back-off"
        assert (cache.get(ns, "a") or {}).get("data") == {"k": "changed before the watch"}, "the change the 410 hid"
        assert "created-before-the-watch" in names(cache)
        configmap(core, ns, "b")
        until(lambda: names(cache) >= {"a", "b"}, "the new ConfigMap b")
        core.delete_namespaced_config_map("a", ns)
        until(lambda: "a" not in names(cache), "ConfigMap a gone")
        core.patch_namespaced_config_map("b", ns, {"data": {"k": "w"}})
        until(lambda: (cache.get(ns, "b") or {}).get("data") == {"k": "w"}, "the change to b")
        assert cache.lists == 2, "changes arrive by the watch, not by listing again"
    finally:
        cache.stop()


def test_a_watch_the_server_ends_resumes_without_listing(kube, ns, monkeypatch):
    monkeypatch.setattr(cw, "WATCH_SECONDS", 1)  # the API server ends each watch after a second
    core = kclient.CoreV1Api(kube.api)
    cache, _, requests, errors = started(kube.api, ns)
    try:
        until(lambda: len(requests) >= 3, "three watches", timeout=90)
        configmap(core, ns, "late")
        until(lambda: "late" in names(cache), "the ConfigMap created after the watch was resumed")
        assert cache.lists == 1
        assert errors == [None]  # the first list; no failure
        assert all(r["resource_version"] for r in requests), "every watch resumes from a resourceVersion"
        versions = [int(r["resource_version"]) for r in requests]
        assert versions == sorted(versions)
    finally:
        cache.stop()


def test_backs_off_while_the_api_server_is_away_then_resyncs(kube, ns, monkeypatch):
    monkeypatch.setattr(cw, "BACKOFF_MIN", 0.2)
    core = kclient.CoreV1Api(kube.api)
    for name in ("kept", "deleted-while-away"):
        configmap(core, ns, name)
    url = urlsplit(kube.url)
    proxy = Proxy((url.hostname, url.port))
    conf = kube.api.configuration.__class__()
    conf.host = f"https://127.0.0.1:{proxy.port}"
    conf.ssl_ca_cert = kube.api.configuration.ssl_ca_cert
    conf.api_key = dict(kube.api.configuration.api_key)
    conf.api_key_prefix = dict(kube.api.configuration.api_key_prefix)
    via_proxy = kclient.ApiClient(conf)
    cache, logs, _, errors = started(via_proxy, ns)
    try:
        assert names(cache) == {"kept", "deleted-while-away"}
        cut_at = time.monotonic()
        proxy.cut()
        until(lambda: len(logs.events("API server watch failed; retrying")) >= 4, "four failed attempts")
        retries = [kw["retry_in"] for kw in logs.events("API server watch failed; retrying")]
        assert retries[:4] == [0.2, 0.4, 0.8, 1.6], retries  # doubling from BACKOFF_MIN
        assert time.monotonic() - cut_at >= 0.8 * (0.2 + 0.4 + 0.8), "the attempts waited their delays"
        assert [e for e in errors if e is not None], errors
        assert cache.lists == 1

        core.delete_namespaced_config_map("deleted-while-away", ns)  # missed by the watch: only a list sees it
        configmap(core, ns, "created-while-away")
        proxy.restore()
        until(lambda: cache.lists >= 2, "a list once the API server is back")
        until(lambda: errors[-1] is None, "the error cleared")
        assert names(cache) == {"kept", "created-while-away"}

        n = len(logs.events("API server watch failed; retrying"))
        proxy.cut()
        until(lambda: len(logs.events("API server watch failed; retrying")) > n, "a failure after the resync")
        assert logs.events("API server watch failed; retrying")[n]["retry_in"] == 0.2, "the back-off starts over"
    finally:
        cache.stop()
        proxy.cut()
        via_proxy.close()


def test_stop_ends_the_watch_at_once(kube, ns):
    cache, _, _, _ = started(kube.api, ns)
    until(lambda: cache._resp is not None, "the watch's response")  # the namespace is quiet: no event will come
    t0 = time.monotonic()
    cache.stop()
    ended = cache.join(timeout=30)
    took = time.monotonic() - t0
    assert ended, f"the watch thread still runs {took:.0f}s after stop() (WATCH_SECONDS={cw.WATCH_SECONDS})"
