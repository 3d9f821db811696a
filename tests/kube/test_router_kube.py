"""`bakeoff router --kubernetes` against a real kube-apiserver (router/src/bakeoff/router/cluster.py).

The routers are real subprocesses; the upstreams are real HTTP servers on this
machine's non-loopback address (the API server refuses loopback addresses in
EndpointSlices).  No controller-manager runs, so the tests write the
EndpointSlices themselves, as the EndpointSlice controller would, and the
Bakeoff's status.routing, as the bakeoff controller would.
"""

from __future__ import annotations

import asyncio
import collections
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web

from bakeoff.controller.platforms.local import free_port
from tests.conftest import eventually_async

from .conftest import GROUP, ROOT, VERSION, start_app

kclient = pytest.importorskip("kubernetes.client")

NS = "router-kube"
TOKEN = "router-kube-token"
BAKEOFF_BIN = ROOT / ".venv" / "bin" / "bakeoff"
SERVICE_LABEL = "kubernetes.io/service-name"


# -- the cluster side ------------------------------------------------------
class Apis:
    def __init__(self, api) -> None:
        self.core = kclient.CoreV1Api(api)
        self.custom = kclient.CustomObjectsApi(api)
        self.discovery = kclient.DiscoveryV1Api(api)

    def create_bakeoff(self, name: str, stickiness: object = "default") -> None:
        spec: dict = {
            "mainline": {"deployment": "shop"},
            "judge": {"objective": {"metric": "conversion", "kind": "proportion", "direction": "higher"}},
        }
        if stickiness != "default":
            spec["routing"] = {"stickiness": stickiness}
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Bakeoff", "metadata": {"name": name}, "spec": spec}
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NS, "bakeoffs", body)

    def set_routing(
        self, name: str, version: int, variants: list[tuple[str, str, float]], commits: dict[str, str] | None = None
    ) -> None:
        """Write status.routing as the controller does: [(variant, service, weight)] (+ commits by name)."""
        entries = [{"name": v, "service": s, "port": 8080, "weight": w} for v, s, w in variants]
        for e in entries:
            if (commits or {}).get(e["name"]):
                e["commit"] = commits[e["name"]]
        routing = {"version": version, "variants": entries}
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, NS, "bakeoffs", name, {"status": {"routing": routing}},
            _content_type="application/merge-patch+json",
        )  # fmt: skip

    def put_slice(self, name: str, service: str, ip: str, port: int, ready: bool | None = True,
                  port_name: str = "http", app_protocol: str | None = None) -> None:  # fmt: skip
        """An EndpointSlice of `service` with one endpoint ip:port (ready True/False, or None: no condition);
        ``app_protocol``: the port's appProtocol, as the EndpointSlice controller copies it from the Service."""
        endpoint: dict = {"addresses": [ip]}
        if ready is not None:
            endpoint["conditions"] = {"ready": ready}
        body = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": name, "labels": {SERVICE_LABEL: service}},
            "addressType": "IPv4",
            "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
            "endpoints": [endpoint],
        }
        if app_protocol:
            body["ports"][0]["appProtocol"] = app_protocol
        try:
            old = self.discovery.read_namespaced_endpoint_slice(name, NS)
        except kclient.ApiException as e:
            if e.status != 404:
                raise
            self.discovery.create_namespaced_endpoint_slice(NS, body)
            return
        body["metadata"]["resourceVersion"] = old.metadata.resource_version
        self.discovery.replace_namespaced_endpoint_slice(name, NS, body)


@pytest.fixture(scope="module")
def apis(kube, crds) -> Apis:
    a = Apis(kube.api)
    try:
        a.core.create_namespace({"metadata": {"name": NS}})
    except kclient.ApiException as e:
        if e.status != 409:  # another module using these fixtures created it (test_router_stickiness.py)
            raise
    return a


