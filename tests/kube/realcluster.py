"""A test cluster with real controllers: its own etcd + kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (fake kubelets), so Deployment status, ReplicaSets, Pods, EndpointSlices and
garbage collection come from Kubernetes itself instead of hand-patched status.

Its own API server, not conftest's shared ``kube``: the shared one serves tests that set Deployment
status by hand, which a real deployment controller would overwrite. Import the fixture into a test
module: ``from .realcluster import real_cluster``.

Binaries: ``scripts/kube-assets.sh`` builds them into the assets directory (docs/kube-assets.md);
``--check-cluster`` says whether they are there. Without them the tests skip (fail in CI).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import eventually

from .conftest import ASSETS, CLUSTER, Kube

NODE_ANNOTATION = "kwok.x-k8s.io/node"
# node: registered Ready, with heartbeats; pod: scheduled -> Running and Ready at once, deleted promptly
KWOK_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat/node-heartbeat.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)
# What Deployments need (deployment -> replicaset -> pods), Services' EndpointSlices, owner-reference
# garbage collection, and the token machinery pods of a real cluster rely on.
CONTROLLERS = "deployment,replicaset,endpointslice,garbagecollector,serviceaccount,serviceaccount-token,namespace"


@dataclass
class RealCluster:
    kube: Kube
    nodes: list[str]
    logs: dict[str, Path] = field(default_factory=dict)


def cluster_assets() -> str | None:
    r = subprocess.run([str(ASSETS), "--check-cluster"], capture_output=True, text=True)
    return r.stdout.strip() or None if r.returncode == 0 else None


def _wait(fn, timeout: float, what: str, procs: dict[str, tuple[subprocess.Popen, Path]]):
    """``eventually(fn)``, but a cluster process that exits ends the wait at once with its log."""

    def check():
        for name, (p, log) in procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited {p.returncode}:\n{log.read_text()[-3000:]}")
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - not there yet; shown as the last value if it never is
            return e

    ok = lambda out: bool(out) and not isinstance(out, Exception)  # noqa: E731
    return eventually(check, what=what, until=ok, timeout=timeout, interval=0.2)


@pytest.fixture(scope="module")
def real_cluster(tmp_path_factory):
    kubernetes = pytest.importorskip("kubernetes")
    from kubernetes import client

    assets = cluster_assets()
    if not assets:
        msg = "kube-controller-manager/kube-scheduler/kwok not built: run scripts/kube-assets.sh (docs/kube-assets.md)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{msg}; in CI .ci/run must run scripts/kube-assets.sh first")
        pytest.skip(msg)
    state = tmp_path_factory.mktemp("real") / "cluster"
    env = dict(os.environ, KUBEBUILDER_ASSETS=assets)
    r = subprocess.run([str(CLUSTER), "start", str(state)], capture_output=True, text=True, env=env, timeout=120)
    procs: dict[str, tuple[subprocess.Popen, Path]] = {}
    api = None
    try:
        if r.returncode != 0:
            pytest.fail(f"kube-test-cluster.sh start failed ({r.returncode}):\n{r.stderr[-3000:]}")
        out = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
        kubeconfig, ca = out["KUBECONFIG"], out["KUBE_TEST_CA"]
        stages = Path(assets) / "kwok-stages"
        commands = {
            "kube-controller-manager": [
                f"{assets}/kube-controller-manager",
                f"--kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--secure-port=0",
                f"--controllers={CONTROLLERS}",
                f"--service-account-private-key-file={state}/sa.key",
                f"--root-ca-file={ca}",
                "--use-service-account-credentials=false",
                # 1-core CI: quick reactions matter more than throughput
                "--concurrent-deployment-syncs=2",
                "--concurrent-replicaset-syncs=2",
                "--v=1",
            ],
            "kube-scheduler": [
                f"{assets}/kube-scheduler",
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                "--v=1",
            ],
            "kwok": [
                f"{assets}/kwok",
                f"--kubeconfig={kubeconfig}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}=fake",
                "--cidr=10.244.0.0/16",
                "--node-ip=10.96.0.10",
                *(f"--config={stages / s}" for s in KWOK_STAGES),
            ],
        }
        for name, cmd in commands.items():
            log = state / f"{name}.log"
            procs[name] = (
                subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=state),
                log,
            )
        conf = kubernetes.client.Configuration()
        conf.host = out["KUBE_TEST_URL"]
        conf.ssl_ca_cert = ca
        conf.api_key = {"authorization": out["KUBE_TEST_TOKEN"]}
        conf.api_key_prefix = {"authorization": "Bearer"}
        api = kubernetes.client.ApiClient(conf)
        core = client.CoreV1Api(api)
        nodes = ["kwok-node-0", "kwok-node-1"]
        for n in nodes:
            core.create_node(
                {
                    "metadata": {
                        "name": n,
                        "annotations": {NODE_ANNOTATION: "fake"},
                        "labels": {"type": "kwok", "kubernetes.io/hostname": n},
                    },
                    "status": {
                        "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                        "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                    },
                }
            )

        # The TaintNodesByCondition admission plugin taints every new node not-ready; in a real
        # cluster the node-lifecycle controller lifts it once the kubelet reports Ready. That
        # controller also evicts pods from nodes whose heartbeats lag (a busy 2-core CI box), so
        # it stays off and the fake nodes are untainted here, once, as they are created.
        for n in nodes:
            core.patch_node(n, {"spec": {"taints": None}})

        def ready(n):
            conds = {c.type: c.status for c in core.read_node(n).status.conditions or []}
            return conds.get("Ready") == "True"

        for n in nodes:
            _wait(lambda n=n: ready(n), 60, f"node {n} Ready (kwok)", procs)
        # the controller-manager is up once it has given "default" its ServiceAccount
        _wait(lambda: core.read_namespaced_service_account("default", "default"), 60, "serviceaccount", procs)
        kube = Kube(out["KUBE_TEST_URL"], out["KUBE_TEST_TOKEN"], kubeconfig, ca, out["KUBE_TEST_STATE_DIR"], api)
        yield RealCluster(kube, nodes, {name: log for name, (_, log) in procs.items()})
    finally:
        for p, _ in procs.values():
            p.terminate()
        for p, _ in procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if api is not None:
            api.close()
        subprocess.run([str(CLUSTER), "stop", str(state)], capture_output=True, text=True, timeout=60)
