"""The kubectl commands the docs and the chart's NOTES give, run by a real kubectl against the real
API server with the chart's CRDs (issue 16 item 14).

A CRD category named like a kind's singular shadows the kind: with the category ``bakeoff``,
``kubectl get bakeoff shop`` expanded to both kinds and failed ("you must specify only one
resource"). kubectl comes from ``scripts/kube-assets.sh`` (its own component, built from
k8s.io/kubernetes/cmd/kubectl at the pinned version, docs/kube-assets.md); without it the test
skips (fails in CI).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from .conftest import ASSETS, ROOT
from .test_controller import apis, bakeoff_doc, create, variant_doc

kclient = pytest.importorskip("kubernetes.client")


def kubectl_binary() -> str:
    env = os.environ.get("KUBEBUILDER_ASSETS")
    candidates = [Path(env) / "kubectl"] if env else []
    r = subprocess.run([str(ASSETS), "--check-kubectl"], capture_output=True, text=True)
    if r.returncode == 0 and r.stdout.strip():
        candidates.append(Path(r.stdout.strip()) / "kubectl")
    for c in candidates:
        if os.access(c, os.X_OK):
            return str(c)
    msg = "kubectl not found: build it with scripts/kube-assets.sh (docs/kube-assets.md)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{msg}; in CI .ci/run must build it first")
    pytest.skip(msg)


@pytest.fixture
def kubectl(kube, crds, tmp_path):
    binary = kubectl_binary()

    def run(*args: str) -> subprocess.CompletedProcess:
        argv = [binary, "--kubeconfig", kube.kubeconfig, "--cache-dir", str(tmp_path / "cache"), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    return run


def documented(command: str) -> None:
    """The command (with its placeholders) is what the docs or the chart's NOTES say."""
    texts = [p.read_text() for p in (ROOT / "docs").glob("*.md")]
    texts.append((ROOT / "charts" / "bakeoff" / "templates" / "NOTES.txt").read_text())
    assert any(command in t for t in texts), f"not in docs/*.md or NOTES.txt any more: {command}"


def test_the_documented_kubectl_commands_name_one_bakeoff(kube, kubectl):
    ns = f"kubectl-{uuid.uuid4().hex[:8]}"
    kclient.CoreV1Api(kube.api).create_namespace({"metadata": {"name": ns}})
    custom, _, _ = apis(kube)
    create(custom, ns, bakeoff_doc("shop", "http://127.0.0.1:1/-/snapshot"))
    create(custom, ns, variant_doc("fast"))
    custom.patch_namespaced_custom_object(
        "bakeoff.dev", "v1alpha1", ns, "bakeoffs", "shop", {"metadata": {"finalizers": ["bakeoff.dev/test"]}}
    )

    def ok(*args: str) -> str:
        r = kubectl("-n", ns, *args)
        assert r.returncode == 0, f"kubectl {' '.join(args)} -> {r.returncode}: {r.stderr.strip()}"
        return r.stdout

    documented("get bakeoff {{ .Values.router.bakeoff }} -o jsonpath='{.status.routing}'")
    ok("get", "bakeoff", "shop", "-o", "jsonpath={.status.routing}")
    assert "shop" in ok("get", "bakeoff", "shop")
    assert "Name:         shop" in ok("describe", "bakeoff", "shop")
    documented("kubectl annotate variant NAME bakeoff.dev/approved=true")
    ok("annotate", "variant", "fast", "bakeoff.dev/approved=true")
    assert json.loads(ok("get", "variant", "fast", "-o", "json"))["metadata"]["annotations"] == {
        "bakeoff.dev/approved": "true"
    }
    out = ok("get", "bo,va")
    assert "shop" in out and "fast" in out
    out = ok("get", "bakeoffs-all")  # the category: both kinds
    assert "bakeoff.bakeoff.dev/shop" in out and "variant.bakeoff.dev/fast" in out, out
    documented("""kubectl patch bakeoff B --type merge -p '{"metadata":{"finalizers":null}}'""")
    ok("delete", "bakeoff", "shop", "--wait=false")
    ok("patch", "bakeoff", "shop", "--type", "merge", "-p", '{"metadata":{"finalizers":null}}')
    r = kubectl("-n", ns, "get", "bakeoff", "shop")
    assert r.returncode != 0 and "NotFound" in r.stderr, r.stderr  # deleted once the finalizer went