@pytest.fixture(scope="module")
def host_ip() -> str:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("10.255.255.255", 1))  # no packet is sent; this only picks the outgoing interface
        ip = s.getsockname()[0]
    except OSError as e:
        pytest.fail(f"no non-loopback IPv4 address on this machine ({e}); EndpointSlices refuse 127.0.0.0/8")
    finally:
        s.close()
    if ip.startswith("127.") or ip == "0.0.0.0":
        pytest.fail(f"no non-loopback IPv4 address on this machine (got {ip}); EndpointSlices refuse 127.0.0.0/8")
    return ip


# -- upstreams ----------------------------------------------------------------
class Upstream:
    """An HTTP server on host_ip answering with its variant name (and its own id in X-Upstream)."""

    def __init__(self, variant: str, ident: str) -> None:
        self.variant = variant
        self.ident = ident
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, ip: str) -> Upstream:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(text=self.variant, headers={"X-Upstream": self.ident})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        self.runner, self.port = await start_app(app, ip)
        return self


@pytest.fixture
async def upstream(host_ip):
    started: list[Upstream] = []

    async def make(variant: str, ident: str | None = None) -> Upstream:
        u = await Upstream(variant, ident or variant).start(host_ip)
        started.append(u)
        return u

    yield make
    for u in started:
        await u.runner.cleanup()


# -- router processes -----------------------------------------------------------
class RouterProc:
    def __init__(self, log_path: Path, args: list[str]) -> None:
        self.port = free_port()
        self.admin_port = free_port()
        self.log_path = log_path
        self.log = open(log_path, "wb")
        cmd = [str(BAKEOFF_BIN), "--log-json", "router", "--kubernetes", *args,
               "--listen", f"127.0.0.1:{self.port}", "--admin", f"127.0.0.1:{self.admin_port}"]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env=os.environ | {"BAKEOFF_ROUTER_TOKEN": TOKEN})  # fmt: skip

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    async def wait_up(self, timeout: float = 20) -> RouterProc:
        async with aiohttp.ClientSession() as s:

            async def up() -> bool:
                if self.proc.poll() is not None:
                    raise AssertionError(f"router exited ({self.proc.returncode}):\n{self.logs()}")
                async with s.get(f"{self.admin}/-/healthz") as r:
                    if r.status != 200:
                        return False
                # ...and the traffic port accepts (with --workers, once a worker listens).
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return True

            try:
                await eventually_async(up, what="the router up", timeout=timeout, retry=(aiohttp.ClientError, OSError))
            except AssertionError as e:
                if self.proc.poll() is not None:
                    raise
                raise AssertionError(f"router did not come up: {e}\n{self.logs()}") from None
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def router(tmp_path, kube):
    procs: list[RouterProc] = []

    async def make(bakeoff: str, *extra: str, kubeconfig: str | None = None) -> RouterProc:
        args = ["--bakeoff", bakeoff, "-n", NS, "--kubeconfig", kubeconfig or kube.kubeconfig, *extra]
        p = RouterProc(tmp_path / f"router-{len(procs)}.log", args)
        procs.append(p)
        return await p.wait_up()

    yield make
    for p in procs:
        p.stop()


