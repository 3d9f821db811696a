"""The Kubernetes controller (controller/kube/) against a real kube-apiserver.

No kubelet or kube-controller-manager runs, so the tests do their part: they
mark Deployments available (and rolled out) by writing Deployment status as
the deployment controller would, and the judge reads snapshots from a small
HTTP server the test controls (judge.simulate.Stream: the judge itself is
tested in tests/judge; here the question is what the controller does with its
verdicts).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time

import numpy as np
import pytest

from bakeoff.controller.kube import objects as ko
from bakeoff.controller.kube.operator import KubeController, Lease, Settings
from bakeoff.judge.simulate import Arm, Stream
from tests.conftest import eventually, eventually_async

from .conftest import GROUP, VERSION, start_app

kclient = pytest.importorskip("kubernetes.client")

IMAGE_MAIN = "registry.example/shop:main"


# -- helpers ---------------------------------------------------------------------
NS_PREFIX = "ctl"


def apis(kube):
    return (kclient.CustomObjectsApi(kube.api), kclient.AppsV1Api(kube.api), kclient.CoreV1Api(kube.api))


def mainline_deployment(name: str = "shop") -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "tier": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "shop",
                            "image": IMAGE_MAIN,
                            "ports": [{"containerPort": 8000}],
                            "env": [{"name": "MODE", "value": "prod"}],
                        },
                        {"name": "sidecar", "image": "registry.example/sidecar:1"},
                    ]
                },
            },
        },
    }


def bakeoff_doc(name: str, source: str, **judge) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Bakeoff",
        "metadata": {"name": name},
        "spec": {
            "mainline": {"deployment": "shop"},
            "routing": {"steps": [0.1, 0.2], "stepInterval": 1, "maxCandidateShare": 0.5},
            "judge": {
                "source": source,
                "minSamples": 200,
                "interval": "1s",
                "objective": {"metric": "conversion", "kind": "proportion", "direction": "higher"},
                "guardrails": [{"metric": "error_rate", "maxIncrease": 0.01}],
                **judge,
            },
        },
    }


def variant_doc(name: str, bakeoff: str = "shop", image: str | None = None, **spec) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Variant",
        "metadata": {"name": name},
        "spec": {
            "bakeoff": bakeoff,
            "image": image or f"registry.example/shop:{name}",
            "change": {"commit": f"{name}123"},
            **spec,
        },
    }


def create(custom, ns: str, doc: dict) -> dict:
    plural = {"Bakeoff": "bakeoffs", "Variant": "variants"}[doc["kind"]]
    return custom.create_namespaced_custom_object(GROUP, VERSION, ns, plural, doc)


def get(custom, ns: str, plural: str, name: str) -> dict:
    return custom.get_namespaced_custom_object(GROUP, VERSION, ns, plural, name)


def mark_available(apps, ns: str, name: str, *, rolled_out: bool = True) -> None:
    """Write the Deployment's status as the deployment controller would once its pods are ready."""
    dep = apps.read_namespaced_deployment(name, ns)
    n = dep.spec.replicas or 1
    apps.patch_namespaced_deployment_status(
        name,
        ns,
        {
            "status": {
                "observedGeneration": dep.metadata.generation,
                "replicas": n,
                "updatedReplicas": n if rolled_out else 0,
                "readyReplicas": n,
                "availableReplicas": n,
                "conditions": [
                    {
                        "type": "Available",
                        "status": "True",
                        "reason": "MinimumReplicasAvailable",
                        "message": "ok",
                        "lastUpdateTime": "2026-01-01T00:00:00Z",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ],
            }
        },
    )


def shop_with_mainline(kube, ns: str, source: str, **judge):
    """The mainline Deployment "shop" (available) and a Bakeoff "shop" for it; the three APIs."""
    custom, apps, core = apis(kube)
    apps.create_namespaced_deployment(ns, mainline_deployment())
    mark_available(apps, ns, "shop")
    create(custom, ns, bakeoff_doc("shop", source, **judge))
    return custom, apps, core


async def candidates_available(apps, ns: str, names) -> None:
    """Wait for each candidate's Deployment, then mark it available."""
    for n in names:
        await await_for(lambda n=n: apps.read_namespaced_deployment(f"shop-{n}", ns), what=f"Deployment shop-{n}")
        mark_available(apps, ns, f"shop-{n}")


def wait_for(fn, timeout: float = 30.0, what: str = "condition"):
    def check():
        try:
            return fn()
        except kclient.ApiException as e:
            if e.status != 404:
                raise
            return None
        except KeyError:  # an object read before the controller wrote its status
            return None

    return eventually(check, what=what, timeout=timeout, interval=0.1)


async def await_for(fn, timeout: float = 30.0, what: str = "condition"):
    return await asyncio.to_thread(wait_for, fn, timeout, what)


def events_for(core, ns: str, name: str) -> list[str]:
    return [e.reason for e in core.list_namespaced_event(ns).items if e.involved_object.name == name]


async def event_seen(core, ns: str, name: str, reason: str) -> None:
    """Wait for an Event: the controller writes the status first and its Events after (record first)."""
    await await_for(lambda: reason in events_for(core, ns, name), what=f"a {reason} Event for {name}")


class SnapshotServer:
    """Serves judge.simulate snapshots on /-/snapshot; the test decides the variants' behaviour."""

    def __init__(self, arms: dict[str, Arm], per_look: int = 1500) -> None:
        self.stream = Stream(arms, np.random.default_rng(7), router_id="test-router", started_at=1.0)
        self.per_look = per_look
        self.fetches = 0

    async def start(self) -> str:
        from aiohttp import web

        async def snapshot(request):
            self.fetches += 1
            live = {n for n in self.stream.arms if n in self.routed}
            self.stream.advance({n: self.per_look for n in live})
            return web.json_response(self.stream.snapshot())

        self.routed: set[str] = set()
        app = web.Application()
        app.router.add_get("/-/snapshot", snapshot)
        self.runner, port = await start_app(app, "127.0.0.1")
        return f"http://127.0.0.1:{port}/-/snapshot"

    async def stop(self) -> None:
        await self.runner.cleanup()


@contextlib.asynccontextmanager
async def running(controller: KubeController):
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))
    try:
        yield controller
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def controller_for(kube, ns: str, *, leader_election: bool = True, **settings) -> KubeController:
    """A controller of namespace ``ns`` (its Lease there too) at the tests' pace; ``settings`` as in Settings."""
    settings.setdefault("interval", 0.2)
    settings.setdefault("lease", Lease(namespace=ns) if leader_election else None)
    return KubeController(kube.api, Settings(namespace=ns, **settings))


