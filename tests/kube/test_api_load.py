"""API load of the controller, from the API server's own apiserver_request_total (issue 10 item 7).

Each figure is requests/s over a window, minus the same window's rate with no
controller running (the API server's own housekeeping and this test's scrapes).
The bounds are the issue's targets, not timings: idle load must not grow with
finished Bakeoffs, and one active Bakeoff in steady state must cost under one
request per second.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.request

import pytest

from .test_controller import (
    Arm,
    SnapshotServer,
    apis,
    await_for,
    bakeoff_doc,
    candidates_available,
    controller_for,
    create,
    get,
    mainline_deployment,
    mark_available,
    running,
    variant_doc,
)

kclient = pytest.importorskip("kubernetes.client")
WINDOW = 10.0


NS_PREFIX = "load"


def requests_total(kube) -> float:
    ctx = ssl.create_default_context(cafile=kube.ca)
    req = urllib.request.Request(f"{kube.url}/metrics", headers={"Authorization": f"Bearer {kube.token}"})
    with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("apiserver_request_total{")
    )


async def rate(kube, seconds: float = WINDOW) -> float:
    before = await asyncio.to_thread(requests_total, kube)
    t0 = time.monotonic()
    await asyncio.sleep(seconds)  # the window the rate is measured over
    after = await asyncio.to_thread(requests_total, kube)
    return (after - before) / (time.monotonic() - t0)


async def test_api_requests_idle_and_per_active_bakeoff(kube, ns):
    custom, apps, _ = apis(kube)
    apps.create_namespaced_deployment(ns, mainline_deployment())
    mark_available(apps, ns, "shop")
    await asyncio.sleep(2)  # settle before a rate window: part of the measurement
    housekeeping = await rate(kube)

    async with running(controller_for(kube, ns, identity="load")) as ctl:
        await await_for(lambda: ctl.passes >= 1, what="first pass")
        await asyncio.sleep(2)  # settle before a rate window: part of the measurement
        idle_none = await rate(kube) - housekeeping

        # ten finished Bakeoffs: idle load must not grow with them
        for i in range(10):
            create(custom, ns, bakeoff_doc(f"done-{i}", "http://127.0.0.1:1/-/snapshot"))
            b = get(custom, ns, "bakeoffs", f"done-{i}")
            b["status"] = {"phase": "Stopped", "decision": {"action": "stop", "reason": "over"}}
            custom.replace_namespaced_custom_object_status("bakeoff.dev", "v1alpha1", ns, "bakeoffs", b["metadata"]["name"], b)  # fmt: skip
        await asyncio.sleep(3)  # settle before a rate window: part of the measurement
        idle_finished = await rate(kube) - housekeeping

        # one active Bakeoff, ramped to its last step, the judge looking every second
        server = SnapshotServer({"mainline": Arm(conversion=0.05), "fast": Arm(conversion=0.05)}, per_look=200)
        url = await server.start()
        try:
            doc = bakeoff_doc("shop", url, minSamples=100)
            doc["spec"]["judge"]["maxDuration"] = "1h"
            create(custom, ns, doc)
            create(custom, ns, variant_doc("fast"))
            await candidates_available(apps, ns, ("fast",))
            server.routed = {"mainline", "fast"}
            await await_for(
                lambda: (get(custom, ns, "variants", "fast").get("status") or {}).get("step") == 1,
                what="last step",
            )
            await asyncio.sleep(3)  # settle before a rate window: part of the measurement
            active = await rate(kube) - housekeeping - idle_finished
            assert get(custom, ns, "bakeoffs", "shop")["status"]["phase"] == "Running"
        finally:
            await server.stop()

    print(
        f"API requests/s (minus {housekeeping:.2f}/s housekeeping): controller idle {idle_none:.2f}, "
        f"idle with 10 finished Bakeoffs {idle_finished:.2f}, per active Bakeoff {active:.2f}"
    )
    assert idle_finished - idle_none < 0.3, (idle_none, idle_finished)
    assert active < 1.0, active