async def routes(s: aiohttp.ClientSession, r: RouterProc) -> dict:
    async with s.get(f"{r.admin}/-/routes", headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def table(doc: dict) -> dict[str, tuple[float, list[str]]]:
    return {v["name"]: (v["weight"], sorted(v["upstreams"])) for v in doc["variants"]}


async def wait_routes(r: RouterProc, pred, timeout: float = 10, what: str = "") -> dict:
    async with aiohttp.ClientSession() as s:
        try:
            return await eventually_async(
                lambda: routes(s, r), until=pred, what=what or "the expected table", timeout=timeout, interval=0.02
            )
        except AssertionError as e:
            raise AssertionError(f"router never showed it: {e}\n{r.logs()}") from None


async def readyz(r: RouterProc) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{r.admin}/-/readyz") as resp:
            return resp.status, await resp.text()


async def send(r: RouterProc, n: int, user=None, concurrency: int = 16) -> list[tuple[int, str, str]]:
    """n GETs through the router: (status, body, X-Upstream); user(i) gives the X-User-Id, or None."""
    out: list[tuple[int, str, str]] = [(0, "", "")] * n
    queue = iter(range(n))
    async with aiohttp.ClientSession() as s:

        async def worker() -> None:
            for i in queue:
                headers = {"X-User-Id": user(i)} if user else {}
                async with s.get(f"{r.url}/p/{i}", headers=headers) as resp:
                    out[i] = (resp.status, await resp.text(), resp.headers.get("X-Upstream", ""))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


def within(count: int, n: int, p: float, sigmas: float = 5) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


# -- tests ----------------------------------------------------------------------
async def test_split_follows_status_routing(apis, upstream, router, host_ip):
    a, b = await upstream("mainline"), await upstream("fast")
    apis.put_slice("split-mainline-1", "split-mainline", host_ip, a.port)
    apis.put_slice("split-fast-1", "split-fast", host_ip, b.port)
    apis.create_bakeoff("split")
    apis.set_routing(
        "split", 1, [("mainline", "split-mainline", 0.5), ("fast", "split-fast", 0.5)], commits={"fast": "f4st123"}
    )
    r = await router("split")
    doc = await wait_routes(r, lambda d: d["version"] == 1)
    assert table(doc) == {"mainline": (0.5, [f"{host_ip}:{a.port}"]), "fast": (0.5, [f"{host_ip}:{b.port}"])}
    # the commit each entry carries is the variant's version (service.version on the router's spans)
    assert {v["name"]: v.get("version") for v in doc["variants"]} == {"mainline": None, "fast": "f4st123"}
    assert (await readyz(r))[0] == 200

    n = 2000
    got = await send(r, n)
    assert {s for s, _, _ in got} == {200}
    counts = collections.Counter(body for _, body, _ in got)
    assert set(counts) == {"mainline", "fast"}
    assert within(counts["fast"], n, 0.5), counts

    apis.set_routing("split", 2, [("mainline", "split-mainline", 0.8), ("fast", "split-fast", 0.2)])
    await wait_routes(r, lambda d: d["version"] == 2)
    got = await send(r, n)
    counts = collections.Counter(body for _, body, _ in got)
    assert within(counts["fast"], n, 0.2), counts
    print(f"\nsplit 0.8/0.2 over {n} requests: {dict(counts)}")

    # The table is the API server's: a PUT would be overwritten, so it is refused.
    async with aiohttp.ClientSession() as s:
        body = {"variants": [{"name": "fast", "upstreams": [f"{host_ip}:{b.port}"], "weight": 1}]}
        async with s.put(f"{r.admin}/-/routes", json=body, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 409
            assert "status.routing" in (await resp.json())["error"]
        assert table(await routes(s, r))["fast"][0] == 0.2


async def test_app_protocol_h2c_on_a_real_endpoint_slice_carries_grpc(apis, router, host_ip):
    """Issue 22 item 7 through the real API server: the slice port's appProtocol (kubernetes.io/h2c, as
    the EndpointSlice controller copies it from the Service port) makes the variant h2c, and a gRPC
    call goes through the router to the grpcio server behind it; the same server behind a port with
    no appProtocol is spoken to in HTTP/1.1, which gRPC cannot use."""
    import grpc

    from tests.router import grpc_peer

    srv, port = grpc_peer.start(host=host_ip, name="grpc-mainline")
    try:
        apis.put_slice("grpc-mainline-1", "grpc-mainline", host_ip, port, port_name="grpc",
                       app_protocol="kubernetes.io/h2c")  # fmt: skip
        apis.create_bakeoff("grpc")
        apis.set_routing("grpc", 1, [("mainline", "grpc-mainline", 1.0)])
        r = await router("grpc")
        doc = await wait_routes(r, lambda d: d["version"] == 1)
        assert [(v["name"], v.get("protocol")) for v in doc["variants"]] == [("mainline", "h2c")], doc
        with grpc.insecure_channel(f"127.0.0.1:{r.port}") as ch:
            reply, call = grpc_peer.method(ch, "unary_unary", "Unary").with_call(b"hi", timeout=30)
        assert reply == b"echo:hi" and dict(call.initial_metadata())["x-served-by"] == "grpc-mainline"
        # the same port without appProtocol: HTTP/1.1 to a gRPC server, the call fails
        apis.put_slice("grpc-mainline-1", "grpc-mainline", host_ip, port, port_name="grpc")
        apis.set_routing("grpc", 2, [("mainline", "grpc-mainline", 1.0)])
        doc = await wait_routes(r, lambda d: d["version"] == 2 and not d["variants"][0].get("protocol"))
        with grpc.insecure_channel(f"127.0.0.1:{r.port}") as ch, pytest.raises(grpc.RpcError):
            grpc_peer.method(ch, "unary_unary", "Unary")(b"hi", timeout=30)
    finally:
        srv.stop(0)


async def test_rollback_reaches_two_replicas_sticky_users_stay(apis, upstream, router, host_ip):
    ups = {name: await upstream(name) for name in ("mainline", "c1", "c2")}
    for name, u in ups.items():
        apis.put_slice(f"rb-{name}-1", f"rb-{name}", host_ip, u.port)
    apis.create_bakeoff("rb")  # stickiness: the CRD's default, header X-User-Id
    apis.set_routing("rb", 4, [("mainline", "rb-mainline", 0.5), ("c1", "rb-c1", 0.3), ("c2", "rb-c2", 0.2)])
    one = await router("rb")
    two = await router("rb", "--workers", "2")  # the supervisor's fan-out to its workers
    for r in (one, two):
        await wait_routes(r, lambda d: d["version"] == 4 and len(d["variants"]) == 3)

    users = [f"user-{i}" for i in range(400)]
    before = [body for _, body, _ in await send(one, len(users), user=lambda i: users[i])]
    assert set(before) == {"mainline", "c1", "c2"}
    again = [body for _, body, _ in await send(two, len(users), user=lambda i: users[i])]
    assert again == before  # both replicas (and both workers) put every user in the same place

    # Roll c2 back: the controller drops it from status.routing (the others keep their ratio, 5:3).
    t0 = time.monotonic()
    apis.set_routing("rb", 5, [("mainline", "rb-mainline", 0.625), ("c1", "rb-c1", 0.375)])
    seen: dict[int, float] = {}
    async with aiohttp.ClientSession() as s:

        async def took_rollback() -> dict[int, float]:
            docs = await asyncio.gather(routes(s, one), routes(s, two))
            for i, d in enumerate(docs):
                if i not in seen and d["version"] == 5 and set(table(d)) == {"mainline", "c1"}:
                    seen[i] = time.monotonic() - t0
            return seen

        try:
            await eventually_async(
                took_rollback, until=lambda x: len(x) == 2, what="every replica took the rollback", timeout=10,
                interval=0.01,
            )  # fmt: skip
        except AssertionError as e:
            raise AssertionError(f"{e}\n{one.logs()}\n{two.logs()}") from None
    took = max(seen.values())
    print(f"\nrollback propagation (status write -> both routers' /-/routes): {took * 1000:.0f} ms "
          f"(single process {seen[0] * 1000:.0f} ms, --workers 2 {seen[1] * 1000:.0f} ms)")  # fmt: skip
    assert took < 2.0

    # The supervisor shows the table before its workers have it: give them a moment, then check traffic.
    async def traffic() -> dict[RouterProc, list[str]]:
        return {r: [body for _, body, _ in await send(r, len(users), user=lambda i: users[i])] for r in (one, two)}

    after = await eventually_async(
        traffic, until=lambda x: all("c2" not in a for a in x.values()), what="no traffic to c2", timeout=5
    )
    for a in after.values():
        assert "c2" not in a
        moved = [u for u, x, y in zip(users, before, a) if x != y]
        assert moved and all(before[users.index(u)] == "c2" for u in moved)  # only c2's users moved
    assert after[one] == after[two]


async def test_endpoint_changes(apis, upstream, router, host_ip):
    a, b1, b2 = await upstream("a"), await upstream("b", "b-1"), await upstream("b", "b-2")
    apis.put_slice("ep-a-1", "ep-a", host_ip, a.port)
    apis.put_slice("ep-b-1", "ep-b", host_ip, b1.port, ready=None)  # no condition counts as ready
    apis.create_bakeoff("ep", stickiness=None)
    apis.set_routing("ep", 1, [("a", "ep-a", 0.5), ("b", "ep-b", 0.5)])
    r = await router("ep")
    await wait_routes(r, lambda d: set(table(d)) == {"a", "b"})

    # a's only endpoint stops being ready: a leaves the table; the version is still the Bakeoff's.
    apis.put_slice("ep-a-1", "ep-a", host_ip, a.port, ready=False)
    doc = await wait_routes(r, lambda d: set(table(d)) == {"b"}, what="a without ready endpoints left out")
    assert doc["version"] == 1
    got = await send(r, 100)
    assert {body for _, body, _ in got} == {"b"}

    # A second endpoint for b (a slice of its own, as pods with another port get): round robin reaches both.
    apis.put_slice("ep-b-2", "ep-b", host_ip, b2.port)
    doc = await wait_routes(r, lambda d: len(table(d).get("b", (0, []))[1]) == 2)
    assert table(doc)["b"][1] == sorted([f"{host_ip}:{b1.port}", f"{host_ip}:{b2.port}"])
    got = await send(r, 100)
    hits = collections.Counter(ident for _, _, ident in got)
    assert set(hits) == {"b-1", "b-2"} and min(hits.values()) >= 30, hits

    # b-1 goes, then b-2: with no ready endpoint anywhere the previous table (b on b-2) stays.
    apis.put_slice("ep-b-1", "ep-b", host_ip, b1.port, ready=False)
    await wait_routes(r, lambda d: table(d) == {"b": (0.5, [f"{host_ip}:{b2.port}"])})
    apis.put_slice("ep-b-2", "ep-b", host_ip, b2.port, ready=False)
    await eventually_async(
        lambda: "no ready endpoints for any variant" in r.logs(), what="'no ready endpoints' logged", timeout=10
    )
    assert table(await wait_routes(r, lambda d: True)) == {"b": (0.5, [f"{host_ip}:{b2.port}"])}
    assert {ident for _, _, ident in await send(r, 20)} == {"b-2"}
    assert (await readyz(r))[0] == 200
    # ...and a comes back when it is ready again.
    apis.put_slice("ep-a-1", "ep-a", host_ip, a.port, ready=True)
    await wait_routes(r, lambda d: set(table(d)) == {"a"})
    assert {body for _, body, _ in await send(r, 20)} == {"a"}

    # Stickiness is read at start (null here); a change is applied live (issue 16 item 13,
    # tests/kube/test_router_stickiness.py) and the router serves on.
    assert '"stickiness": null, "event": "router in cluster mode"' in r.logs()
    apis.custom.patch_namespaced_custom_object(GROUP, VERSION, NS, "bakeoffs", "ep",
                                               {"spec": {"routing": {"stickiness": {"cookie": "uid"}}}},
                                               _content_type="application/merge-patch+json")  # fmt: skip
    await eventually_async(lambda: '"event": "stickiness changed"' in r.logs(), what="'stickiness changed' logged",
                           timeout=10)  # fmt: skip
    assert "cookie: uid" in r.logs()
    assert {body for _, body, _ in await send(r, 5)} == {"a"}


async def test_missing_bakeoff_then_no_routing_then_routes(apis, upstream, router, host_ip):
    r = await router("late")
    status, text = await eventually_async(  # until the first list is in
        lambda: readyz(r), until=lambda x: "does not exist" in x[1], what="readyz after the first list", timeout=10
    )
    assert status == 503 and "Bakeoff router-kube/late" in text and "does not exist" in text, text
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{r.url}/x") as resp:
            assert resp.status == 503
            assert "no variant is routable" in await resp.text()

    apis.create_bakeoff("late")
    status, text = await eventually_async(
        lambda: readyz(r), until=lambda x: "status.routing" in x[1], what="readyz naming status.routing", timeout=10
    )
    assert status == 503 and "no status.routing" in text, text

    u = await upstream("mainline")
    apis.put_slice("late-mainline-1", "late-mainline", host_ip, u.port)
    apis.set_routing("late", 1, [("mainline", "late-mainline", 1.0)])
    await wait_routes(r, lambda d: d["version"] == 1)
    assert (await readyz(r))[0] == 200
    assert {body for _, body, _ in await send(r, 10)} == {"mainline"}

    # The Bakeoff is deleted: the router keeps serving its last table.
    apis.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "bakeoffs", "late")
    await eventually_async(lambda: "Bakeoff deleted" in r.logs(), what="'Bakeoff deleted' logged", timeout=10)
    assert {body for _, body, _ in await send(r, 10)} == {"mainline"}
    assert r.proc.poll() is None


async def test_absent_bakeoff_routes_everything_to_the_mainline_service_flag(apis, upstream, router, host_ip):
    u = await upstream("mainline")
    apis.put_slice("shop-main-1", "shop-main", host_ip, u.port)
    r = await router("absent", "--mainline-service", "shop-main")
    doc = await wait_routes(r, lambda d: bool(d["variants"]), what="the mainline fallback")
    assert table(doc) == {"mainline": (1.0, [f"{host_ip}:{u.port}"])}
    assert (await readyz(r))[0] == 200
    assert {(st, body) for st, body, _ in await send(r, 20)} == {(200, "mainline")}
    # The Bakeoff appears with a split: the split wins over the fallback.
    c = await upstream("cand")
    apis.put_slice("absent-cand-1", "absent-cand", host_ip, c.port)
    apis.create_bakeoff("absent")
    apis.set_routing("absent", 4, [("mainline", "shop-main", 0.5), ("cand", "absent-cand", 0.5)])
    await wait_routes(r, lambda d: d["version"] == 4)
    assert {body for _, body, _ in await send(r, 40)} == {"mainline", "cand"}
    # Deleted again: back to the mainline alone, never a 503.
    apis.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "bakeoffs", "absent")
    await wait_routes(r, lambda d: [v["name"] for v in d["variants"]] == ["mainline"], what="fallback after delete")
    assert {(st, body) for st, body, _ in await send(r, 20)} == {(200, "mainline")}