def routing_of(b: dict) -> dict[str, float]:
    return {e["name"]: e["weight"] for e in ((b.get("status") or {}).get("routing") or {}).get("variants", [])}


# -- pure object builders ----------------------------------------------------------
def test_child_names_are_dns_labels_and_stay_distinct():
    assert ko.child_name("shop", "cached") == "shop-cached"
    a, b = ko.child_name("shop", "v1_2"), ko.child_name("shop", "v1-2")
    assert a != b and b == "shop-v1-2"
    long = ko.child_name("s" * 60, "candidate-number-one")
    assert len(long) <= 63 and long[-9] == "-"
    assert ko.child_name("9lives", "x")[0].isalpha()
    for n in (a, long, ko.child_name("9lives", "x")):
        assert all(c.isalnum() and c.islower() or c.isdigit() or c == "-" for c in n), n


def test_candidate_template_drops_the_mainline_selector_and_swaps_one_image():
    dep = {**mainline_deployment(), "metadata": {"name": "shop", "namespace": "x"}}
    tpl = ko.candidate_template(dep, "img:2", None, "shop", "fast", {"FLAG": "on"})
    labels = tpl["metadata"]["labels"]
    assert "app" not in labels and labels["tier"] == "web"
    assert labels[ko.LABEL_VARIANT] == "fast" and labels[ko.LABEL_BAKEOFF] == "shop"
    c0, c1 = tpl["spec"]["containers"]
    assert c0["image"] == "img:2" and c1["image"] == "registry.example/sidecar:1"
    assert {"name": "FLAG", "value": "on"} in c0["env"] and {"name": "MODE", "value": "prod"} in c0["env"]
    tpl = ko.candidate_template(dep, "img:3", "sidecar", "shop", "fast")
    assert [c["image"] for c in tpl["spec"]["containers"]] == [IMAGE_MAIN, "img:3"]
    with pytest.raises(ko.ObjectError, match="no container named 'nope'.*spec.mainline.container"):
        ko.candidate_template(dep, "img", "nope", "shop", "fast")
    assert ko.mainline_port(dep, None) == 8000 and ko.mainline_port(dep, 9000) == 9000
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_MAIN  # not mutated


