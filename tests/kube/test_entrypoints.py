"""The real entry points, as the image runs them: `bakeoff controller` and `bakeoff router --kubernetes`.

Both are started as subprocesses of the installed console script with a
kubeconfig file for the test API server. The controller must come up, answer
/healthz and /metrics, take the Lease and reconcile a Bakeoff; the router must
route live traffic by the split the controller writes to Bakeoff.status.routing.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest

from bakeoff.controller.kube import objects as ko
from bakeoff.controller.platforms.local import free_port
from tests.conftest import eventually_async

from .conftest import ROOT
from .test_cluster_e2e import Service, put_slice
from .test_controller import (
    await_for,
    bakeoff_doc,
    candidates_available,
    create,
    get,
    mainline_deployment,
    mark_available,
    routing_of,
    variant_doc,
)
from .test_router_kube import host_ip  # noqa: F401 - a fixture

kclient = pytest.importorskip("kubernetes.client")

BAKEOFF = Path(sys.executable).parent / "bakeoff"


def start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    out = open(log, "wb")  # noqa: SIM115 - the process writes it until the test ends
    return subprocess.Popen(
        [str(BAKEOFF), "--log-json", *args], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env or dict(os.environ)
    )


def stop(proc: subprocess.Popen) -> int:
    proc.terminate()
    try:
        return proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


async def get_text(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    try:
        async with session.get(url) as r:
            return r.status, await r.text()
    except aiohttp.ClientError:
        return 0, ""


async def test_controller_and_router_processes_run_a_bake_off(kube, crds, host_ip, tmp_path):  # noqa: F811
    ns = f"ep-{uuid.uuid4().hex[:6]}"
    core, apps = kclient.CoreV1Api(kube.api), kclient.AppsV1Api(kube.api)
    custom, discovery = kclient.CustomObjectsApi(kube.api), kclient.DiscoveryV1Api(kube.api)
    core.create_namespace({"metadata": {"name": ns}})
    apps.create_namespaced_deployment(ns, mainline_deployment())
    mark_available(apps, ns, "shop")
    services = {"mainline": Service("mainline"), "fast": Service("fast")}
    for s in services.values():
        await s.start(host_ip)
        put_slice(discovery, ns, ko.child_name("shop", s.name), host_ip, {"http": s.port})
    doc = bakeoff_doc("shop", "http://127.0.0.1:1/-/snapshot")  # no data: the split stays at the first step
    doc["spec"]["routing"]["steps"] = [0.3, 0.5]
    doc["spec"]["routing"]["stepInterval"] = "1h"
    create(custom, ns, doc)
    create(custom, ns, variant_doc("fast"))

    mport = free_port("127.0.0.1")
    rport, radmin = free_port(host_ip), free_port(host_ip)
    ctl_log, router_log = tmp_path / "controller.log", tmp_path / "router.log"
    controller = start(
        [
            "controller",
            "--kubeconfig",
            kube.kubeconfig,
            "-n",
            ns,
            "--lease-namespace",
            ns,
            "--interval",
            "0.2",
            "--metrics",
            f"127.0.0.1:{mport}",
        ],  # fmt: skip
        ctl_log,
    )
    router = start(
        [
            "router",
            "--kubernetes",
            "--bakeoff",
            "shop",
            "-n",
            ns,
            "--kubeconfig",
            kube.kubeconfig,
            "--listen",
            f"{host_ip}:{rport}",
            "--admin",
            f"{host_ip}:{radmin}",
        ],  # fmt: skip
        router_log,
        env=os.environ | {"BAKEOFF_ROUTER_TOKEN": "entry-token"},
    )
    session = aiohttp.ClientSession()
    try:
        metrics_url = f"http://127.0.0.1:{mport}"

        async def healthy():
            assert controller.poll() is None, ctl_log.read_text(errors="replace")[-3000:]
            status, body = await get_text(session, f"{metrics_url}/healthz")
            return body if status == 200 else None

        try:  # up, and holding the Lease (its first pass may still be running)
            await eventually_async(
                healthy, until=lambda body: body and json.loads(body)["leading"] is True,
                what="controller healthy and leading", timeout=120, interval=0.1,  # a cold start on a busy machine
            )  # fmt: skip
        except AssertionError as e:
            raise AssertionError(f"{e}\n" + ctl_log.read_text(errors="replace")) from None

        # it reconciles: the candidate Deployment appears; once available, the split is recorded
        await candidates_available(apps, ns, ("fast",))
        await await_for(lambda: routing_of(get(custom, ns, "bakeoffs", "shop")).get("fast") == 0.3, what="split")
        status, text = await get_text(session, f"{metrics_url}/metrics")
        assert status == 200
        assert "bakeoff_controller_leader 1.0" in text
        assert 'bakeoff_controller_transitions_total{type="admitted"} 1.0' in text

        # the router process routes by that split
        seen: collections.Counter[str] = collections.Counter()
        await eventually_async(  # the router may still be listing
            lambda: get_text(session, f"http://{host_ip}:{rport}/cart?u=warm-up"), until=lambda x: x[0] == 200,
            what="the router serving", timeout=120, interval=0.2,
        )  # fmt: skip
        for i in range(400):
            st, body = await get_text(session, f"http://{host_ip}:{rport}/cart?u={i}")
            if st == 200:
                seen[body] += 1
        total = seen["mainline"] + seen["fast"]
        assert total >= 350, (seen, router_log.read_text(errors="replace")[-3000:])
        # 30% of users (no sticky header: each request is its own user) go to the candidate
        assert 0.2 < seen["fast"] / total < 0.4, seen
    finally:
        await session.close()
        rc_router, rc_ctl = stop(router), stop(controller)
        for s in services.values():
            await s.runner.cleanup()
    ctl_text = ctl_log.read_text(errors="replace")
    assert rc_ctl == 0 and "Traceback" not in ctl_text, ctl_text[-3000:]
    assert rc_router == 0 and "Traceback" not in router_log.read_text(errors="replace")
    # a clean stop gives the Lease up, so a standby need not wait for it to expire
    lease = kclient.CoordinationV1Api(kube.api).read_namespaced_lease("bakeoff-controller", ns)
    assert not lease.spec.holder_identity, ctl_text[-2000:]