async def test_deleted_bakeoff_falls_back_to_the_last_mainline_seen(apis, upstream, router, host_ip):
    m, c = await upstream("mainline"), await upstream("cand")
    apis.put_slice("gone-mainline-1", "gone-mainline", host_ip, m.port)
    apis.put_slice("gone-cand-1", "gone-cand", host_ip, c.port)
    apis.create_bakeoff("gone")
    apis.set_routing("gone", 2, [("mainline", "gone-mainline", 0.5), ("cand", "gone-cand", 0.5)])
    r = await router("gone")  # no --mainline-service
    await wait_routes(r, lambda d: d["version"] == 2)
    apis.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "bakeoffs", "gone")
    doc = await wait_routes(r, lambda d: [v["name"] for v in d["variants"]] == ["mainline"], what="fallback")
    assert doc["version"] == 3 and table(doc) == {"mainline": (1.0, [f"{host_ip}:{m.port}"])}
    assert {(st, body) for st, body, _ in await send(r, 20)} == {(200, "mainline")}


def _crd_declares_routes() -> bool:
    crd = yaml.safe_load((ROOT / "charts/bakeoff/crds/bakeoffs.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    routing = schema["properties"]["spec"]["properties"].get("routing", {})
    return "routes" in routing.get("properties", {})


@pytest.mark.skipif(not _crd_declares_routes(), reason="the Bakeoff CRD does not declare spec.routing.routes yet")
async def test_spec_routing_routes_give_per_route_statistics(apis, upstream, router, host_ip):
    u = await upstream("mainline")
    apis.put_slice("paths-mainline-1", "paths-mainline", host_ip, u.port)
    apis.create_bakeoff("paths")
    apis.custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, "bakeoffs", "paths",
        {"spec": {"routing": {"routes": [{"name": "checkout", "match": "/checkout*"}]}}},
    )  # fmt: skip
    apis.set_routing("paths", 1, [("mainline", "paths-mainline", 1.0)])
    r = await router("paths")
    await wait_routes(r, lambda d: d["version"] == 1)
    async with aiohttp.ClientSession() as s:
        for path in ("/checkout/1", "/checkout", "/home"):
            async with s.get(f"{r.url}{path}") as resp:
                assert resp.status == 200
        async with s.get(f"{r.admin}/-/snapshot") as resp:
            by_route = (await resp.json())["variants"]["mainline"]["by_route"]
    assert {k: v["requests"] for k, v in by_route.items()} == {"checkout": 2, "other": 1}


async def test_unreachable_api_server(tmp_path, router, kube):
    closed = free_port()  # nothing listens here
    kc = tmp_path / "closed.kubeconfig"
    kc.write_text(Path(kube.kubeconfig).read_text().replace(kube.url, f"https://127.0.0.1:{closed}"))
    assert f"127.0.0.1:{closed}" in kc.read_text()
    r = await router("shop", kubeconfig=str(kc))
    # until an attempt has failed and said so
    status, text = await eventually_async(
        lambda: readyz(r), until=lambda x: "refused" in x[1], what="readyz naming the refusal", timeout=30
    )
    await eventually_async(
        lambda: "API server watch failed; retrying" in r.logs(), what="the failed watch logged", timeout=30
    )
    assert status == 503
    assert f"127.0.0.1:{closed}" in text and "refused" in text, text
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{r.url}/x") as resp:
            assert resp.status == 503
        async with s.get(f"{r.admin}/-/healthz") as resp:
            assert resp.status == 200
    assert r.proc.poll() is None
    assert "API server watch failed; retrying" in r.logs()


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--kubernetes"], "--bakeoff"),
        (["--bakeoff", "shop"], "--kubernetes"),
        (["--kubeconfig", "/x", "--listen", "127.0.0.1:0"], "--kubernetes"),
        (["--kubernetes", "--bakeoff", "Not_A_Name"], "--bakeoff"),
        (["--kubernetes", "--bakeoff", "shop", "--kubeconfig", "/nonexistent/kubeconfig"], "kubeconfig"),
        (["--kubernetes", "--bakeoff", "shop", "--kubeconfig", "{garbage"], "kubeconfig"),
        (["--kubernetes", "--bakeoff", "shop", "--config", "{variants}"], "variants"),
        (["--mainline-service", "shop"], "--kubernetes"),
        (["--kubernetes", "--bakeoff", "shop", "--mainline-service", "Shop_Main"], "--mainline-service"),
        (["--kubernetes", "--bakeoff", "shop", "--mainline-service", "shop:99999"], "--mainline-service"),
    ],
)
def test_bad_flags(tmp_path, args, flag):
    garbage = tmp_path / "garbage.yaml"
    garbage.write_text("this: [is not: a kubeconfig\n")
    config = tmp_path / "router.yaml"
    config.write_text("variants: [{name: a, upstreams: ['127.0.0.1:1'], weight: 1}]\n")
    args = [str(garbage) if a == "{garbage" else str(config) if a == "{variants}" else a for a in args]
    if "--config" in args:
        args += ["--kubeconfig", str(garbage)]  # the variants are refused before the kubeconfig is read
    r = subprocess.run([sys.executable, "-m", "bakeoff", "router", *args], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)  # fmt: skip
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bakeoff router: ") and flag in lines[0], r.stderr