# -- the whole loop on the API server -------------------------------------------------
async def test_rollback_and_promotion_end_to_end(kube, ns):
    custom, apps, core = apis(kube)
    apps.create_namespaced_deployment(ns, mainline_deployment())
    mark_available(apps, ns, "shop")
    server = SnapshotServer(
        {"mainline": Arm(conversion=0.05), "fast": Arm(conversion=0.15), "buggy": Arm(error_rate=0.3)}
    )
    url = await server.start()
    create(custom, ns, bakeoff_doc("shop", url))
    create(custom, ns, variant_doc("fast"))
    create(custom, ns, variant_doc("buggy", replicas=3))
    ctl = controller_for(kube, ns)
    try:
        async with running(ctl):
            # Deployments cloned from the mainline, with the candidate's image and labels
            dep = await await_for(lambda: apps.read_namespaced_deployment("shop-buggy", ns), what="shop-buggy")
            assert dep.spec.replicas == 3
            assert dep.spec.template.spec.containers[0].image == "registry.example/shop:buggy"
            assert dep.spec.template.spec.containers[1].image == "registry.example/sidecar:1"
            assert "app" not in dep.spec.template.metadata.labels
            assert dep.spec.selector.match_labels == {ko.LABEL_BAKEOFF: "shop", ko.LABEL_VARIANT: "buggy"}
            owner = dep.metadata.owner_references[0]
            assert (owner.kind, owner.name) == ("Variant", "buggy")
            svc = await await_for(lambda: core.read_namespaced_service("shop-mainline", ns), what="mainline svc")
            assert svc.spec.selector == {"app": "shop"} and svc.spec.ports[0].port == 8000
            await await_for(lambda: core.read_namespaced_service("shop-fast", ns), what="fast svc")
            # the Variants' status is a mirror written after the converger made the Services (operator.py
            # "act"): the Service can be there a moment before the status, so wait for the status too
            v = await await_for(
                lambda: (lambda v: v if v["status"].get("phase") else None)(get(custom, ns, "variants", "fast")),
                what="the fast Variant's status",
            )
            assert ko.FINALIZER in v["metadata"]["finalizers"]
            assert v["status"]["phase"] == "Pending"
            b = get(custom, ns, "bakeoffs", "shop")
            assert routing_of(b) == {"mainline": 1.0}  # nobody else is healthy yet

            # healthy candidates are admitted on the first step
            await await_for(lambda: apps.read_namespaced_deployment("shop-fast", ns), what="shop-fast")
            mark_available(apps, ns, "shop-fast")
            mark_available(apps, ns, "shop-buggy")
            b = await await_for(
                lambda: (lambda b: b if len(routing_of(b)) == 3 else None)(get(custom, ns, "bakeoffs", "shop")),
                what="three routed variants",
            )
            r = routing_of(b)
            assert r["fast"] == r["buggy"] == 0.1 and abs(r["mainline"] - 0.8) < 1e-9
            assert b["status"]["routing"]["variants"][0]["port"] == 8000
            # each entry carries its Variant's commit, for the routers' spans (service.version)
            assert {e["name"]: e.get("commit") for e in b["status"]["routing"]["variants"]} == {
                "buggy": "buggy123",
                "fast": "fast123",
                "mainline": None,
            }
            server.routed = set(r)

            # the buggy build is rolled back: out of the routing, scaled to zero, an Event says why
            v = await await_for(
                lambda: (lambda v: v if v["status"].get("phase") == "RolledBack" else None)(
                    get(custom, ns, "variants", "buggy")
                ),
                what="buggy rolled back",
            )
            assert "error_rate" in v["status"]["reason"]
            assert "buggy" not in routing_of(get(custom, ns, "bakeoffs", "shop"))
            await await_for(
                lambda: apps.read_namespaced_deployment("shop-buggy", ns).spec.replicas == 0,
                what="buggy scaled to zero",
            )
            await event_seen(core, ns, "buggy", "RolledBack")
            conds = {c["type"]: c for c in v["status"]["conditions"]}
            assert conds["RolledBack"]["status"] == "True" and conds["Accepted"]["status"] == "True"

            # fast wins: recorded, then the mainline Deployment carries its image
            b = await await_for(
                lambda: (lambda b: b if b["status"].get("phase") == "Promoted" else None)(
                    get(custom, ns, "bakeoffs", "shop")
                ),
                timeout=60,
                what="promotion",
            )
            assert b["status"]["winner"] == "fast" and b["status"]["decision"]["action"] == "promote"
            main = await await_for(
                lambda: (
                    lambda d: d if d.metadata.annotations and ko.ANN_PROMOTION in d.metadata.annotations else None
                )(apps.read_namespaced_deployment("shop", ns)),
                what="mainline patched",
            )
            assert main.spec.template.spec.containers[0].image == "registry.example/shop:fast"
            assert main.spec.template.metadata.labels == {"app": "shop", "tier": "web"}
            previous = json.loads(main.metadata.annotations[ko.ANN_PREVIOUS_TEMPLATE])
            assert previous["spec"]["containers"][0]["image"] == IMAGE_MAIN
            promo = json.loads(main.metadata.annotations[ko.ANN_PROMOTION])
            assert promo["variant"] == "fast" and promo["uid"] == get(custom, ns, "variants", "fast")["metadata"]["uid"]
            await await_for(
                lambda: get(custom, ns, "variants", "fast")["status"]["phase"] == "Promoted", what="Variant mirror"
            )
            # hand-over: the winner's copy is scaled to the mainline's 2 replicas before it takes all traffic
            await await_for(
                lambda: apps.read_namespaced_deployment("shop-fast", ns).spec.replicas == 2, what="winner scaled up"
            )
            r = routing_of(get(custom, ns, "bakeoffs", "shop"))
            assert set(r) == {"mainline", "fast"} and r["mainline"] > 0.5 and abs(sum(r.values()) - 1) < 1e-5
            mark_available(apps, ns, "shop-fast")
            await await_for(
                lambda: routing_of(get(custom, ns, "bakeoffs", "shop")) == {"fast": 1.0}, what="all to the winner"
            )
            await event_seen(core, ns, "fast", "Promoted")
            await event_seen(core, ns, "shop", "MainlinePatched")

            # once the mainline has rolled out, traffic goes to it and the winner's copy is scaled down
            mark_available(apps, ns, "shop")
            b = await await_for(
                lambda: (lambda b: b if b["status"]["routing"]["variants"][0]["service"] == "shop-mainline" else None)(
                    get(custom, ns, "bakeoffs", "shop")
                ),
                what="hand-over",
            )
            assert routing_of(b) == {"fast": 1.0}
            await await_for(
                lambda: apps.read_namespaced_deployment("shop-fast", ns).spec.replicas == 0,
                what="winner's copy scaled down",
            )
            gen = apps.read_namespaced_deployment("shop", ns).metadata.generation
            hist = [h["type"] for h in b["status"]["history"]]
            assert hist.count("promoted") == 1 and hist.count("rolled_back") == 1
            # a window in which a second (wrong) patch would show: there is nothing to poll for
            await asyncio.sleep(1.0)
            assert apps.read_namespaced_deployment("shop", ns).metadata.generation == gen  # patched once
            assert ctl.metrics.promotions._value.get() == 1
    finally:
        await server.stop()


