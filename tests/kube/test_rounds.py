"""Rounds: a Bakeoff created again under an earlier one's name is a new round (issue 16 items 10, 11).

Against the real kube-apiserver, with the controller running and `bakeoff submit` as a subprocess.
The routers outlive a round, so their cumulative counters carry earlier rounds' requests; and the
Variants of an earlier round stay in the namespace.
"""

from __future__ import annotations

import asyncio

import pytest

from bakeoff.judge.simulate import Arm

from .test_controller import (
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
from .test_submit_wait import submit

kclient = pytest.importorskip("kubernetes.client")


NS_PREFIX = "round"


def status_of(custom, ns: str, plural: str, name: str) -> dict:
    return get(custom, ns, plural, name).get("status") or {}


def accepted(custom, ns: str, name: str) -> dict | None:
    conds = status_of(custom, ns, "variants", name).get("conditions") or []
    return next((c for c in conds if c["type"] == "Accepted"), None)


def gone(fn) -> bool:
    try:
        fn()
    except kclient.ApiException as e:
        if e.status == 404:
            return True
        raise
    return False


async def test_a_new_round_never_readmits_an_earlier_rounds_variants(kube, ns):
    """Item 10. Before: the rolled-back 'bad' of round 1 entered round 2 again (its Deployment came back
    and took traffic) and `bakeoff submit` of the new build was refused (TooManyCandidates)."""
    custom, apps, _ = apis(kube)
    server = SnapshotServer({"mainline": Arm(), "bad": Arm(error_rate=0.3), "fresh": Arm()})
    url = await server.start()
    server.routed = {"mainline", "bad"}
    apps.create_namespaced_deployment(ns, mainline_deployment())
    mark_available(apps, ns, "shop")
    create(custom, ns, bakeoff_doc("shop", url, candidates=1))
    create(custom, ns, variant_doc("bad"))
    try:
        async with running(controller_for(kube, ns, deletion_drain=0.5)):
            await candidates_available(apps, ns, ["bad"])
            await await_for(
                lambda: status_of(custom, ns, "variants", "bad").get("phase") == "RolledBack",
                timeout=90,
                what="bad rolled back in round 1",
            )
            first_uid = get(custom, ns, "bakeoffs", "shop")["metadata"]["uid"]
            assert status_of(custom, ns, "variants", "bad")["bakeoffUID"] == first_uid
            # round 1 ends: the Bakeoff is deleted (its Variants stay), then created again
            custom.delete_namespaced_custom_object("bakeoff.dev", "v1alpha1", ns, "bakeoffs", "shop")
            await await_for(lambda: gone(lambda: get(custom, ns, "bakeoffs", "shop")), timeout=60, what="round 1 gone")
            server.routed = {"mainline"}
            create(custom, ns, bakeoff_doc("shop", url, candidates=1))
            cond = await await_for(
                lambda: (c := accepted(custom, ns, "bad")) and c["reason"] == "EarlierRound" and c,
                timeout=60,
                what="bad refused in round 2",
            )
            assert cond["status"] == "False", cond
            assert "ended in an earlier round of bake-off shop (RolledBack" in cond["message"], cond

            # the new build enters: the earlier round's Variant holds no slot
            r = await asyncio.to_thread(submit, kube, ns, "--image", "r/shop:fresh", "--name", "fresh", "--timeout", "60s")  # fmt: skip
            assert r.returncode == 0 and r.stdout.strip() == "fresh", (r.returncode, r.stdout, r.stderr)
            b = get(custom, ns, "bakeoffs", "shop")
            assert set((b.get("status") or {}).get("variants") or {}) == {"fresh"}, b.get("status")
            assert gone(lambda: apps.read_namespaced_deployment("shop-bad", ns))  # nothing of it runs again

            # submitting under the old name says why it cannot enter
            r = await asyncio.to_thread(submit, kube, ns, "--image", "r/shop:bad2", "--name", "bad", "--timeout", "10s")  # fmt: skip
            assert r.returncode == 1, (r.stdout, r.stderr)
            assert "Variant bad ended in an earlier round of bake-off shop (RolledBack" in r.stderr, r.stderr
            assert "never admitted again" in r.stderr and "--name" in r.stderr, r.stderr
    finally:
        await server.stop()


async def test_a_new_round_is_judged_on_its_own_entrants_from_its_first_look(kube, ns):
    """Item 11. The routers' counters already hold an earlier round: 'old' (not an entrant, about 350
    errors) and 800 requests, half failing, of an earlier build also named 'fast'. Before: the first
    look counted them all, so the new, healthy 'fast' was rolled back at once and 'old' was judged;
    now the first look is a baseline, and only 'fast' (against the mainline) is judged."""
    custom, apps, _ = apis(kube)
    server = SnapshotServer({"mainline": Arm(), "old": Arm(error_rate=0.5), "fast": Arm(error_rate=0.5)})
    server.stream.advance({"mainline": 3000, "old": 700, "fast": 800})
    server.stream.set_arm("fast", Arm())  # this round's build of 'fast' is as good as the mainline
    url = await server.start()
    server.routed = {"mainline", "fast"}
    apps.create_namespaced_deployment(ns, mainline_deployment())
    mark_available(apps, ns, "shop")
    create(custom, ns, bakeoff_doc("shop", url, minSamples=200))
    create(custom, ns, variant_doc("fast"))
    try:
        async with running(controller_for(kube, ns)):
            await candidates_available(apps, ns, ["fast"])
            await await_for(lambda: server.fetches >= 5, timeout=90, what="five looks")

            def verdicts():
                v = status_of(custom, ns, "bakeoffs", "shop").get("verdicts") or {}
                return v if (v.get("variants") or {}).get("fast") else None

            v = await await_for(verdicts, timeout=30, what="a verdict on fast")
            b = status_of(custom, ns, "bakeoffs", "shop")
            assert b.get("phase") == "Running" and not b.get("decision"), b
            assert status_of(custom, ns, "variants", "fast").get("phase") != "RolledBack", b.get("history")
            assert set(v["variants"]) <= {"mainline", "fast"}, v["variants"].keys()
            # only requests after the first look: whole looks of 1500, none of the earlier 800
            requests = v["variants"]["fast"]["requests"]
            assert requests > 0 and requests % server.per_look == 0, requests
    finally:
        await server.stop()
