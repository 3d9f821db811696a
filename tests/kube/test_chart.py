"""The Helm chart (charts/bakeoff): lint, render, apply to a real kube-apiserver, and prove its RBAC.

`helm` comes from the kube assets directory (the same place as kube-apiserver and etcd,
docs/kube-assets.md). Rendering tests need only helm; the rest use the `kube` and `crds`
fixtures of conftest.py. RBAC is checked twice: against the rendered rules (exact sets) and
against the API server's own authorizer (SubjectAccessReview, and a SelfSubjectRulesReview
made while impersonating each ServiceAccount).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import eventually

from .conftest import ROOT, _assets_dir

CHART = ROOT / "charts" / "bakeoff"
KUBE_VERSION = "1.32.0"  # `helm template` assumes v1.20 otherwise, which the chart's kubeVersion refuses
IMAGE = "ghcr.io/bakeoff-dev/bakeoff"
APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]

# ---------------------------------------------------------------- expected RBAC (docs/helm.md)


def _rules(*entries) -> set[tuple]:
    """(group, resources, verbs[, resourceNames]) -> {(group, resource, verb, name or None)}."""
    out = set()
    for group, resources, verbs, *names in entries:
        for r in resources.split():
            for v in verbs.split():
                for n in names[0] if names else [None]:
                    out.add((group, r, v, n))
    return out


# Each verb is one the controller calls (controller/kube: read/list/create/replace/patch/delete_*),
# plus watch on what it lists (list+watch with resync) and update on finalizers (blockOwnerDeletion).
CONTROLLER_RULES = _rules(
    ("bakeoff.dev", "bakeoffs variants", "get list watch patch"),
    ("bakeoff.dev", "bakeoffs/status variants/status", "update"),
    ("bakeoff.dev", "bakeoffs/finalizers variants/finalizers", "update"),
    ("apps", "deployments", "get list watch create update patch delete"),
    ("", "services", "list watch create delete"),
    ("", "configmaps", "get create patch"),
    ("discovery.k8s.io", "endpointslices", "list watch"),
    ("", "events", "create"),
)


def leader_rules(lease: str) -> set[tuple]:
    return _rules(
        ("coordination.k8s.io", "leases", "create"), ("coordination.k8s.io", "leases", "get update patch", [lease])
    )


ROUTER_RULES = _rules(
    ("bakeoff.dev", "bakeoffs", "get list watch"),
    ("discovery.k8s.io", "endpointslices", "get list watch"),
)

# ---------------------------------------------------------------- helm


@pytest.fixture(scope="session")
def helm(tmp_path_factory) -> tuple[str, dict]:
    assets = _assets_dir() or str(Path.home() / ".cache" / "bakeoff" / "kube-assets")
    path = Path(assets) / "helm"
    if not os.access(path, os.X_OK):
        msg = f"helm not found at {path}: build the kube assets with scripts/kube-assets.sh (docs/kube-assets.md)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{msg}; in CI .ci/run must run scripts/kube-assets.sh first")
        pytest.skip(msg)
    home = tmp_path_factory.mktemp("helm-home")
    env = dict(
        os.environ,
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_DATA_HOME=str(home / "data"),
    )
    env.pop("KUBECONFIG", None)
    return str(path), env


def run_helm(helm, *args, check=True, kubeconfig: str | None = None) -> subprocess.CompletedProcess:
    path, env = helm
    if kubeconfig:
        env = dict(env, KUBECONFIG=kubeconfig)
    r = subprocess.run([path, *args], capture_output=True, text=True, env=env, timeout=120)
    if check:
        assert r.returncode == 0, f"helm {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r


def values_file(tmp_path: Path, values: dict) -> str:
    f = tmp_path / f"values-{len(list(tmp_path.glob('values-*')))}.yaml"
    f.write_text(yaml.safe_dump(values))
    return str(f)


def render(
    helm, tmp_path, values: dict | None = None, release="bakeoff", namespace="bakeoff-system", *extra
) -> list[dict]:
    r = run_helm(
        helm,
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
        "-f",
        values_file(tmp_path, values or {}),
        *extra,
    )
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    assert docs, r.stdout
    return docs


def by_kind(docs, kind) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind, name) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {[(d['kind'], d['metadata']['name']) for d in docs]}"
    return found[0]


def rule_set(role: dict) -> set[tuple]:
    out = set()
    for rule in role.get("rules") or []:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule  # no nonResourceURLs
        for g in rule["apiGroups"]:
            for r in rule["resources"]:
                for v in rule["verbs"]:
                    for n in rule.get("resourceNames") or [None]:
                        out.add((g, r, v, n))
    return out


def pod_containers(deploy: dict) -> list[dict]:
    spec = deploy["spec"]["template"]["spec"]
    return spec["containers"] + spec.get("initContainers", [])


ROUTER = {"router": {"bakeoff": "shop"}}
VALUE_SETS = {
    "defaults": {},
    "router": ROUTER,
    "scoped": {"controller": {"watchNamespace": "team-a"}, "router": {"bakeoff": "shop"}},
    "cluster-wide": {"controller": {"clusterWide": True}, "router": {"bakeoff": "shop"}},
    "monitored": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}, "router": {"bakeoff": "shop"}},
    "router-only": {"controller": {"enabled": False}, "router": {"bakeoff": "cart"}},
    "custom": {
        "image": {"repository": "registry.example/bakeoff", "tag": "9.9.9", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "controller": {
            "replicas": 3,
            "logLevel": "debug",
            "extraArgs": ["--resync", "30s"],
            "nodeSelector": {"pool": "system"},
            "tolerations": [{"key": "k", "operator": "Exists"}],
            "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
        },
        "router": {
            "bakeoff": "shop",
            "replicas": 5,
            "service": {"type": "NodePort", "port": 8000},
            "extraArgs": ["--workers", "2"],
        },
        "serviceAccount": {"controller": {"name": "ctl", "annotations": {"a": "b"}}, "router": {"name": "rtr"}},
        "fullnameOverride": "bo",
    },
}

# ---------------------------------------------------------------- lint and render


def test_lint(helm):
    r = run_helm(helm, "lint", str(CHART))
    assert "0 chart(s) failed" in r.stdout, r.stdout
    r = run_helm(helm, "lint", "--strict", str(CHART), "--set", "router.bakeoff=shop")
    assert "0 chart(s) failed" in r.stdout, r.stdout
    r = run_helm(
        helm,
        "lint",
        "--strict",
        str(CHART),
        "--set",
        "router.bakeoff=shop,serviceMonitor.enabled=true,controller.watchNamespace=team-a",
    )
    assert "0 chart(s) failed" in r.stdout, r.stdout


def test_chart_metadata_and_kube_version(helm, tmp_path):
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (meta["apiVersion"], meta["name"], meta["version"]) == ("v2", "bakeoff", "0.1.0")
    assert meta["appVersion"] == "0.1.0" and meta["kubeVersion"] == ">=1.29.0-0"
    r = run_helm(helm, "template", "x", str(CHART), "--kube-version", "1.28.9", check=False)
    assert r.returncode != 0 and "kubeVersion" in r.stderr, r.stderr
    # ...and with helm's own default (no --kube-version), as a user runs it first
    r = run_helm(helm, "template", "x", str(CHART), "--set", "router.bakeoff=shop")
    assert [d["kind"] for d in yaml.safe_load_all(r.stdout) if d].count("Deployment") == 2, r.stdout
    docs = render(helm, tmp_path, {}, "bakeoff", "bakeoff-system", "--include-crds")
    crds = sorted(d["metadata"]["name"] for d in by_kind(docs, "CustomResourceDefinition"))
    assert crds == ["bakeoffs.bakeoff.dev", "variants.bakeoff.dev"]


def test_defaults(helm, tmp_path):
    docs = render(helm, tmp_path)
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert kinds == [
        ("Deployment", "bakeoff-controller"),
        ("NetworkPolicy", "bakeoff-controller"),
        ("Role", "bakeoff-controller"),
        ("Role", "bakeoff-controller-leader-election"),
        ("RoleBinding", "bakeoff-controller"),
        ("RoleBinding", "bakeoff-controller-leader-election"),
        ("Service", "bakeoff-controller-metrics"),
        ("ServiceAccount", "bakeoff-controller"),
    ]
    d = one(docs, "Deployment", "bakeoff-controller")
    assert d["metadata"]["namespace"] == "bakeoff-system"
    assert d["spec"]["replicas"] == 2
    pod = d["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "bakeoff-controller" and pod["automountServiceAccountToken"] is True
    (c,) = pod["containers"]
    assert c["image"] == f"{IMAGE}:{APP_VERSION}"
    # The lease name matches docs/kubernetes.md ("bakeoff-controller") for a release named bakeoff.
    assert c["args"] == [
        "controller",
        "--metrics",
        "0.0.0.0:9090",
        "--lease-name",
        "bakeoff-controller",
        "--lease-namespace",
        "bakeoff-system",
        "--identity",
        "$(POD_NAME)",
        "--namespace",
        "bakeoff-system",
    ]
    # Namespace-scoped by default: a Role in the release namespace, nothing cluster-wide.
    assert one(docs, "Role", "bakeoff-controller")["metadata"]["namespace"] == "bakeoff-system"
    env = {e["name"]: e for e in c["env"]}
    assert env["BAKEOFF_JUDGE_SOURCE_PREFIXES"]["value"] == ""
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["BAKEOFF_LOG_LEVEL"]["value"] == "info"
    assert c["ports"] == [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= c["resources"][kind].keys()
    sa = one(docs, "ServiceAccount", "bakeoff-controller")
    assert sa["automountServiceAccountToken"] is True
    svc = one(docs, "Service", "bakeoff-controller-metrics")
    assert "bakeoff.dev/router-for" not in svc["metadata"]["labels"]  # the controller finds routers by it
    assert svc["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()


def test_controller_network_policy(helm, tmp_path):
    """Issue 16 item 15: the controller's /metrics and /healthz listen on 0.0.0.0; a NetworkPolicy admits
    no one by default, and only controller.networkPolicy.metricsFrom to the metrics port."""
    docs = render(helm, tmp_path)
    pol = one(docs, "NetworkPolicy", "bakeoff-controller")
    d = one(docs, "Deployment", "bakeoff-controller")
    assert pol["spec"]["podSelector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
    assert pol["spec"]["policyTypes"] == ["Ingress"] and pol["spec"]["ingress"] == []
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    docs = render(helm, tmp_path, {"controller": {"networkPolicy": {"metricsFrom": [peer]}}})
    pol = one(docs, "NetworkPolicy", "bakeoff-controller")
    assert pol["spec"]["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}], "from": [peer]}]
    docs = render(helm, tmp_path, {"controller": {"networkPolicy": {"enabled": False}}})
    assert not by_kind(docs, "NetworkPolicy")


def test_router_objects_only_with_a_bakeoff(helm, tmp_path):
    without = render(helm, tmp_path)
    assert not [d for d in without if "router" in d["metadata"]["name"]]
    docs = render(helm, tmp_path, ROUTER)
    routers = sorted((d["kind"], d["metadata"]["name"]) for d in docs if "router" in d["metadata"]["name"])
    assert routers == [
        ("Deployment", "bakeoff-router"),
        ("NetworkPolicy", "bakeoff-router"),
        ("PodDisruptionBudget", "bakeoff-router"),
        ("Role", "bakeoff-router"),
        ("RoleBinding", "bakeoff-router"),
        ("Secret", "bakeoff-router-events"),
        ("Service", "bakeoff-router"),
        ("ServiceAccount", "bakeoff-router"),
    ]
    d = one(docs, "Deployment", "bakeoff-router")
    assert d["spec"]["replicas"] == 2
    pod = d["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "bakeoff-router" and pod["automountServiceAccountToken"] is True
    (c,) = pod["containers"]
    assert c["args"] == [
        "router",
        "--kubernetes",
        "--bakeoff",
        "shop",
        "--namespace",
        "bakeoff-system",
        "--listen",
        "0.0.0.0:8080",
        "--admin",
        "0.0.0.0:8081",
    ]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8080, "admin": 8081}
    env = {e["name"]: e for e in c["env"]}
    assert env["BAKEOFF_EVENTS_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "bakeoff-router-events", "key": "token"}
    }
    token = one(docs, "Secret", "bakeoff-router-events")["data"]["token"]
    assert len(base64.b64decode(token)) == 40
    assert c["readinessProbe"]["httpGet"] == {"path": "/-/readyz", "port": "admin"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/-/healthz", "port": "admin"}
    svc = one(docs, "Service", "bakeoff-router")
    assert svc["metadata"]["labels"]["bakeoff.dev/router-for"] == "shop"
    assert svc["spec"]["type"] == "ClusterIP"
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
    assert ports == {"http": (80, "http"), "admin": (8081, "admin")}
    # The Service selects the router pods, and only them.
    assert svc["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
    ctl = one(docs, "Deployment", "bakeoff-controller")
    assert not svc["spec"]["selector"].items() <= ctl["spec"]["template"]["metadata"]["labels"].items()


def test_custom_values(helm, tmp_path):
    docs = render(helm, tmp_path, VALUE_SETS["custom"], "rel", "ns1")
    ctl = one(docs, "Deployment", "bo-controller")
    assert ctl["spec"]["replicas"] == 3
    pod = ctl["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ctl" and pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == {"pool": "system"} and pod["tolerations"] == [{"key": "k", "operator": "Exists"}]
    (c,) = pod["containers"]
    assert c["image"] == "registry.example/bakeoff:9.9.9" and c["imagePullPolicy"] == "Always"
    assert c["args"][-2:] == ["--resync", "30s"] and c["args"][5:7] == ["--lease-namespace", "ns1"]
    assert c["args"][3:5] == ["--lease-name", "bo-controller"]
    assert {e["name"]: e.get("value") for e in c["env"]}["BAKEOFF_LOG_LEVEL"] == "debug"
    assert c["resources"] == {
        "requests": {"cpu": "10m", "memory": "64Mi"},
        "limits": {"cpu": "1", "memory": "512Mi"},
    }  # merged with the defaults
    assert one(docs, "ServiceAccount", "ctl")["metadata"]["annotations"] == {"a": "b"}
    assert one(docs, "RoleBinding", "bo-controller-leader-election")["subjects"] == [
        {"kind": "ServiceAccount", "name": "ctl", "namespace": "ns1"}
    ]
    assert one(docs, "RoleBinding", "bo-controller")["subjects"] == [
        {"kind": "ServiceAccount", "name": "ctl", "namespace": "ns1"}
    ]
    assert rule_set(one(docs, "Role", "bo-controller-leader-election")) == leader_rules("bo-controller")
    rtr = one(docs, "Deployment", "bo-router")
    assert rtr["spec"]["replicas"] == 5
    assert rtr["spec"]["template"]["spec"]["serviceAccountName"] == "rtr"
    assert rtr["spec"]["template"]["spec"]["containers"][0]["args"][-2:] == ["--workers", "2"]
    assert one(docs, "RoleBinding", "bo-router")["subjects"] == [
        {"kind": "ServiceAccount", "name": "rtr", "namespace": "ns1"}
    ]
    svc = one(docs, "Service", "bo-router")
    assert svc["spec"]["type"] == "NodePort"
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"http": 8000, "admin": 8081}


def test_watch_namespace_switches_cluster_role_to_role(helm, tmp_path):
    docs = render(helm, tmp_path, {"controller": {"watchNamespace": "team-a"}}, "bakeoff", "bakeoff-system")
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    role = one(docs, "Role", "bakeoff-controller")
    assert role["metadata"]["namespace"] == "team-a"
    assert rule_set(role) == CONTROLLER_RULES
    rb = one(docs, "RoleBinding", "bakeoff-controller")
    assert rb["metadata"]["namespace"] == "team-a"
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "bakeoff-controller"}
    assert rb["subjects"] == [{"kind": "ServiceAccount", "name": "bakeoff-controller", "namespace": "bakeoff-system"}]
    # Leader election stays in the release namespace.
    assert one(docs, "Role", "bakeoff-controller-leader-election")["metadata"]["namespace"] == "bakeoff-system"
    args = one(docs, "Deployment", "bakeoff-controller")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-2:] == ["--namespace", "team-a"]

    docs = render(helm, tmp_path, {"controller": {"clusterWide": True}})
    assert rule_set(one(docs, "ClusterRole", "bakeoff-controller")) == CONTROLLER_RULES
    crb = one(docs, "ClusterRoleBinding", "bakeoff-controller")
    assert crb["roleRef"]["kind"] == "ClusterRole"
    assert (
        "--namespace"
        not in one(docs, "Deployment", "bakeoff-controller")["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    # cluster-wide grants, one watched namespace
    docs = render(helm, tmp_path, {"controller": {"clusterWide": True, "watchNamespace": "team-b"}})
    assert one(docs, "ClusterRole", "bakeoff-controller")
    args = one(docs, "Deployment", "bakeoff-controller")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-2:] == ["--namespace", "team-b"]


def test_service_monitor_only_when_enabled(helm, tmp_path):
    for name in ("defaults", "router", "scoped"):
        assert not by_kind(render(helm, tmp_path, VALUE_SETS[name]), "ServiceMonitor"), name
    docs = render(helm, tmp_path, VALUE_SETS["monitored"])
    sms = {d["metadata"]["name"]: d for d in by_kind(docs, "ServiceMonitor")}
    assert sorted(sms) == ["bakeoff-controller", "bakeoff-router"]
    services = by_kind(docs, "Service")
    for sm_name, port in (("bakeoff-controller", "metrics"), ("bakeoff-router", "admin")):
        sm = sms[sm_name]
        assert sm["apiVersion"] == "monitoring.coreos.com/v1"
        assert sm["metadata"]["labels"]["release"] == "prom"
        assert sm["spec"]["endpoints"] == [{"port": port, "path": "/metrics", "interval": "30s"}]
        # Exactly one Service is selected, and it has the port the endpoint names.
        sel = sm["spec"]["selector"]["matchLabels"].items()
        (svc,) = [s for s in services if sel <= s["metadata"]["labels"].items()]
        assert port in [p["name"] for p in svc["spec"]["ports"]]
    # Without a router, only the controller is monitored.
    docs = render(helm, tmp_path, {"serviceMonitor": {"enabled": True}})
    assert [d["metadata"]["name"] for d in by_kind(docs, "ServiceMonitor")] == ["bakeoff-controller"]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_rbac_least_privilege_in_every_value_set(helm, tmp_path, name):
    docs = render(helm, tmp_path, VALUE_SETS[name], "rel", "ns1")
    roles = by_kind(docs, "Role") + by_kind(docs, "ClusterRole")
    assert roles
    granted = set()
    for role in roles:
        rules = rule_set(role)
        granted |= rules
        for g, r, v, _ in rules:
            assert "*" not in (g, r, v), (role["metadata"]["name"], g, r, v)
            assert r not in {
                "secrets",
                "pods",
                "pods/exec",
                "pods/log",
                "serviceaccounts",
                "roles",
                "rolebindings",
                "clusterroles",
                "clusterrolebindings",
                "nodes",
                "namespaces",
            }, (role["metadata"], r)
            assert v not in {"escalate", "bind", "impersonate", "deletecollection"}, (role["metadata"], v)
    full = "bo" if name == "custom" else "rel-bakeoff"
    expected = set()
    if name != "router-only":
        expected |= CONTROLLER_RULES | leader_rules(f"{full}-controller")
    if "bakeoff" in VALUE_SETS[name].get("router", {}):
        expected |= ROUTER_RULES
    assert granted == expected
    # Every binding points at a role of this chart and at a ServiceAccount of this release.
    names = {(r["kind"], r["metadata"]["name"]) for r in roles}
    sas = {s["metadata"]["name"] for s in by_kind(docs, "ServiceAccount")}
    for b in by_kind(docs, "RoleBinding") + by_kind(docs, "ClusterRoleBinding"):
        assert (b["roleRef"]["kind"], b["roleRef"]["name"]) in names
        for s in b["subjects"]:
            assert s["kind"] == "ServiceAccount" and s["name"] in sas and s["namespace"] == "ns1", s


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_pods_are_locked_down(helm, tmp_path, name):
    docs = render(helm, tmp_path, VALUE_SETS[name], "rel", "ns1")
    deployments = by_kind(docs, "Deployment")
    assert {d["metadata"]["name"].rsplit("-", 1)[-1] for d in deployments} == (
        {"router"} if name == "router-only" else {"controller", "router"} if name != "defaults" else {"controller"}
    )  # never a vacuous pass
    for d in deployments:
        pod = d["spec"]["template"]["spec"]
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001 and psc["fsGroup"] == 10001
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
        for c in pod_containers(d):
            sc = c.get("securityContext") or {}
            assert sc.get("allowPrivilegeEscalation") is False, (d["metadata"]["name"], c["name"])
            assert sc.get("readOnlyRootFilesystem") is True, (d["metadata"]["name"], c["name"])
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], (d["metadata"]["name"], c["name"])
            assert not sc.get("capabilities", {}).get("add"), c["name"]
            assert not sc.get("privileged"), c["name"]
            assert c["resources"].get("requests"), c["name"]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_deployment_mounts_tmp_emptydir(helm, tmp_path, name):
    docs = render(helm, tmp_path, VALUE_SETS[name], "rel", "ns1")
    deployments = by_kind(docs, "Deployment")
    assert len(deployments) == (2 if "bakeoff" in VALUE_SETS[name].get("router", {}) else 1) - (
        name == "router-only"
    )  # never a vacuous pass
    for d in deployments:
        pod = d["spec"]["template"]["spec"]
        empty = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for c in pod_containers(d):
            tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            assert len(tmp) == 1 and tmp[0]["name"] in empty, (d["metadata"]["name"], c["name"], pod.get("volumes"))
            assert not tmp[0].get("readOnly"), c["name"]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_standard_labels_and_namespaces(helm, tmp_path, name):
    docs = render(helm, tmp_path, VALUE_SETS[name], "rel", "ns1")
    watch = VALUE_SETS[name].get("controller", {}).get("watchNamespace")
    for d in docs:
        labels = d["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "bakeoff", d["metadata"]
        assert labels["app.kubernetes.io/instance"] == "rel"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "bakeoff-0.1.0"
        assert labels["app.kubernetes.io/version"] == VALUE_SETS[name].get("image", {}).get("tag", APP_VERSION)
        assert labels["app.kubernetes.io/component"] in {"controller", "router"}
        if d["kind"].startswith("Cluster"):
            assert "namespace" not in d["metadata"]
        elif (
            d["kind"] in ("Role", "RoleBinding")
            and watch
            and not d["metadata"]["name"].endswith(("leader-election", "router"))
        ):
            assert d["metadata"]["namespace"] == watch
        else:
            assert d["metadata"]["namespace"] == "ns1", (d["kind"], d["metadata"])
    for d in by_kind(docs, "Deployment"):
        sel = d["spec"]["selector"]["matchLabels"]
        assert sel.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        assert "app.kubernetes.io/version" not in sel  # selectors are immutable: nothing that changes on upgrade
    # No two Deployments select each other's pods.
    deps = by_kind(docs, "Deployment")
    for a in deps:
        for b in deps:
            if a is not b:
                assert (
                    not a["spec"]["selector"]["matchLabels"].items()
                    <= b["spec"]["template"]["metadata"]["labels"].items()
                )


# ---------------------------------------------------------------- against the API server

APPLY_NS = "chart-apply"  # release "apply": controller cluster-wide (opt-in) + router for "shop"
DEFAULT_NS = "chart-default"  # release "dflt": the defaults + router for "shop" (namespace-scoped)
SCOPED_NS = "chart-scoped"  # release "scoped": controller restricted to WATCHED_NS
WATCHED_NS = "chart-watched"
SA_GROUPS = lambda ns: ["system:serviceaccounts", f"system:serviceaccounts:{ns}"]  # noqa: E731


def _raw(kube, method: str, path: str, body=None, accept="application/json"):
    headers = {"Accept": accept, "Authorization": f"Bearer {kube.token}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    resp = kube.api.call_api(method, kube.url + path, header_params=headers, body=body)
    data = resp.read()
    return resp.status, (json.loads(data) if data else None)


_discovery: dict[str, dict] = {}


def resource_path(kube, doc: dict, namespace: str) -> str:
    """The collection URL of doc's kind, from the server's discovery documents."""
    api_version = doc["apiVersion"]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if base not in _discovery:
        status, body = _raw(kube, "GET", base)
        assert status == 200, (base, body)
        _discovery[base] = {r["kind"]: r for r in body["resources"] if "/" not in r["name"]}
    res = _discovery[base].get(doc["kind"])
    assert res, f"the API server does not serve {doc['kind']} in {api_version}"
    if res["namespaced"]:
        ns = doc["metadata"].get("namespace", namespace)
        return f"{base}/namespaces/{ns}/{res['name']}"
    return f"{base}/{res['name']}"


def apply_all(kube, docs: list[dict], namespace: str) -> list[tuple[str, str]]:
    """POST every object with strict field validation (unknown or duplicate fields are errors)."""
    created, errors = [], []
    for doc in docs:
        path = resource_path(kube, doc, namespace)
        status, body = _raw(kube, "POST", path + "?fieldValidation=Strict", body=doc)
        if status != 201:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: HTTP {status}: {body and body.get('message')}")
        else:
            created.append((doc["kind"], doc["metadata"]["name"]))
    assert not errors, "\n".join(errors)
    return created


@pytest.fixture(scope="module")
def applied(kube, crds, helm, tmp_path_factory):
    from kubernetes import client

    core = client.CoreV1Api(kube.api)
    for ns in (APPLY_NS, SCOPED_NS, WATCHED_NS, DEFAULT_NS):
        core.create_namespace({"metadata": {"name": ns}})
    tmp = tmp_path_factory.mktemp("chart-apply")
    main = render(helm, tmp, VALUE_SETS["cluster-wide"], "apply", APPLY_NS)
    scoped = render(helm, tmp, {"controller": {"watchNamespace": WATCHED_NS}}, "scoped", SCOPED_NS)
    dflt = render(helm, tmp, ROUTER, "dflt", DEFAULT_NS)
    return {
        "main": (main, apply_all(kube, main, APPLY_NS)),
        "scoped": (scoped, apply_all(kube, scoped, SCOPED_NS)),
        "default": (dflt, apply_all(kube, dflt, DEFAULT_NS)),
    }


def test_every_rendered_object_is_accepted(kube, applied):
    from kubernetes import client

    docs, created = applied["main"]
    assert sorted(created) == sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert {k for k, _ in created} == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
        "Secret",
        "NetworkPolicy",
        "PodDisruptionBudget",
    }
    # What the server stored is what was rendered (nothing pruned, nothing rejected silently).
    apps = client.AppsV1Api(kube.api)
    dep = apps.read_namespaced_deployment("apply-bakeoff-router", APPLY_NS)
    c = dep.spec.template.spec.containers[0]
    assert c.args[:4] == ["router", "--kubernetes", "--bakeoff", "shop"]
    assert c.security_context.read_only_root_filesystem is True
    assert c.security_context.capabilities.drop == ["ALL"]
    assert dep.spec.template.spec.security_context.seccomp_profile.type == "RuntimeDefault"
    assert [v.name for v in dep.spec.template.spec.volumes if v.empty_dir is not None] == ["tmp"]
    svc = client.CoreV1Api(kube.api).read_namespaced_service("apply-bakeoff-router", APPLY_NS)
    assert svc.metadata.labels["bakeoff.dev/router-for"] == "shop"
    assert {p.name: p.port for p in svc.spec.ports} == {"http": 80, "admin": 8081}
    assert svc.spec.cluster_ip  # allocated: a real Service
    # The controller finds router Services by label, as docs/kubernetes.md says.
    found = client.CoreV1Api(kube.api).list_namespaced_service(APPLY_NS, label_selector="bakeoff.dev/router-for=shop")
    assert [s.metadata.name for s in found.items] == ["apply-bakeoff-router"]
    _, scoped = applied["scoped"]
    assert ("Role", "scoped-bakeoff-controller") in scoped
    assert ("ClusterRole", "scoped-bakeoff-controller") not in scoped


def test_strict_apply_rejects_a_bad_manifest(kube, applied):
    # The check above could fail: a misspelt field is an error, not a warning.
    doc = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "typo", "namespace": APPLY_NS},
        "automountServiceAccountTokens": True,
    }
    status, body = _raw(kube, "POST", resource_path(kube, doc, APPLY_NS) + "?fieldValidation=Strict", body=doc)
    assert status == 400 and "unknown field" in body["message"], body


def can(
    kube,
    sa_ns: str,
    sa: str,
    verb: str,
    resource: str,
    group: str = "",
    namespace: str = "",
    subresource: str = "",
    name: str = "",
) -> bool:
    from kubernetes import client

    review = client.AuthorizationV1Api(kube.api).create_subject_access_review(
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": f"system:serviceaccount:{sa_ns}:{sa}",
                "groups": SA_GROUPS(sa_ns),
                "resourceAttributes": {
                    "group": group,
                    "resource": resource,
                    "subresource": subresource,
                    "verb": verb,
                    "namespace": namespace,
                    "name": name,
                },
            },
        }
    )
    return bool(review.status.allowed)


def wait_allowed(kube, *args, **kw) -> None:
    """The RBAC authorizer reads roles from an informer: wait until a known grant is visible."""
    eventually(lambda: can(kube, *args, **kw), what=f"allowed: {args} {kw}", timeout=30, interval=0.1)


def _split(resource: str) -> tuple[str, str]:
    r, _, sub = resource.partition("/")
    return r, sub


def test_controller_permissions_by_subject_access_review(kube, applied):
    sa = "apply-bakeoff-controller"
    wait_allowed(kube, APPLY_NS, sa, "update", "leases", "coordination.k8s.io", APPLY_NS, name=sa)
    wait_allowed(kube, APPLY_NS, sa, "list", "bakeoffs", "bakeoff.dev", "")
    denied = []
    for group, resource, verb, _ in sorted(CONTROLLER_RULES):
        r, sub = _split(resource)
        for ns in ("some-team", APPLY_NS, ""):  # any namespace, and all namespaces at once
            if ns == "" and verb not in ("list", "watch"):
                continue
            if not can(
                kube,
                APPLY_NS,
                sa,
                verb,
                r,
                group,
                ns,
                sub,
                name="x" if verb in ("get", "update", "patch", "delete") else "",
            ):
                denied.append((group, resource, verb, ns))
    assert not denied, denied
    for verb, name in (("get", sa), ("update", sa), ("patch", sa), ("create", "")):
        assert can(kube, APPLY_NS, sa, verb, "leases", "coordination.k8s.io", APPLY_NS, name=name), verb

    must_deny = [
        ("get", "secrets", "", "some-team", "", ""),
        ("list", "secrets", "", "", "", ""),
        ("list", "secrets", "", APPLY_NS, "", ""),
        ("watch", "secrets", "", "some-team", "", ""),
        ("list", "pods", "", "some-team", "", ""),
        ("get", "pods", "", APPLY_NS, "", "p"),
        ("create", "pods", "", "some-team", "exec", "p"),
        ("delete", "bakeoffs", "bakeoff.dev", "some-team", "", "b"),
        ("create", "bakeoffs", "bakeoff.dev", "some-team", "", ""),
        ("delete", "variants", "bakeoff.dev", "some-team", "", "v"),
        ("deletecollection", "deployments", "apps", "some-team", "", ""),
        ("delete", "leases", "coordination.k8s.io", APPLY_NS, "", sa),
        ("list", "leases", "coordination.k8s.io", APPLY_NS, "", ""),
        ("get", "leases", "coordination.k8s.io", APPLY_NS, "", "someone-elses-lease"),
        ("update", "leases", "coordination.k8s.io", APPLY_NS, "", "someone-elses-lease"),
        ("get", "leases", "coordination.k8s.io", "kube-system", "", sa),
        ("create", "endpointslices", "discovery.k8s.io", "some-team", "", ""),
        ("get", "events", "", "some-team", "", "e"),
        ("delete", "bakeoffs", "bakeoff.dev", "some-team", "status", "b"),
        ("create", "rolebindings", "rbac.authorization.k8s.io", "some-team", "", ""),
        ("create", "serviceaccounts", "", "some-team", "token", "default"),
        ("list", "nodes", "", "", "", ""),
        ("get", "namespaces", "", "", "", "some-team"),
        ("create", "replicasets", "apps", "some-team", "", ""),
    ]
    allowed = [d for d in must_deny if can(kube, APPLY_NS, sa, d[0], d[1], d[2], d[3], d[4], d[5])]
    assert not allowed, allowed


def test_scoped_controller_permissions_by_subject_access_review(kube, applied):
    sa = "scoped-bakeoff-controller"
    wait_allowed(kube, SCOPED_NS, sa, "create", "deployments", "apps", WATCHED_NS)
    wait_allowed(kube, SCOPED_NS, sa, "update", "leases", "coordination.k8s.io", SCOPED_NS, name=sa)
    for verb, resource, group in (
        ("watch", "bakeoffs", "bakeoff.dev"),
        ("create", "services", ""),
        ("list", "endpointslices", "discovery.k8s.io"),
        ("create", "events", ""),
    ):
        assert can(kube, SCOPED_NS, sa, verb, resource, group, WATCHED_NS), (verb, resource)
    assert can(kube, SCOPED_NS, sa, "update", "bakeoffs", "bakeoff.dev", WATCHED_NS, "status", "b")
    for ns in (SCOPED_NS, APPLY_NS, "default", ""):  # outside the watched namespace: nothing
        for verb, resource, group in (
            ("get", "deployments", "apps"),
            ("list", "deployments", "apps"),
            ("list", "bakeoffs", "bakeoff.dev"),
            ("create", "services", ""),
            ("list", "configmaps", ""),
        ):
            assert not can(kube, SCOPED_NS, sa, verb, resource, group, ns), (verb, resource, ns)
    assert not can(kube, SCOPED_NS, sa, "get", "secrets", "", WATCHED_NS)
    assert not can(kube, SCOPED_NS, sa, "list", "pods", "", WATCHED_NS)


def test_router_permissions_by_subject_access_review(kube, applied):
    sa = "apply-bakeoff-router"
    wait_allowed(kube, APPLY_NS, sa, "watch", "bakeoffs", "bakeoff.dev", APPLY_NS)
    for verb in ("get", "list", "watch"):
        assert can(kube, APPLY_NS, sa, verb, "bakeoffs", "bakeoff.dev", APPLY_NS, name="shop" if verb == "get" else "")
        assert can(kube, APPLY_NS, sa, verb, "endpointslices", "discovery.k8s.io", APPLY_NS)
    must_deny = [
        ("update", "bakeoffs", "bakeoff.dev", APPLY_NS, "status", "shop"),
        ("patch", "bakeoffs", "bakeoff.dev", APPLY_NS, "", "shop"),
        ("get", "variants", "bakeoff.dev", APPLY_NS, "", "v"),
        ("get", "deployments", "apps", APPLY_NS, "", "d"),
        ("get", "secrets", "", APPLY_NS, "", "s"),
        ("create", "services", "", APPLY_NS, "", ""),
        ("list", "pods", "", APPLY_NS, "", ""),
        ("list", "bakeoffs", "bakeoff.dev", "", "", ""),  # not cluster-wide
        ("list", "bakeoffs", "bakeoff.dev", "other", "", ""),  # not in another namespace
        ("list", "endpointslices", "discovery.k8s.io", "other", "", ""),
        ("create", "leases", "coordination.k8s.io", APPLY_NS, "", ""),
        ("create", "events", "", APPLY_NS, "", ""),
    ]
    allowed = [d for d in must_deny if can(kube, APPLY_NS, sa, d[0], d[1], d[2], d[3], d[4], d[5])]
    assert not allowed, allowed


def rules_as(kube, user: str, namespace: str) -> set[tuple]:
    """What the authorizer grants USER in NAMESPACE: a SelfSubjectRulesReview made while impersonating them
    (impersonating a ServiceAccount adds its groups)."""
    from kubernetes import client

    api = client.ApiClient(kube.api.configuration, header_name="Impersonate-User", header_value=user)
    try:
        review = client.AuthorizationV1Api(api).create_self_subject_rules_review(
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectRulesReview",
                "spec": {"namespace": namespace},
            }
        )
    finally:
        api.close()
    assert not review.status.incomplete, review.status.evaluation_error
    return {
        (g, r, v, n)
        for rule in review.status.resource_rules
        for g in rule.api_groups or [""]
        for r in rule.resources or []
        for v in rule.verbs
        for n in rule.resource_names or [None]
    }


def test_granted_rules_are_exactly_the_documented_ones(kube, applied):
    """Nothing more than the list: the authorizer's whole rule set for each ServiceAccount, minus what any
    ServiceAccount gets (discovery, self-reviews), is exactly the chart's list."""
    wait_allowed(kube, APPLY_NS, "apply-bakeoff-router", "list", "endpointslices", "discovery.k8s.io", APPLY_NS)
    wait_allowed(kube, APPLY_NS, "apply-bakeoff-controller", "create", "leases", "coordination.k8s.io", APPLY_NS)
    sa = lambda name: f"system:serviceaccount:{APPLY_NS}:{name}"  # noqa: E731
    baseline = rules_as(kube, sa("nobody"), APPLY_NS)
    assert not any(r in ("secrets", "deployments", "bakeoffs") for _, r, _, _ in baseline), baseline
    controller = rules_as(kube, sa("apply-bakeoff-controller"), APPLY_NS) - baseline
    assert controller == CONTROLLER_RULES | leader_rules("apply-bakeoff-controller")
    router = rules_as(kube, sa("apply-bakeoff-router"), APPLY_NS) - baseline
    assert router == ROUTER_RULES
    # In any other namespace the cluster-wide controller has its ClusterRole only; the router nothing.
    assert rules_as(kube, sa("apply-bakeoff-controller"), "some-team") - baseline == CONTROLLER_RULES
    assert rules_as(kube, sa("apply-bakeoff-router"), "some-team") - baseline == set()
    scoped = f"system:serviceaccount:{SCOPED_NS}:scoped-bakeoff-controller"
    assert rules_as(kube, scoped, WATCHED_NS) - baseline == CONTROLLER_RULES
    assert rules_as(kube, scoped, SCOPED_NS) - baseline == leader_rules("scoped-bakeoff-controller")
    assert rules_as(kube, scoped, "some-team") - baseline == set()