async def test_restart_mid_promotion_patches_once(kube, ns):
    """A controller that recorded a promotion and died before patching: the next one patches, once."""
    custom, apps, core = shop_with_mainline(kube, ns, "http://127.0.0.1:1/-/snapshot")
    v = create(custom, ns, variant_doc("fast"))
    b = get(custom, ns, "bakeoffs", "shop")
    b["status"] = {
        "phase": "Promoted",
        "mainline": "fast",
        "winner": "fast",
        "candidates": 1,
        "decision": {
            "action": "promote",
            "winner": "fast",
            "previous_mainline": "mainline",
            "reason": "conversion better",
        },
        "variants": {"fast": {"phase": "Promoted", "step": 1, "uid": v["metadata"]["uid"]}},
        "routing": {"version": 3, "variants": [{"name": "fast", "service": "shop-fast", "port": 8000, "weight": 1.0}]},
    }
    custom.replace_namespaced_custom_object_status(GROUP, VERSION, ns, "bakeoffs", "shop", b)
    gen0 = apps.read_namespaced_deployment("shop", ns).metadata.generation

    async with running(controller_for(kube, ns, identity="first")) as ctl:
        main = await await_for(
            lambda: (lambda d: d if ko.ANN_PROMOTION in (d.metadata.annotations or {}) else None)(
                apps.read_namespaced_deployment("shop", ns)
            ),
            what="patch",
        )
        assert ctl.metrics.promotions._value.get() == 1
    gen1 = main.metadata.generation
    assert gen1 == gen0 + 1
    assert (
        json.loads(main.metadata.annotations[ko.ANN_PREVIOUS_TEMPLATE])["spec"]["containers"][0]["image"] == IMAGE_MAIN
    )

    # a second controller (a restart) sees the winner's uid in the annotation and leaves the Deployment alone
    async with running(controller_for(kube, ns, identity="second")) as ctl2:
        # passes counts whole passes: once one is done, a patch it was going to make is made
        await eventually_async(lambda: ctl2.passes >= 1, what="a pass of the second controller", timeout=30)
        # a finished Bakeoff gets passes on changes and resyncs only (watch mode), not on a clock
        assert ctl2.passes >= 1 and ctl2.metrics.promotions._value.get() == 0
    main = apps.read_namespaced_deployment("shop", ns)
    assert main.metadata.generation == gen1
    assert (
        json.loads(main.metadata.annotations[ko.ANN_PREVIOUS_TEMPLATE])["spec"]["containers"][0]["image"] == IMAGE_MAIN
    )
    assert get(custom, ns, "bakeoffs", "shop")["status"]["phase"] == "Promoted"


