"""A whole cluster bake-off: controller, two router replicas, real upstreams, real traffic.

Everything real but the pods: the routers are `bakeoff router --kubernetes`
subprocesses, the variants are HTTP servers on this machine's non-loopback
address (EndpointSlices refuse loopback), and the test writes what the
kubelet and the EndpointSlice controller would (Deployment status, slices).
The controller finds the routers through their Service's EndpointSlices,
merges their snapshots, and the judge decides from live traffic.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import time
import uuid

import aiohttp
import pytest
from aiohttp import web

from bakeoff.controller.kube import objects as ko
from bakeoff.controller.platforms.local import free_port
from tests.conftest import eventually_async

from .conftest import ROOT, start_app
from .test_controller import (
    await_for,
    bakeoff_doc,
    candidates_available,
    create,
    get,
    mainline_deployment,
    mark_available,
    routing_of,
    running,
    variant_doc,
)
from .test_router_kube import host_ip  # noqa: F401 - a fixture

kclient = pytest.importorskip("kubernetes.client")

TOKEN = "e2e-router-token"
BAKEOFF = ROOT / ".venv" / "bin" / "bakeoff"


class Service:
    """An upstream: answers 200 (or 500 at error_rate) and reports a conversion at conversion rate."""

    def __init__(self, name: str, conversion: float = 0.05, error_rate: float = 0.0) -> None:
        self.name, self.conversion, self.error_rate = name, conversion, error_rate
        self.rng = random.Random(name)
        self.served = 0
        self.first_at: float | None = None  # monotonic time of the first request it served

    async def start(self, ip: str) -> Service:
        async def handler(request):
            self.served += 1
            if self.first_at is None:
                self.first_at = time.monotonic()
            if self.rng.random() < self.error_rate:
                return web.Response(status=500, text="boom")
            headers = {"Bakeoff-Metric-conversion": "1"} if self.rng.random() < self.conversion else {}
            return web.Response(text=self.name, headers=headers)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        self.runner, self.port = await start_app(app, ip)
        return self


def put_slice(discovery, ns: str, service: str, ip: str, ports: dict[str, int], suffix: str = "1") -> None:
    discovery.create_namespaced_endpoint_slice(
        ns,
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": f"{service}-{suffix}", "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports.items()],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
        },
    )


async def routes_of(session, admin: str) -> set[str]:
    async with session.get(f"{admin}/-/routes", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
        body = await r.json()
    return {v["name"] for v in body.get("variants", []) if v.get("weight", 0) > 0}


async def test_a_bake_off_on_the_cluster_from_first_request_to_promotion(kube, crds, host_ip, tmp_path):  # noqa: F811
    ns = f"e2e-{uuid.uuid4().hex[:6]}"
    core, apps = kclient.CoreV1Api(kube.api), kclient.AppsV1Api(kube.api)
    custom, discovery = kclient.CustomObjectsApi(kube.api), kclient.DiscoveryV1Api(kube.api)
    core.create_namespace({"metadata": {"name": ns}})
    apps.create_namespaced_deployment(ns, mainline_deployment())
    mark_available(apps, ns, "shop")
    services = {
        "mainline": Service("mainline", conversion=0.05),
        "fast": Service("fast", conversion=0.20),
        "buggy": Service("buggy", error_rate=0.3),
    }
    for s in services.values():
        await s.start(host_ip)
        put_slice(discovery, ns, ko.child_name("shop", s.name), host_ip, {"http": s.port})

    # two router replicas behind a Service the controller finds by its label
    routers = []
    core.create_namespaced_service(
        ns,
        {
            "metadata": {"name": "shop-router", "labels": {ko.LABEL_ROUTER_FOR: "shop"}},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "admin", "port": 8081}]},
        },
    )
    for i in range(2):
        port, admin = free_port(host_ip), free_port(host_ip)
        log = open(tmp_path / f"router-{i}.log", "wb")
        proc = subprocess.Popen(
            [
                str(BAKEOFF),
                "--log-json",
                "router",
                "--kubernetes",
                "--bakeoff",
                "shop",
                "-n",
                ns,
                "--kubeconfig",
                kube.kubeconfig,
                "--listen",
                f"{host_ip}:{port}",
                "--admin",
                f"{host_ip}:{admin}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=os.environ | {"BAKEOFF_ROUTER_TOKEN": TOKEN},
        )
        routers.append((proc, f"http://{host_ip}:{port}", f"http://{host_ip}:{admin}"))
        put_slice(discovery, ns, "shop-router", host_ip, {"http": port, "admin": admin}, suffix=str(i))

    doc = bakeoff_doc("shop", "unused", minSamples=300)
    del doc["spec"]["judge"]["source"]  # the default: every router pod of the bake-off
    create(custom, ns, doc)
    create(custom, ns, variant_doc("fast"))
    create(custom, ns, variant_doc("buggy"))

    stop_load = asyncio.Event()
    sent = {"ok": 0, "err": 0}

    async def shopper(session, i):
        while not stop_load.is_set():
            _, url, _ = routers[i % 2]
            try:
                async with session.get(f"{url}/cart", headers={"X-User-Id": f"user-{random.randrange(10**6)}"}) as r:
                    await r.read()
                    sent["ok" if r.status < 500 else "err"] += 1
            except aiohttp.ClientError:
                sent["err"] += 1
                await asyncio.sleep(0.05)  # a shopper's pause after an error: part of the load, not a wait

    from bakeoff.controller.kube.operator import KubeController, Lease, Settings

    ctl = KubeController(kube.api, Settings(namespace=ns, identity="e2e", lease=Lease(namespace=ns), interval=0.2))
    session = aiohttp.ClientSession()
    load = []
    try:
        async with running(ctl):
            await candidates_available(apps, ns, ("fast", "buggy"))
            await await_for(lambda: len(routing_of(get(custom, ns, "bakeoffs", "shop"))) == 3, what="routed")
            load = [asyncio.create_task(shopper(session, i)) for i in range(12)]

            # the broken build leaves every router within 2 s of the recorded rollback
            await await_for(
                lambda: get(custom, ns, "variants", "buggy")["status"].get("phase") == "RolledBack",
                timeout=90,
                what="buggy rolled back",
            )
            t0 = time.monotonic()
            for _, _, admin in routers:
                await eventually_async(
                    lambda admin=admin: routes_of(session, admin), until=lambda table: "buggy" not in table,
                    what="every router to stop routing to the rolled-back build (2 s after it was recorded)",
                    timeout=max(0.0, 2.0 - (time.monotonic() - t0)), interval=0.01,
                )  # fmt: skip
            first = services["buggy"].first_at
            assert first is not None
            print(
                f"rollback on both routers {1000 * (time.monotonic() - t0):.0f} ms after the test saw it recorded; "
                f"{time.monotonic() - first:.1f} s after the bad build's first request"
            )
            served = services["buggy"].served
            await asyncio.sleep(1.0)  # a window in which a stray request would show: nothing to poll for
            assert services["buggy"].served == served  # no request reaches it any more

            b = await await_for(
                lambda: (lambda b: b if b["status"].get("phase") == "Promoted" else None)(
                    get(custom, ns, "bakeoffs", "shop")
                ),
                timeout=120,
                what="promotion",
            )
            assert b["status"]["winner"] == "fast"
            assert "conversion" in b["status"]["decision"]["reason"]
            main = await await_for(
                lambda: (lambda d: d if ko.ANN_PROMOTION in (d.metadata.annotations or {}) else None)(
                    apps.read_namespaced_deployment("shop", ns)
                ),
                what="patch",
            )
            assert main.spec.template.spec.containers[0].image == "registry.example/shop:fast"
            v = await await_for(
                lambda: (lambda v: v if v["status"].get("phase") == "Promoted" else None)(
                    get(custom, ns, "variants", "fast")
                ),
                what="the Variant's status mirrors the promotion",
            )
            assert v["status"]["requests"] > 0
            assert {m["metric"]: m["state"] for m in v["status"]["verdicts"]}["conversion"] == "better"
            # the judge read both routers (their snapshots merged)
            assert len(ctl.router_urls(ns, "shop")) == 2
            stop_load.set()
            await asyncio.gather(*load)
    finally:
        stop_load.set()
        for t in load:
            t.cancel()
        await session.close()
        for proc, _, _ in routers:
            proc.terminate()
        for proc, _, _ in routers:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for s in services.values():
            await s.runner.cleanup()
    logs = "".join((tmp_path / f"router-{i}.log").read_text(errors="replace") for i in range(2))
    assert '"level": "error"' not in logs and "Traceback" not in logs, logs[-3000:]
    print(json.dumps({"requests": sent, "served": {n: s.served for n, s in services.items()}}))