def test_default_install_can_i_list(kube, applied):
    """`kubectl auth can-i --list` for the default install's ServiceAccounts, in their namespace and in
    another: everything in the release namespace, nothing anywhere else (namespace-scoped by default)."""
    sa = lambda name: f"system:serviceaccount:{DEFAULT_NS}:{name}"  # noqa: E731
    wait_allowed(kube, DEFAULT_NS, "dflt-bakeoff-controller", "list", "bakeoffs", "bakeoff.dev", DEFAULT_NS)
    wait_allowed(
        kube,
        DEFAULT_NS,
        "dflt-bakeoff-controller",
        "patch",
        "leases",
        "coordination.k8s.io",
        DEFAULT_NS,
        name="dflt-bakeoff-controller",
    )
    baseline = rules_as(kube, sa("nobody"), DEFAULT_NS)
    controller = rules_as(kube, sa("dflt-bakeoff-controller"), DEFAULT_NS) - baseline
    assert controller == CONTROLLER_RULES | leader_rules("dflt-bakeoff-controller")
    assert rules_as(kube, sa("dflt-bakeoff-controller"), "some-team") - baseline == set()
    assert not can(kube, DEFAULT_NS, "dflt-bakeoff-controller", "list", "bakeoffs", "bakeoff.dev", "")
    assert not can(kube, DEFAULT_NS, "dflt-bakeoff-controller", "create", "deployments", "apps", "some-team")
    assert rules_as(kube, sa("dflt-bakeoff-router"), DEFAULT_NS) - baseline == ROUTER_RULES
    summary = sorted(controller)
    print("can-i --list (controller, release namespace):")
    for g, r, v, n in summary:
        print(f"  {r}{'.' + g if g else ''} {v}{' ' + n if n else ''}")