async def test_invalid_resources_get_conditions_naming_the_field(kube, ns):
    custom, apps, core = apis(kube)
    create(custom, ns, bakeoff_doc("shop", "http://127.0.0.1:1/-/snapshot"))  # no Deployment "shop" yet
    bad = variant_doc("local-only")
    del bad["spec"]["image"]
    bad["spec"]["command"] = ["python", "app.py", "{port}"]  # valid for the CRD (local mode), not in a cluster
    create(custom, ns, bad)
    create(custom, ns, variant_doc("stray", bakeoff="nosuch"))
    other = bakeoff_doc("wrong-container", "http://127.0.0.1:1/-/snapshot")
    other["spec"]["mainline"]["container"] = "nope"
    create(custom, ns, other)
    apps.create_namespaced_deployment(ns, mainline_deployment("other"))
    other2 = bakeoff_doc("other", "http://127.0.0.1:1/-/snapshot")
    other2["spec"]["mainline"] = {"deployment": "other", "container": "nope"}
    create(custom, ns, other2)

    def cond(plural, name, ctype):
        st = get(custom, ns, plural, name).get("status") or {}
        return next((c for c in st.get("conditions") or [] if c["type"] == ctype), None)

    async with running(controller_for(kube, ns)):
        c = await await_for(lambda: cond("bakeoffs", "shop", "Ready"), what="Ready condition")
        assert c["status"] == "False" and c["reason"] == "MainlineNotFound"
        assert "spec.mainline.deployment" in c["message"] and "'shop'" in c["message"]
        c = await await_for(lambda: cond("variants", "local-only", "Accepted"), what="Accepted condition")
        assert c["status"] == "False" and c["reason"] == "InvalidSpec"
        assert c["message"].startswith(f"Variant {ns}/local-only: spec.image is required")
        c = await await_for(lambda: cond("variants", "stray", "Accepted"), what="stray condition")
        assert c["reason"] == "BakeoffNotFound" and "spec.bakeoff" in c["message"] and "nosuch" in c["message"]
        c = await await_for(lambda: cond("bakeoffs", "other", "Ready"), what="other Ready")
        assert c["reason"] == "InvalidMainline" and "spec.mainline.container" in c["message"]
        # nothing was created for any of them
        assert not apps.list_namespaced_deployment(ns, label_selector="app.kubernetes.io/managed-by=bakeoff").items

        # fixing the cause clears the condition
        apps.create_namespaced_deployment(ns, mainline_deployment())
        mark_available(apps, ns, "shop")
        await await_for(lambda: (cond("bakeoffs", "shop", "Ready") or {}).get("status") == "True", what="Ready=True")


async def test_deleting_a_serving_variant_routes_around_it_then_cleans_up(kube, ns):
    custom, apps, core = apis(kube)
    apps.create_namespaced_deployment(ns, mainline_deployment())
    mark_available(apps, ns, "shop")
    server = SnapshotServer({"mainline": Arm(), "fast": Arm()})
    url = await server.start()
    create(custom, ns, bakeoff_doc("shop", url))
    create(custom, ns, variant_doc("fast"))
    try:
        async with running(controller_for(kube, ns)):
            await await_for(lambda: apps.read_namespaced_deployment("shop-fast", ns), what="deployment")
            mark_available(apps, ns, "shop-fast")
            await await_for(lambda: "fast" in routing_of(get(custom, ns, "bakeoffs", "shop")), what="routed")
            custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "variants", "fast")
            # the finalizer holds the Variant until routing has dropped it and its objects are gone
            await await_for(
                lambda: routing_of(get(custom, ns, "bakeoffs", "shop")) == {"mainline": 1.0},
                what="routing without fast",
            )

            def gone():
                try:
                    get(custom, ns, "variants", "fast")
                    return False
                except kclient.ApiException as e:
                    return e.status == 404

            await await_for(gone, what="variant deleted")
            with pytest.raises(kclient.ApiException) as e:
                apps.read_namespaced_deployment("shop-fast", ns)
            assert e.value.status == 404
            with pytest.raises(kclient.ApiException) as e:
                core.read_namespaced_service("shop-fast", ns)
            assert e.value.status == 404
            hist = get(custom, ns, "bakeoffs", "shop")["status"]["history"]
            assert any(h["type"] == "failed" and h["variant"] == "fast" and "deleted" in h["reason"] for h in hist)
    finally:
        await server.stop()


async def test_two_replicas_only_the_leader_acts(kube, ns):
    custom, apps, core = shop_with_mainline(kube, ns, "http://127.0.0.1:1/-/snapshot", candidates=2)
    kw = dict(lease=Lease("ctl", ns, duration=3.0, renew_deadline=2.0))
    a, b = controller_for(kube, ns, identity="replica-a", **kw), controller_for(kube, ns, identity="replica-b", **kw)
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    ta = asyncio.create_task(a.run(stop_a))
    await eventually_async(lambda: a.leading, what="replica-a leading", timeout=30)
    tb = asyncio.create_task(b.run(stop_b))
    try:
        leaders = []
        for _ in range(15):  # samples over ~3s, while b keeps trying to acquire: the behaviour under test
            await asyncio.sleep(0.2)
            leaders.append((a.leading, b.leading))
        assert all(x != y for x, y in leaders), leaders  # never both, never neither once started
        assert a.leading and b.passes == 0 and a.passes > 0
        create(custom, ns, variant_doc("fast"))
        await await_for(lambda: apps.read_namespaced_deployment("shop-fast", ns), what="deployment by the leader")
        instances = {e.reporting_instance for e in core.list_namespaced_event(ns).items}
        assert instances == {"replica-a"}

        # the leader dies without releasing the Lease (as under SIGKILL: its release never runs);
        # the other takes over once the record has not changed for the lease duration
        a.elector.release = lambda: None
        ta.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ta
        t0 = time.monotonic()
        await await_for(lambda: b.leading, timeout=15, what="replica-b leading")
        took = time.monotonic() - t0
        print(f"failover after {took:.1f}s (lease 3s)")
        assert took >= 2.0  # not before the dead leader's lease could have run out
        lease = kclient.CoordinationV1Api(kube.api).read_namespaced_lease("ctl", ns)
        assert lease.spec.holder_identity == "replica-b" and lease.spec.lease_transitions == 1
        create(custom, ns, variant_doc("slow"))
        await await_for(lambda: apps.read_namespaced_deployment("shop-slow", ns), what="deployment by b")
        ev = [e for e in core.list_namespaced_event(ns).items if e.involved_object.name == "slow"]
        assert ev and {e.reporting_instance for e in ev} == {"replica-b"}
    finally:
        stop_b.set()
        stop_a.set()
        await asyncio.wait_for(tb, 30)
    # a clean stop gives the Lease up
    lease = kclient.CoordinationV1Api(kube.api).read_namespaced_lease("ctl", ns)
    assert not lease.spec.holder_identity


