"""The controller under the chart's own RBAC: its ServiceAccount, impersonated, runs a whole bake-off.

test_chart.py proves the Roles grant only the listed verbs; this proves those
verbs suffice: every call the controller makes in a rollback, a promotion, a
hand-over and a Variant's deletion goes through the API server's authorizer
as ``system:serviceaccount:<ns>:<controller SA>``, and not one is refused.
"""

from __future__ import annotations

import pytest

from bakeoff.controller.kube.operator import KubeController, Lease, Settings
from bakeoff.judge.simulate import Arm

from .test_chart import apply_all, helm, render  # noqa: F401 - helm is a fixture
from .test_controller import (
    GROUP,
    VERSION,
    SnapshotServer,
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

kclient = pytest.importorskip("kubernetes.client")

SYS_NS, WORK_NS = "rbac-system", "rbac-work"


def impersonating(kube, user: str):
    """An ApiClient that authenticates as the admin and asks to act as ``user`` (RBAC applies to user)."""
    base = kube.api.configuration
    conf = kclient.Configuration()
    conf.host, conf.ssl_ca_cert = base.host, base.ssl_ca_cert
    conf.api_key, conf.api_key_prefix = dict(base.api_key), dict(base.api_key_prefix)
    api = kclient.ApiClient(conf)
    api.set_default_header("Impersonate-User", user)
    return api


def api_errors(ctl: KubeController) -> dict[str, float]:
    out = {}
    for metric in ctl.metrics.api_errors.collect():
        for s in metric.samples:
            if s.name.endswith("_total") and s.value:
                out[s.labels["verb"]] = s.value
    return out


async def test_the_controller_needs_no_more_than_the_chart_grants(kube, crds, helm, tmp_path):  # noqa: F811
    core = kclient.CoreV1Api(kube.api)
    for ns in (SYS_NS, WORK_NS):
        core.create_namespace({"metadata": {"name": ns}})
    docs = render(helm, tmp_path, {"controller": {"watchNamespace": WORK_NS}}, "bo", SYS_NS)
    apply_all(
        kube,
        [
            d
            for d in docs
            if d["kind"] in ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
        ],
        SYS_NS,
    )
    dep = next(d for d in docs if d["kind"] == "Deployment" and "controller" in d["metadata"]["name"])
    pod = dep["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    lease = args[args.index("--lease-name") + 1]
    sa = pod["serviceAccountName"]
    api = impersonating(kube, f"system:serviceaccount:{SYS_NS}:{sa}")

    # the impersonation is real: what the chart does not grant is refused
    with pytest.raises(kclient.ApiException) as e:
        kclient.CoreV1Api(api).list_namespaced_secret(WORK_NS)
    assert e.value.status == 403
    with pytest.raises(kclient.ApiException) as e:
        kclient.AppsV1Api(api).list_namespaced_deployment("default")
    assert e.value.status == 403

    custom, apps = kclient.CustomObjectsApi(kube.api), kclient.AppsV1Api(kube.api)
    apps.create_namespaced_deployment(WORK_NS, mainline_deployment())
    mark_available(apps, WORK_NS, "shop")
    server = SnapshotServer(
        {"mainline": Arm(conversion=0.05), "fast": Arm(conversion=0.15), "buggy": Arm(error_rate=0.3), "extra": Arm()}
    )
    url = await server.start()
    create(custom, WORK_NS, bakeoff_doc("shop", url, candidates=3))
    for n in ("fast", "buggy", "extra"):
        create(custom, WORK_NS, variant_doc(n))
    ctl = KubeController(
        api, Settings(namespace=WORK_NS, identity="rbac-test", lease=Lease(lease, SYS_NS), interval=0.2)
    )
    try:
        async with running(ctl):
            await candidates_available(apps, WORK_NS, ("fast", "buggy", "extra"))
            await await_for(lambda: len(routing_of(get(custom, WORK_NS, "bakeoffs", "shop"))) == 4, what="routed")
            server.routed = {"mainline", "fast", "buggy", "extra"}
            # a Variant deleted while serving: finalizer, routing, cleanup
            custom.delete_namespaced_custom_object(GROUP, VERSION, WORK_NS, "variants", "extra")
            await await_for(
                lambda: get(custom, WORK_NS, "bakeoffs", "shop")["status"].get("phase") == "Promoted",
                timeout=60,
                what="promotion",
            )
            await await_for(
                lambda: (
                    "bakeoff.dev/promotion"
                    in (apps.read_namespaced_deployment("shop", WORK_NS).metadata.annotations or {})
                ),
                what="mainline patched",
            )
            mark_available(apps, WORK_NS, "shop")
            await await_for(
                lambda: (
                    get(custom, WORK_NS, "bakeoffs", "shop")["status"]["routing"]["variants"][0]["service"]
                    == "shop-mainline"
                ),
                what="hand-over",
            )
            await await_for(
                lambda: apps.read_namespaced_deployment("shop-fast", WORK_NS).spec.replicas == 0,
                what="winner copy scaled down",
            )
            await await_for(
                lambda: (
                    {"Entered", "Admitted", "RolledBack", "Promoted", "MainlinePatched", "MainlineServing"}
                    <= {e.reason for e in core.list_namespaced_event(WORK_NS).items}
                ),
                what="the events of the whole run",
            )
    finally:
        await server.stop()
        api.close()
    assert get(custom, WORK_NS, "variants", "buggy")["status"]["phase"] == "RolledBack"
    with pytest.raises(kclient.ApiException) as e:
        get(custom, WORK_NS, "variants", "extra")
    assert e.value.status == 404
    events = {e.reason for e in core.list_namespaced_event(WORK_NS).items}
    assert {"Entered", "Admitted", "RolledBack", "Promoted", "MainlinePatched", "MainlineServing"} <= events
    judge_cm = core.read_namespaced_config_map("shop-judge", WORK_NS)
    assert "state.json" in judge_cm.data
    lease_obj = kclient.CoordinationV1Api(kube.api).read_namespaced_lease(lease, SYS_NS)
    assert lease_obj.spec.lease_transitions == 0  # taken once, released at the end
    assert api_errors(ctl) == {}, f"calls refused or failed under the chart's RBAC: {api_errors(ctl)}"
    assert ctl.metrics.reconciles.labels("error")._value.get() == 0