# -- the pure parts, without a cluster ---------------------------------------------
def test_build_table_ports_readiness_weights():
    from bakeoff.router.cluster import build_table, slice_view

    def sl(service, ports, endpoints):
        return {"metadata": {"labels": {SERVICE_LABEL: service}}, "ports": ports,
                "endpoints": [{"addresses": [a], **({"conditions": {"ready": r}} if r is not None else {})}
                              for a, r in endpoints]}  # fmt: skip

    slices = {
        "m": slice_view(
            sl(
                "svc-m",
                [{"name": "metrics", "port": 9090}, {"name": "http", "port": 8080}],
                [("10.0.0.1", True), ("10.0.0.2", False), ("10.0.0.3", None)],
            )
        ),  # fmt: skip
        "c": slice_view(sl("svc-c", [{"name": "", "port": 7000}], [("10.0.1.1", True)])),
        "d": slice_view(sl("svc-d", [{"name": "a", "port": 1}, {"name": "b", "port": 8080}], [("10.0.2.1", True)])),
        "z": slice_view(sl("svc-z", [{"name": "http", "port": 8080}], [("10.0.3.1", True)])),
    }
    bakeoff = {"status": {"routing": {"version": 3, "variants": [
        {"name": "mainline", "service": "svc-m", "port": 8080, "weight": 0.7},
        {"name": "c", "service": "svc-c", "port": 8080, "weight": 0.2},
        {"name": "d", "service": "svc-d", "port": 8080, "weight": 0.1},
        {"name": "z", "service": "svc-z", "port": 8080, "weight": 0},
        {"name": "gone", "service": "svc-none", "port": 8080, "weight": 0.1},
    ]}}}  # fmt: skip
    table, note = build_table(bakeoff, slices)
    assert table.version == 3
    assert {v.name: (v.weight, v.upstreams) for v in table.variants} == {
        "mainline": (0.7, (("10.0.0.1", 8080), ("10.0.0.3", 8080))),  # the port named http; not-ready left out
        "c": (0.2, (("10.0.1.1", 7000),)),  # the only port
        "d": (0.1, (("10.0.2.1", 8080),)),  # several unnamed-http ports: the entry's port
    }
    assert "gone" in note
    assert build_table(None, slices)[0] is None
    assert build_table({"status": {}}, slices) == (None, "the Bakeoff has no status.routing yet")
    only_gone = {"status": {"routing": {"version": 1, "variants": [bakeoff["status"]["routing"]["variants"][-1]]}}}
    assert build_table(only_gone, slices)[0] is None


def test_watch_lists_again_after_410_and_backs_off():
    from bakeoff.common.watch import WatchCache

    errors: list = []
    cache = WatchCache("bakeoff", None, lambda: None, on_error=errors.append)  # type: ignore[arg-type]
    seen: list = []

    def once(rv):
        seen.append(rv)
        if len(seen) == 1:
            return "100"  # listed, then the watch ends normally: resume from 100
        if len(seen) == 2:
            raise kclient.ApiException(status=410, reason="Gone")
        if len(seen) == 3:
            raise ConnectionResetError("reset by peer")
        cache._stopping.set()
        return rv

    cache._once = once  # type: ignore[method-assign]
    cache._loop()
    assert seen == [None, "100", None, None]  # 410: list again at once; other errors: after a back-off
    assert errors == ["reset by peer"]