async def test_concurrent_writers_get_409s_and_nothing_is_lost(kube, ns):
    """Another writer keeps changing the Bakeoff; the controller's stale writes fail and are redone."""
    custom, apps, core = apis(kube)
    apps.create_namespaced_deployment(ns, mainline_deployment())
    mark_available(apps, ns, "shop")
    server = SnapshotServer({"mainline": Arm(), "fast": Arm(), "slow": Arm(), "buggy": Arm(error_rate=0.4)})
    url = await server.start()
    create(custom, ns, bakeoff_doc("shop", url))
    for n in ("fast", "slow", "buggy"):
        create(custom, ns, variant_doc(n))
    stop_writer = threading.Event()
    writes = [0]

    def writer():
        i = 0
        while not stop_writer.is_set():
            i += 1
            with contextlib.suppress(kclient.ApiException):
                custom.patch_namespaced_custom_object(
                    GROUP, VERSION, ns, "bakeoffs", "shop", {"metadata": {"annotations": {"example.com/touch": str(i)}}}
                )
                writes[0] += 1
            time.sleep(0.15)  # the other writer's pace: part of the scenario

    th = threading.Thread(target=writer, daemon=True)
    ctl = controller_for(kube, ns, interval=0.1)
    try:
        th.start()
        async with running(ctl):
            await candidates_available(apps, ns, ("fast", "slow", "buggy"))
            await await_for(lambda: len(routing_of(get(custom, ns, "bakeoffs", "shop"))) == 4, what="all routed")
            server.routed = {"mainline", "fast", "slow", "buggy"}
            await await_for(
                lambda: get(custom, ns, "variants", "buggy")["status"].get("phase") == "RolledBack",
                timeout=60,
                what="buggy rolled back",
            )
            seen = ctl.passes  # a few more passes beside the writer: no transition may be recorded twice
            await eventually_async(lambda: ctl.passes >= seen + 5, what="five more passes", timeout=60)
    finally:
        stop_writer.set()
        th.join(5)
        await server.stop()
    assert writes[0] > 5  # (whether a write of the controller went stale here depends on timing; see below)
    hist = get(custom, ns, "bakeoffs", "shop")["status"]["history"]
    admitted = [h["variant"] for h in hist if h["type"] == "admitted"]
    assert sorted(admitted) == ["buggy", "fast", "slow"]  # each transition recorded exactly once
    assert [h["variant"] for h in hist if h["type"] == "rolled_back"] == ["buggy"]
    assert get(custom, ns, "bakeoffs", "shop")["metadata"]["annotations"]["example.com/touch"]  # theirs kept


async def test_a_spec_update_applies_on_the_next_pass(kube, ns):
    custom, apps, core = shop_with_mainline(kube, ns, "http://127.0.0.1:1/-/snapshot")
    create(custom, ns, variant_doc("fast"))
    async with running(controller_for(kube, ns)):
        await await_for(lambda: apps.read_namespaced_deployment("shop-fast", ns), what="deployment")
        mark_available(apps, ns, "shop-fast")
        await await_for(lambda: routing_of(get(custom, ns, "bakeoffs", "shop")).get("fast") == 0.1, what="step 0")
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, "bakeoffs", "shop", {"spec": {"routing": {"maxCandidateShare": 0.04}}}
        )
        b = await await_for(
            lambda: (lambda b: b if routing_of(b).get("fast") == 0.04 else None)(get(custom, ns, "bakeoffs", "shop")),
            what="the new cap applied",
        )
        assert b["status"]["observedGeneration"] == b["metadata"]["generation"] == 2
        assert abs(routing_of(b)["mainline"] - 0.96) < 1e-9
        # a bad edit is refused by the API server and changes nothing
        with pytest.raises(kclient.ApiException) as e:
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, ns, "bakeoffs", "shop", {"spec": {"routing": {"steps": [0.3, 0.1]}}}
            )
        assert e.value.status == 422 and "strictly increasing" in e.value.body
        # editing a running Variant's image does not swap the build under the judge
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, "variants", "fast", {"spec": {"image": "registry.example/shop:other"}}
        )

        def spec_applied():
            st = get(custom, ns, "variants", "fast").get("status") or {}
            c = next((c for c in st.get("conditions") or [] if c["type"] == "SpecApplied"), None)
            return c if c and c["status"] == "False" else None

        c = await await_for(spec_applied, what="SpecApplied=False")
        assert c["reason"] == "ChangedAfterStart" and "registry.example/shop:fast" in c["message"]
        dep = apps.read_namespaced_deployment("shop-fast", ns)
        assert dep.spec.template.spec.containers[0].image == "registry.example/shop:fast"


