"""Issue 20 item 6 in a cluster: the controller process (`bakeoff controller --metrics`) against the
real API server, scraped by a real Prometheus, exports each Bakeoff's share, phase and decisions."""

from __future__ import annotations

import subprocess
import uuid

import aiohttp
import pytest

from bakeoff.controller.platforms.local import free_port
from tests.conftest import eventually_async
from tests.judge.conftest import prometheus_binary, wait_ready  # noqa: F401 - a fixture

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
from .test_entrypoints import start, stop

kclient = pytest.importorskip("kubernetes.client")
pytestmark = pytest.mark.slow


async def test_controller_decision_metrics_scraped_by_prometheus(kube, crds, tmp_path, prometheus_binary):  # noqa: F811
    ns = f"dm-{uuid.uuid4().hex[:6]}"
    core, apps = kclient.CoreV1Api(kube.api), kclient.AppsV1Api(kube.api)
    custom = kclient.CustomObjectsApi(kube.api)
    core.create_namespace({"metadata": {"name": ns}})
    apps.create_namespaced_deployment(ns, mainline_deployment())
    mark_available(apps, ns, "shop")
    doc = bakeoff_doc("shop", "http://127.0.0.1:1/-/snapshot")  # no data: the split stays at the first step
    doc["spec"]["routing"]["steps"] = [0.3, 0.5]
    doc["spec"]["routing"]["stepInterval"] = "1h"
    create(custom, ns, doc)
    create(custom, ns, variant_doc("fast"))
    mport, prom_port = free_port("127.0.0.1"), free_port("127.0.0.1")
    controller = start(
        ["controller", "--kubeconfig", kube.kubeconfig, "-n", ns, "--lease-namespace", ns, "--interval", "0.2",
         "--metrics", f"127.0.0.1:{mport}"],
        tmp_path / "controller.log",
    )  # fmt: skip
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: bakeoff-controller\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{mport}']\n"
    )
    prom = subprocess.Popen(
        [prometheus_binary, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{prom_port}",
         "--log.level=warn"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await wait_ready(f"http://127.0.0.1:{prom_port}", prom)
        await candidates_available(apps, ns, ("fast",))
        await await_for(lambda: routing_of(get(custom, ns, "bakeoffs", "shop")).get("fast") == 0.3, what="split")
        key = f"{ns}/shop"
        async with aiohttp.ClientSession() as s:

            async def query(expr: str) -> dict[str, float]:
                assert controller.poll() is None, (tmp_path / "controller.log").read_text(errors="replace")[-3000:]
                async with s.get(f"http://127.0.0.1:{prom_port}/api/v1/query", params={"query": expr}) as r:
                    body = await r.json()
                return {x["metric"].get("variant", x["metric"].get("phase", "")): float(x["value"][1])
                        for x in body["data"]["result"]}  # fmt: skip

            shares = await eventually_async(
                lambda: query(f'bakeoff_variant_share{{bakeoff="{key}"}}'),
                until=lambda got: got.get("fast") == pytest.approx(0.3),
                what="the split in Prometheus",
                timeout=60,
            )
            assert shares == {"fast": pytest.approx(0.3), "mainline": pytest.approx(0.7)}
            # A new decision series is scraped at 0 once, then at its count (controller/decision_metrics.py).
            admitted = await eventually_async(
                lambda: query(f'bakeoff_decisions_total{{bakeoff="{key}", action="admitted"}}'),
                until=lambda got: got.get("fast") == 1.0,
                what="the admission counted in Prometheus",
                timeout=30,
            )
            assert admitted == {"fast": 1.0}
            assert await query(f'bakeoff_phase{{bakeoff="{key}"}} == 1') == {"Running": 1.0}
            phases = await query(f'bakeoff_variant_phase{{bakeoff="{key}"}} == 1')
            assert phases == {"fast": 1.0, "mainline": 1.0}
            async with s.get(
                f"http://127.0.0.1:{prom_port}/api/v1/query",
                params={"query": f'bakeoff_variant_phase{{bakeoff="{key}", variant="fast"}}'},
            ) as r:
                assert [x["metric"]["phase"] for x in (await r.json())["data"]["result"]] == ["Serving"]
            # A deleted Bakeoff leaves the gauges at the next pass.
            custom.delete_namespaced_custom_object("bakeoff.dev", "v1alpha1", ns, "bakeoffs", "shop")

            async def gone() -> bool:
                async with s.get(f"http://127.0.0.1:{mport}/metrics") as r:
                    return f'bakeoff_variant_share{{bakeoff="{key}"' not in await r.text()

            await eventually_async(gone, what="the deleted Bakeoff's gauges dropped", timeout=60)
    finally:
        prom.terminate()
        prom.wait(timeout=10)
        assert stop(controller) == 0