def test_helm_install_and_upgrade(kube, crds, helm, tmp_path):
    """The chart through helm itself: install (CRDs already there are left alone), then an upgrade that
    adds a router and changes the scope."""
    from kubernetes import client

    ns = "chart-helm"
    args = ["--namespace", ns, "--kubeconfig", kube.kubeconfig]
    r = run_helm(
        helm,
        "install",
        "bakeoff",
        str(CHART),
        *args,
        "--create-namespace",
        "-f",
        values_file(tmp_path, {"controller": {"clusterWide": True}}),
    )
    assert "STATUS: deployed" in r.stdout, r.stdout
    apps = client.AppsV1Api(kube.api)
    assert apps.read_namespaced_deployment("bakeoff-controller", ns).spec.replicas == 2
    r = run_helm(
        helm,
        "upgrade",
        "bakeoff",
        str(CHART),
        *args,
        "-f",
        values_file(tmp_path, {"router": {"bakeoff": "shop"}, "controller": {"watchNamespace": ns}}),
    )
    assert "STATUS: deployed" in r.stdout and 'Router for Bakeoff "shop"' in r.stdout, r.stdout
    assert "/-/routes" not in r.stdout and "curl localhost:8081/-/snapshot" in r.stdout, r.stdout
    # the events token survives the upgrade (helm lookup), so senders configured with it keep working
    core = client.CoreV1Api(kube.api)
    token = core.read_namespaced_secret("bakeoff-router-events", ns).data["token"]
    run_helm(helm, "upgrade", "bakeoff", str(CHART), *args, "--reuse-values")
    assert core.read_namespaced_secret("bakeoff-router-events", ns).data["token"] == token
    assert apps.read_namespaced_deployment("bakeoff-router", ns).spec.replicas == 2
    rbac = client.RbacAuthorizationV1Api(kube.api)
    with pytest.raises(client.ApiException) as err:  # the upgrade removed the ClusterRole
        rbac.read_cluster_role("bakeoff-controller")
    assert err.value.status == 404
    role = rbac.read_namespaced_role("bakeoff-controller", ns)
    assert (
        rule_set(
            {"rules": [{"apiGroups": x.api_groups, "resources": x.resources, "verbs": x.verbs} for x in role.rules]}
        )
        == CONTROLLER_RULES
    )
    r = run_helm(helm, "uninstall", "bakeoff", *args)
    assert apps.list_namespaced_deployment(ns).items == []


def test_router_service_exposes_its_app_protocol(helm, tmp_path):
    """router.service.appProtocol (e.g. kubernetes.io/h2c for gRPC callers) lands on the traffic port only."""
    docs = render(helm, tmp_path, {"router": {"bakeoff": "shop", "service": {"appProtocol": "kubernetes.io/h2c"}}})
    svc = [d for d in by_kind(docs, "Service") if d["metadata"]["name"].endswith("router")][0]
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["http"]["appProtocol"] == "kubernetes.io/h2c" and "appProtocol" not in ports["admin"]
    plain = render(helm, tmp_path, {"router": {"bakeoff": "shop"}})
    svc = [d for d in by_kind(plain, "Service") if d["metadata"]["name"].endswith("router")][0]
    assert all("appProtocol" not in p for p in svc["spec"]["ports"])