async def test_a_stale_write_is_refused_and_the_pass_redone(kube, ns):
    """Deterministic 409: another writer changes the Bakeoff between the controller's read and its write."""
    from bakeoff.controller.kube.operator import Conflict

    custom, apps, core = shop_with_mainline(kube, ns, "http://127.0.0.1:1/-/snapshot")
    create(custom, ns, variant_doc("fast"))
    ctl = controller_for(kube, ns, leader_election=False)

    def touch(i):
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, "bakeoffs", "shop", {"metadata": {"annotations": {"example.com/touch": str(i)}}}
        )

    views = ctl.read_world()
    touch(1)
    with pytest.raises(Conflict):
        ctl.reconcile_bakeoff(views[0], time.time(), None)
    # record first: the refused write means nothing was done
    assert not apps.list_namespaced_deployment(ns, label_selector="app.kubernetes.io/managed-by=bakeoff").items
    assert not core.list_namespaced_event(ns).items
    assert "status" not in get(custom, ns, "bakeoffs", "shop")

    # in the loop: the conflict is counted and the pass redone on a fresh read
    real_read = ctl.read_world

    def read_then_someone_writes():
        out = real_read()
        touch(2)
        return out

    assert ctl.metrics.conflicts._value.get() == 1  # the refused write above
    ctl.read_world = read_then_someone_writes
    await ctl.pass_once()
    assert ctl.metrics.conflicts._value.get() == 2
    assert ctl.metrics.reconciles.labels("ok")._value.get() == 1
    b = get(custom, ns, "bakeoffs", "shop")
    assert b["status"]["variants"]["fast"]["phase"] == "Pending"
    assert b["metadata"]["annotations"]["example.com/touch"] == "2"  # the other writer's change survives
    assert [e.reason for e in core.list_namespaced_event(ns).items].count("Entered") == 1
    assert apps.read_namespaced_deployment("shop-fast", ns).spec.replicas == 1


async def test_no_router_endpoints_holds_the_ramp_then_rolls_back(kube, ns):
    """Issue 10 item 2: Judging=False NoData never ramps; after noDataTimeout the candidate is rolled back."""
    custom, apps, core = apis(kube)
    apps.create_namespaced_deployment(ns, mainline_deployment())
    mark_available(apps, ns, "shop")
    doc = bakeoff_doc("shop", "unused")
    del doc["spec"]["judge"]["source"]  # the default: the routers of the bake-off, and there are none
    doc["spec"]["routing"]["noDataTimeout"] = "6s"
    create(custom, ns, doc)
    create(custom, ns, variant_doc("fast"))
    async with running(controller_for(kube, ns)):
        await candidates_available(apps, ns, ("fast",))

        def held():
            b = get(custom, ns, "bakeoffs", "shop")
            rec = ((b.get("status") or {}).get("variants") or {}).get("fast") or {}
            return b if "ramp held" in (rec.get("reason") or "") else None

        b = await await_for(held, what="the ramp held")
        assert b["status"]["variants"]["fast"]["step"] == 0
        assert "no router endpoints" in b["status"]["variants"]["fast"]["reason"]
        judging = next(c for c in b["status"]["conditions"] if c["type"] == "Judging")
        assert (judging["status"], judging["reason"]) == ("False", "NoData")
        assert routing_of(b) == {"mainline": 0.9, "fast": 0.1}

        b = await await_for(
            lambda: (lambda b: b if b["status"]["variants"]["fast"]["phase"] == "RolledBack" else None)(
                get(custom, ns, "bakeoffs", "shop")
            ),
            what="rolled back for lack of evidence",
        )
        reason = b["status"]["variants"]["fast"]["reason"]
        assert "noDataTimeout" in reason and "no router endpoints" in reason
        assert not any(h["type"] == "ramped" for h in b["status"]["history"])
        assert routing_of(b) == {"mainline": 1.0}
        await event_seen(core, ns, "fast", "RolledBack")


