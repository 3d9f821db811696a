"""A bake-off's objects through real Kubernetes controllers (tests/kube/realcluster.py): the
candidate Deployment the bakeoff controller creates becomes Available through a real ReplicaSet and
pods that kwok runs on fake nodes, its Service gets an EndpointSlice from the endpointslice
controller, and deleting the Variant removes everything below it through owner references and the
garbage collector. Nothing here patches a status by hand.

The bakeoff controller runs as the real `bakeoff controller` process with a kubeconfig, the way the
chart's image runs it.
"""

from __future__ import annotations

import asyncio

import pytest

from .conftest import GROUP, VERSION, crd_documents, wait_established
from .realcluster import real_cluster  # noqa: F401 - the fixture
from .test_controller import SnapshotServer, bakeoff_doc, mainline_deployment, variant_doc, wait_for
from .test_entrypoints import start, stop

kclient = pytest.importorskip("kubernetes.client")

NS = "life"


def available(apps, name: str) -> bool:
    d = apps.read_namespaced_deployment(name, NS)
    conds = {c.type: c.status for c in d.status.conditions or []}
    return (
        d.status.observed_generation == d.metadata.generation
        and (d.status.available_replicas or 0) == d.spec.replicas
        and (d.status.updated_replicas or 0) == d.spec.replicas
        and conds.get("Available") == "True"
    )


def owned_by(obj, uid: str) -> bool:
    return any(o.uid == uid for o in obj.metadata.owner_references or [])


async def until(fn, timeout: float = 60.0, what: str = "condition"):
    return await asyncio.to_thread(wait_for, fn, timeout, what)


async def test_candidate_lifecycle_through_real_controllers(real_cluster, tmp_path):  # noqa: F811
    from bakeoff.judge.simulate import Arm

    kube = real_cluster.kube
    ext = kclient.ApiextensionsV1Api(kube.api)
    for doc in crd_documents():
        ext.create_custom_resource_definition(doc)
        wait_established(ext, doc["metadata"]["name"])
    core, apps = kclient.CoreV1Api(kube.api), kclient.AppsV1Api(kube.api)
    custom, disco = kclient.CustomObjectsApi(kube.api), kclient.DiscoveryV1Api(kube.api)
    core.create_namespace({"metadata": {"name": NS}})

    # the mainline becomes Available by itself: ReplicaSet, scheduled pods, kwok marks them Ready
    apps.create_namespaced_deployment(NS, mainline_deployment())
    await until(lambda: available(apps, "shop"), what="mainline Available")

    server = SnapshotServer({"mainline": Arm(), "fast": Arm()})
    url = await server.start()
    server.routed = {"mainline", "fast"}
    await until(lambda: custom.list_namespaced_custom_object(GROUP, VERSION, NS, "bakeoffs") is not None)
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "bakeoffs", bakeoff_doc("shop", url, minSamples=10**6))
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "variants", variant_doc("fast"))
    # the controller as the image runs it: `bakeoff controller`, a process of its own
    controller = start(
        ["controller", "--kubeconfig", kube.kubeconfig, "-n", NS, "--lease-namespace", NS, "--interval", "0.5"],
        tmp_path / "controller.log",
    )
    try:
        # the candidate Deployment: created by the bakeoff controller, Available through real controllers
        dep = await until(lambda: apps.read_namespaced_deployment("shop-fast", NS), what="Deployment shop-fast")
        await until(lambda: available(apps, "shop-fast"), what="shop-fast Available")
        rss = [rs for rs in apps.list_namespaced_replica_set(NS).items if owned_by(rs, dep.metadata.uid)]
        assert len(rss) == 1 and rss[0].status.ready_replicas == dep.spec.replicas
        pods = [p for p in core.list_namespaced_pod(NS).items if owned_by(p, rss[0].metadata.uid)]
        assert len(pods) == dep.spec.replicas
        for p in pods:
            assert p.spec.node_name in real_cluster.nodes and p.status.phase == "Running", p.status
            assert p.status.pod_ip and p.spec.containers[0].image == "registry.example/shop:fast"

        # its Service's EndpointSlice, from the endpointslice controller: the pods' IPs, ready
        def slice_ips():
            slices = disco.list_namespaced_endpoint_slice(NS, label_selector="kubernetes.io/service-name=shop-fast")
            return sorted(a for s in slices.items for e in s.endpoints or [] if e.conditions.ready for a in e.addresses)

        await until(lambda: slice_ips() == sorted(p.status.pod_ip for p in pods), what="EndpointSlice of shop-fast")

        # admitted to traffic on the strength of that real availability
        def routed():
            b = custom.get_namespaced_custom_object(GROUP, VERSION, NS, "bakeoffs", "shop")
            rows = ((b.get("status") or {}).get("routing") or {}).get("variants") or []
            return {r["name"]: r["weight"] for r in rows}.get("fast", 0) > 0

        await until(routed, what="fast routed")

        # deleting the Variant: its Deployment, ReplicaSet, pods, Service and EndpointSlice all go
        custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "variants", "fast")

        def gone() -> bool:
            left = [
                rs.metadata.name for rs in apps.list_namespaced_replica_set(NS).items if owned_by(rs, dep.metadata.uid)
            ]
            left += [p.metadata.name for p in core.list_namespaced_pod(NS).items if owned_by(p, rss[0].metadata.uid)]
            left += [
                d.metadata.name for d in apps.list_namespaced_deployment(NS).items if d.metadata.name == "shop-fast"
            ]
            left += [s.metadata.name for s in core.list_namespaced_service(NS).items if s.metadata.name == "shop-fast"]
            left += slice_ips()
            return not left

        await until(gone, timeout=90, what="the Variant's children garbage-collected")

        def variant_gone() -> bool:  # the controller lets go of its finalizer once the children are gone
            try:
                custom.get_namespaced_custom_object(GROUP, VERSION, NS, "variants", "fast")
            except kclient.ApiException as e:
                return e.status == 404
            return False

        await until(variant_gone, timeout=30, what="the Variant itself deleted")
        assert available(apps, "shop")  # the mainline untouched
        assert controller.poll() is None, (tmp_path / "controller.log").read_text()[-3000:]  # ran throughout
    except BaseException:
        # what the controller and the resources said, for the failure report
        for plural in ("bakeoffs", "variants"):
            for o in custom.list_namespaced_custom_object(GROUP, VERSION, NS, plural)["items"]:
                print(plural, o["metadata"]["name"], o.get("status"))
        raise
    finally:
        assert stop(controller) == 0, (tmp_path / "controller.log").read_text()[-3000:]
        await server.stop()
