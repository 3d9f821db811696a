"""A real Kubernetes API server (etcd + kube-apiserver) for the tests in tests/kube.

The binaries come from $KUBEBUILDER_ASSETS or ``scripts/kube-assets.sh --check``
(see docs/kube-assets.md). Without them the tests are skipped, except in CI
(``CI=true``), where that is a failure: .ci/run must build them first.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import eventually

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "scripts" / "kube-test-cluster.sh"
ASSETS = ROOT / "scripts" / "kube-assets.sh"
CRD_DIR = ROOT / "charts" / "bakeoff" / "crds"
GROUP, VERSION = "bakeoff.dev", "v1alpha1"


@dataclass
class Kube:
    url: str
    token: str
    kubeconfig: str
    ca: str
    state_dir: str
    api: object  # kubernetes.client.ApiClient


def _assets_dir() -> str | None:
    env = os.environ.get("KUBEBUILDER_ASSETS")
    if env:
        return env if all(os.access(Path(env) / b, os.X_OK) for b in ("kube-apiserver", "etcd")) else None
    r = subprocess.run([str(ASSETS), "--check"], capture_output=True, text=True)
    return r.stdout.strip() or None if r.returncode == 0 else None


@pytest.fixture(scope="session")
def kube(tmp_path_factory):
    kubernetes = pytest.importorskip("kubernetes")
    assets = _assets_dir()
    if not assets:
        msg = (
            "kube-apiserver/etcd not found: set KUBEBUILDER_ASSETS or build them with "
            "scripts/kube-assets.sh (docs/kube-assets.md)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{msg}; in CI .ci/run must run scripts/kube-assets.sh first")
        pytest.skip(msg)
    state = tmp_path_factory.mktemp("kube") / "cluster"
    env = dict(os.environ, KUBEBUILDER_ASSETS=assets)
    r = subprocess.run([str(CLUSTER), "start", str(state)], capture_output=True, text=True, env=env, timeout=120)
    try:
        if r.returncode != 0:
            pytest.fail(f"kube-test-cluster.sh start failed ({r.returncode}):\n{r.stderr[-3000:]}")
        out = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
        conf = kubernetes.client.Configuration()
        conf.host = out["KUBE_TEST_URL"]
        conf.ssl_ca_cert = out["KUBE_TEST_CA"]
        conf.api_key = {"authorization": out["KUBE_TEST_TOKEN"]}
        conf.api_key_prefix = {"authorization": "Bearer"}
        api = kubernetes.client.ApiClient(conf)
        yield Kube(
            out["KUBE_TEST_URL"],
            out["KUBE_TEST_TOKEN"],
            out["KUBECONFIG"],
            out["KUBE_TEST_CA"],
            out["KUBE_TEST_STATE_DIR"],
            api,
        )
        api.close()
    finally:
        subprocess.run([str(CLUSTER), "stop", str(state)], capture_output=True, text=True, timeout=60)


def crd_documents() -> list[dict]:
    docs = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def wait_established(ext, name: str, timeout: float = 30.0) -> None:
    def conditions() -> dict:
        crd = ext.read_custom_resource_definition(name)
        return {c.type: c.status for c in (crd.status.conditions or [])} if crd.status else {}

    eventually(
        conditions,
        what=f"CRD {name} Established and NamesAccepted",
        until=lambda conds: conds.get("Established") == "True" and conds.get("NamesAccepted") == "True",
        timeout=timeout,
        interval=0.1,
    )


@pytest.fixture(scope="session")
def crds(kube):
    """Create the CRDs of charts/bakeoff/crds/ and wait until they are Established; their names."""
    from kubernetes import client

    ext = client.ApiextensionsV1Api(kube.api)
    names = []
    for doc in crd_documents():
        ext.create_custom_resource_definition(doc)
        names.append(doc["metadata"]["name"])
    for name in names:
        wait_established(ext, name)
    # Discovery (and so the custom resource endpoints) can lag a moment behind Established.
    custom = client.CustomObjectsApi(kube.api)

    def served() -> bool:
        try:
            custom.list_namespaced_custom_object(GROUP, VERSION, "default", "bakeoffs")
            custom.list_namespaced_custom_object(GROUP, VERSION, "default", "variants")
        except client.ApiException as e:
            if e.status != 404:
                raise
            return False
        return True

    eventually(served, what="the bakeoffs and variants endpoints served", timeout=30, interval=0.1)
    return names


@pytest.fixture
def ns(request, kube, crds):
    """A fresh namespace for one test (with the CRDs created), named ``<NS_PREFIX>-<random>`` after
    the test module's NS_PREFIX; deleted afterwards (what is left of it is the API server's to finish)."""
    import uuid

    from kubernetes import client

    core = client.CoreV1Api(kube.api)
    name = f"{getattr(request.module, 'NS_PREFIX', 'test')}-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    try:
        core.delete_namespace(name)
    except client.ApiException:
        pass


@pytest.fixture
def custom(kube, crds):
    from kubernetes import client

    return client.CustomObjectsApi(kube.api)


@pytest.fixture
def apps(kube):
    from kubernetes import client

    return client.AppsV1Api(kube.api)


async def start_app(app, host: str):
    """Serve an aiohttp app on host, a free port; (runner, port). Call runner.cleanup() to stop."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


# ---------------------------------------------------------------- judge source policy (chart helper)


@pytest.fixture(scope="session", autouse=True)
def judge_sources_on_loopback():
    """The controller fetches spec.judge.source only from in-cluster Services or operator-allowed
    prefixes (controller/src/bakeoff/controller/kube/sources_policy.py). The test snapshot servers listen on 127.0.0.1, so
    allow that host, as an operator would allow their metrics host; test_sources_policy.py checks the
    refusals with its own prefixes."""
    from bakeoff.controller.kube.sources_policy import ENV

    old = os.environ.get(ENV)
    os.environ[ENV] = "http://127.0.0.1:"
    yield
    if old is None:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = old