async def test_deleting_a_bakeoff_mid_run_routes_to_the_mainline_then_removes_candidates(kube, ns):
    """Issue 10 item 3: the Bakeoff's finalizer holds it until traffic is back and the candidates are gone."""
    server = SnapshotServer({"mainline": Arm(conversion=0.05), "fast": Arm(conversion=0.05)})
    url = await server.start()
    custom, apps, core = shop_with_mainline(kube, ns, url)
    create(custom, ns, variant_doc("fast"))
    try:
        async with running(controller_for(kube, ns, deletion_drain=3.0)):
            await candidates_available(apps, ns, ("fast",))
            b = await await_for(
                lambda: (lambda b: b if routing_of(b).get("fast") else None)(get(custom, ns, "bakeoffs", "shop")),
                what="the candidate routed",
            )
            assert ko.FINALIZER in b["metadata"]["finalizers"]
            version = b["status"]["routing"]["version"]
            custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "bakeoffs", "shop")

            # first the record: everything to the mainline, while the candidate still runs
            def mainline_only():
                b = get(custom, ns, "bakeoffs", "shop")
                return b if routing_of(b) == {"mainline": 1.0} else None

            b = await await_for(mainline_only, what="routing back to the mainline")
            assert b["metadata"]["deletionTimestamp"] and b["status"]["routing"]["version"] > version
            assert apps.read_namespaced_deployment("shop-fast", ns)  # removed only after the drain
            await event_seen(core, ns, "shop", "Deleting")

            # then the candidate's objects, then the Bakeoff itself
            def gone():
                try:
                    get(custom, ns, "bakeoffs", "shop")
                    return False
                except kclient.ApiException as e:
                    return e.status == 404

            await await_for(gone, what="the Bakeoff released")
            sel = "app.kubernetes.io/managed-by=bakeoff"
            deps = [d.metadata.name for d in apps.list_namespaced_deployment(ns, label_selector=sel).items]
            svcs = [s.metadata.name for s in core.list_namespaced_service(ns, label_selector=sel).items]
            assert "shop-fast" not in deps and "shop-fast" not in svcs
            assert apps.read_namespaced_deployment("shop", ns).spec.replicas == 2  # the mainline is untouched
    finally:
        await server.stop()


async def test_a_replica_that_lost_the_lease_stops_before_writing(kube, ns):
    """Issue 10 item 7: leadership lost mid-pass (the Lease task saw it) means no further write."""
    from bakeoff.controller.kube.context import NotLeading

    custom, apps, core = shop_with_mainline(kube, ns, "http://127.0.0.1:1/-/snapshot")
    create(custom, ns, variant_doc("fast"))
    ctl = controller_for(kube, ns)
    assert ctl.elector is not None
    views = ctl.read_world()
    ctl.elector.leading = False  # as the Lease task leaves it when a renewal came too late
    with pytest.raises(NotLeading):
        ctl.reconcile_bakeoff(views[0], time.time(), None)
    await ctl.pass_once()
    assert "status" not in get(custom, ns, "bakeoffs", "shop")
    assert not apps.list_namespaced_deployment(ns, label_selector="app.kubernetes.io/managed-by=bakeoff").items
    assert not core.list_namespaced_event(ns).items


async def test_one_pass_parses_the_bakeoff_once_and_each_variant_once(kube, ns, monkeypatch):
    """Issue 17 item 5: a pass validates the Bakeoff's spec once (the look and the reconcile share it),
    and each Variant once, without validating the Bakeoff again for each; the converger uses the
    Variants as parsed (spec.startTimeout, spec.replicas) instead of parsing their fields again."""
    from bakeoff.common import durations
    from bakeoff.controller import resources

    custom, apps, core = shop_with_mainline(kube, ns, "http://127.0.0.1:1/-/snapshot")
    names = ("fast", "cached", "slim")
    for n in names:
        create(custom, ns, variant_doc(n, startTimeout="2m", replicas=2))
    ctl = controller_for(kube, ns, leader_election=False)
    await ctl.pass_once()  # admits them: from now on every pass also looks (a look parses the spec)
    assert sorted(get(custom, ns, "bakeoffs", "shop")["status"]["variants"]) == sorted(names)

    calls = {"Bakeoff": 0, "Variant": 0}

    def counted(kind, fn):
        def wrapper(*a, **kw):
            calls[kind] += 1
            return fn(*a, **kw)

        return wrapper

    monkeypatch.setattr(resources, "_bakeoff", counted("Bakeoff", resources._bakeoff))
    monkeypatch.setattr(resources, "_variant", counted("Variant", resources._variant))
    # the readers parse durations through their own reference; any other parse is a second validation
    calls["duration elsewhere"] = 0
    monkeypatch.setattr(durations, "parse_duration", counted("duration elsewhere", durations.parse_duration))
    for n in names:  # gone: the converger makes them again this pass, from the parsed spec
        apps.delete_namespaced_deployment(f"shop-{n}", ns)
    passes = ctl.passes
    await ctl.pass_once()
    assert ctl.passes == passes + 1
    for n in names:
        dep = apps.read_namespaced_deployment(f"shop-{n}", ns)
        assert (dep.spec.replicas, dep.spec.progress_deadline_seconds) == (2, 120)
    status = get(custom, ns, "bakeoffs", "shop")["status"]
    judging = next(c for c in status["conditions"] if c["type"] == "Judging")
    assert judging["reason"] == "NoData"  # the pass looked (and found no router), so the look parsed too
    assert calls == {"Bakeoff": 1, "Variant": len(names), "duration elsewhere": 0}, calls
