"""``bakeoff dashboard`` against the real API server tier (tests/kube/conftest.py), in headless Chromium:
the table of bake-offs, one bake-off's page, the approve button (a Variant annotation written with the
user's kubeconfig), live updates, a bake-off deleted while shown, a kubeconfig without access, a port in use."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import eventually
from tests.dashboard.browser import browser_page

pytestmark = [pytest.mark.usefixtures("crds"), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "bakeoff.dev", "v1alpha1"
MERGE = "application/merge-patch+json"
BAKEOFF = [sys.executable, "-m", "bakeoff"]


NS_PREFIX = "dash"


def seed(custom, ns: str) -> None:
    """A Bakeoff whose candidate `fast` waits for approval, with the status the controller writes."""
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        ns,
        "bakeoffs",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Bakeoff",
            "metadata": {"name": "shop"},
            "spec": {
                "mainline": {"deployment": "shop"},
                "judge": {
                    "guardrails": [{"metric": "latency_p50", "maxIncreaseRatio": 0.3}],
                    "objective": {"metric": "conversion", "kind": "proportion", "direction": "higher"},
                },
                "promotion": {"mode": "manual"},
            },
        },
    )
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, "bakeoffs", "shop", {"status": {"phase": "AwaitingApproval", "mainline": "mainline"}},
        _content_type=MERGE,
    )  # fmt: skip
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        ns,
        "variants",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Variant",
            "metadata": {"name": "fast"},
            "spec": {"bakeoff": "shop", "image": "registry.example/shop:3f2a9c1", "change": {"commit": "3f2a9c1"}},
        },
    )
    verdicts = [{"metric": "latency_p50", "state": "non-inferior", "estimate": -0.12, "ci": [-0.2, -0.05]}]
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, "variants", "fast",
        {"status": {"phase": "Winner", "share": 0.5, "requests": 4200, "verdicts": verdicts,
                    "reason": "fast is within tolerance on every guardrail"}},
        _content_type=MERGE,
    )  # fmt: skip


def start_dashboard(kubeconfig: str, ns: str, *extra: str) -> tuple[subprocess.Popen, Path]:
    out = Path(kubeconfig).parent / f"dashboard-{uuid.uuid4().hex[:6]}.out"
    proc = subprocess.Popen(
        [*BAKEOFF, "dashboard", "--kubeconfig", kubeconfig, "-n", ns, *extra],
        cwd=ROOT,
        stdout=open(out, "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, out


def url_of(proc: subprocess.Popen, out: Path) -> str:
    def find() -> str | None:
        m = re.search(r"dashboard: (http://127\.0\.0\.1:\d+/)", out.read_text(errors="replace"))
        if m is None and proc.poll() is not None:
            raise AssertionError(f"bakeoff dashboard exited ({proc.returncode}): {out.read_text()}")
        return m.group(1) if m else None

    return eventually(find, timeout=60, interval=0.2, what="the dashboard's address")


async def test_cluster_dashboard_lists_shows_approves_updates_and_survives_a_deletion(kube, ns, custom):
    seed(custom, ns)
    proc, out = start_dashboard(kube.kubeconfig, ns, "--port", "0")
    try:
        url = url_of(proc, out)
        async with browser_page() as (page, errors):
            await page.goto(url)
            row = await page.inner_text('#bakeoffs tr[data-bakeoff="shop"]')
            assert "AwaitingApproval" in row and "mainline" in row, row
            await page.click('#bakeoffs tr[data-bakeoff="shop"] a')
            await page.wait_for_selector("#live[data-updated]", timeout=30_000)
            assert "Waiting for approval: latency_p50 interval" in await page.inner_text('#why li[data-variant="fast"]')
            assert (await page.inner_text("#approve")).strip() == "Approve fast"
            await page.click("#approve")
            await page.wait_for_function(
                "() => document.getElementById('notice').textContent.includes('approved fast')", timeout=30_000
            )

            def annotation():
                v = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "variants", "fast")
                return (v["metadata"].get("annotations") or {}).get(f"{GROUP}/approved")

            assert eventually(annotation, timeout=10, what="the approval annotation") == "true"
            # a change in the cluster reaches the page without a reload
            t0 = time.time()
            custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, ns, "variants", "fast", {"status": {"phase": "Promoted", "share": 1.0}},
                _content_type=MERGE,
            )  # fmt: skip
            await page.wait_for_function(
                """() => (document.querySelector('#variants tr[data-variant="fast"] td.phase')||{}).textContent
                   === 'Promoted'""",
                timeout=30_000,
            )
            print(f"a status change shown {time.time() - t0:.2f} s after it was written")
            assert time.time() - t0 < 2.0 + 1.0  # the page polls every 0.5 s; the API server and page add to it
            # deleted while shown: a notice, the page keeps what it showed, the server keeps serving
            custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "bakeoffs", "shop")
            await page.wait_for_function(
                "() => document.getElementById('notice').textContent.includes('was deleted')", timeout=30_000
            )
            assert await page.is_hidden("#actions")
            assert await page.inner_text('#variants tr[data-variant="fast"] td.phase') == "Promoted"
            await page.goto(url)
            assert "no bake-offs" in await page.inner_text("#bakeoffs")
            assert errors == [], errors
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(30)


async def test_a_kubeconfig_without_access_and_a_port_in_use_are_clear_errors(kube, ns, custom, tmp_path):
    doc = yaml.safe_load(Path(kube.kubeconfig).read_text())
    for u in doc["users"]:
        u["user"] = {"token": "not-a-valid-token"}
    bad = tmp_path / "kubeconfig"
    bad.write_text(yaml.safe_dump(doc))
    r = subprocess.run(
        [*BAKEOFF, "dashboard", "--kubeconfig", str(bad), "-n", ns, "--port", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    print(r.stderr.strip())
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("bakeoff: error: list bakeoffs in namespace") and "Unauthorized" in r.stderr, r.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run(
            [*BAKEOFF, "dashboard", "--kubeconfig", kube.kubeconfig, "-n", ns, "--port", str(port)],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    print(r.stderr.strip())
    assert r.returncode == 1 and f"dashboard port 127.0.0.1:{port} is in use; choose another with --port" in r.stderr


async def test_cluster_dashboard_charts_shares_over_time_and_why_out_from_status_history(kube, ns, custom):
    """The controller's records in status.history (kept with the Bakeoff, unlike Kubernetes Events)
    give the cluster page every interval's shares and why a candidate left, from the start of the
    bake-off, not just what the page saw while it was open."""
    seed(custom, ns)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, ns, "variants",
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Variant", "metadata": {"name": "slow"},
         "spec": {"bakeoff": "shop", "image": "registry.example/shop:9d1e", "change": {"commit": "9d1e"}}},
    )  # fmt: skip
    lost = "Lost: cannot beat mainline on conversion, upper bound -1.20 points"
    history = [
        {"type": "admitted", "variant": "fast", "share": 0.1, "at": "2026-12-01T10:00:00Z"},
        {"type": "admitted", "variant": "slow", "share": 0.1, "at": "2026-12-01T10:00:01Z"},
        {"type": "allocated", "reason": "adaptive allocation on conversion: fast 10.0%->20.0%",
         "shares": {"fast": 0.2, "slow": 0.1}, "at": "2026-12-01T10:01:00Z"},
        {"type": "allocated", "reason": "adaptive allocation on conversion: fast 20.0%->30.0%, slow 10.0%->5.0%",
         "shares": {"fast": 0.3, "slow": 0.05}, "at": "2026-12-01T10:02:00Z"},
        {"type": "lost", "variant": "slow", "reason": lost, "phase": "Lost", "retired_by": "allocation",
         "at": "2026-12-01T10:03:00Z"},
    ]  # fmt: skip
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, "bakeoffs", "shop", {"status": {"history": history}}, _content_type=MERGE
    )
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, "variants", "slow", {"status": {"phase": "Lost", "share": 0.0, "reason": lost}},
        _content_type=MERGE,
    )  # fmt: skip
    proc, out = start_dashboard(kube.kubeconfig, ns, "--port", "0")
    try:
        url = url_of(proc, out)
        with urllib.request.urlopen(f"{url}b/shop", timeout=30) as r:
            page = r.read().decode()
        # before: the page built its events from Kubernetes Events, which carry no shares: no allocation marks
        assert '<g class="allocations" data-count="2">' in page, page[:2000]
        assert "fast 20.0%-&gt;30.0%, slow 10.0%-&gt;5.0%" in page
        assert f"retired by adaptive allocation: {lost}" in page
    finally:
        proc.terminate()
        proc.wait(30)
