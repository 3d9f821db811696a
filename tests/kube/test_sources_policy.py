"""spec.judge.source in a cluster: only in-cluster Services or the operator's prefixes (issue 10 item 6).

The pure rules first, then the controller against the real API server: a refused source is never
fetched and the Bakeoff's Judging condition names the field.
"""

from __future__ import annotations

import pytest

from bakeoff.controller.kube.sources_policy import ENV, SourceRefused, allowed_locations, prefixes_from_env

ALLOWED = [
    "http://metrics.monitoring.svc/-/snapshot",
    "http://shop-router.team-a.svc.cluster.local:8081/-/snapshot",
    "https://snap.team-a.svc:8443/x?y=1",
    "prometheus+http://prometheus.monitoring.svc:9090",
    "http://r1.ns.svc:8081/-/snapshot, http://r2.ns.svc:8081/-/snapshot",
]
REFUSED = [
    "/etc/passwd",  # a local file: the snapshot-file form of `bakeoff judge`
    "snapshot.json",
    "file:///var/run/secrets/kubernetes.io/serviceaccount/token",
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://kubernetes.default.svc.cluster.local.evil.example/",
    "http://shop.default.svc@evil.example/",  # userinfo: the host is evil.example
    "http://shop.svc/",  # no namespace
    "http://10.0.0.12:8081/-/snapshot",  # a pod IP: not a Service
    "ftp://shop.default.svc/",
    "http://ok.ns.svc/-/snapshot http://127.0.0.1:9/",  # one bad location refuses the whole source
    "prometheus+http://127.0.0.1:9090",
]


@pytest.mark.parametrize("source", ALLOWED)
def test_in_cluster_services_are_allowed(source):
    assert allowed_locations(source, "Bakeoff ns/b", prefixes=(), namespace=None) == [
        s.strip(",") for s in source.split()
    ]


@pytest.mark.parametrize("source", REFUSED)
def test_everything_else_is_refused_naming_the_field(source):
    with pytest.raises(SourceRefused) as e:
        allowed_locations(source, "Bakeoff team-a/shop", prefixes=(), namespace="team-a")
    msg = str(e.value)
    assert msg.startswith("Bakeoff team-a/shop: spec.judge.source: ") and "refused" in msg, msg
    assert "controller.judgeSources.allowedPrefixes" in msg


def test_operator_prefixes():
    prefixes = prefixes_from_env({ENV: "https://metrics.example, http://10.0.0.12:8081/-/ http://127.0.0.1:"})
    assert prefixes == ("https://metrics.example/", "http://10.0.0.12:8081/-/", "http://127.0.0.1:")
    ok = ["https://metrics.example/bakeoff/shop", "http://10.0.0.12:8081/-/snapshot", "http://127.0.0.1:4000/x"]
    for loc in ok:
        assert allowed_locations(loc, "b", prefixes, namespace="x") == [loc]
    for loc in (
        "https://metrics.example.evil/",  # a host prefix does not extend to another host
        "http://10.0.0.12:8081/other",
        "http://127.0.0.1:80@evil.example/",  # nor through userinfo
        "http://10.0.0.13:8081/-/snapshot",
    ):
        with pytest.raises(SourceRefused):
            allowed_locations(loc, "b", prefixes, namespace="x")
    assert prefixes_from_env({}) == ()


def test_in_cluster_services_only_of_the_bakeoffs_own_namespace():
    """Issue 16 item 12: by default a Bakeoff reads Services of its own namespace only; another
    namespace (a shared Prometheus) only through the operator's prefixes."""
    own = ["http://shop-router.team-a.svc:8081/-/snapshot", "prometheus+http://prom.team-a.svc.cluster.local:9090"]
    for loc in own:
        assert allowed_locations(loc, "Bakeoff team-a/shop", (), namespace="team-a") == [loc]
    for loc in (
        "http://shop-router.team-b.svc:8081/-/snapshot",  # another team's router
        "prometheus+http://prometheus.monitoring.svc:9090",
        "http://kubernetes.default.svc/",
    ):
        with pytest.raises(SourceRefused) as e:
            allowed_locations(loc, "Bakeoff team-a/shop", (), namespace="team-a")
        assert f"{loc!r} refused" in str(e.value) and "team-a.svc" in str(e.value), str(e.value)
    prom = "prometheus+http://prometheus.monitoring.svc:9090"
    prefixes = prefixes_from_env({ENV: prom})
    assert allowed_locations(prom, "Bakeoff team-a/shop", prefixes, namespace="team-a") == [prom]


# ---------------------------------------------------------------- the controller, for real


async def test_the_controller_never_fetches_a_refused_source(kube, crds, monkeypatch):
    from kubernetes import client as kclient

    from bakeoff.judge.simulate import Arm

    from .test_controller import (
        SnapshotServer,
        await_for,
        candidates_available,
        controller_for,
        create,
        get,
        running,
        shop_with_mainline,
        variant_doc,
    )

    ns = "sources-policy"
    kclient.CoreV1Api(kube.api).create_namespace({"metadata": {"name": ns}})
    server = SnapshotServer({"mainline": Arm(), "fast": Arm()})
    url = await server.start()
    server.routed = {"mainline", "fast"}
    monkeypatch.setenv(ENV, "")  # the chart's default: in-cluster Services only
    custom, apps, _ = shop_with_mainline(kube, ns, url)
    create(custom, ns, variant_doc("fast"))

    def judging():
        conds = (get(custom, ns, "bakeoffs", "shop").get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == "Judging"), None)

    try:
        async with running(controller_for(kube, ns, identity="policy")):
            await candidates_available(apps, ns, ["fast"])
            cond = await await_for(
                lambda: (c := judging()) and "spec.judge.source" in c.get("message", "") and c, what="refusal"
            )
            assert cond["status"] == "False"
            assert f"Bakeoff {ns}/shop: spec.judge.source: '{url}' refused" in cond["message"], cond
            assert server.fetches == 0  # refused before any request
            # the same Bakeoff, once the operator allows the host: fetched (so the check above could fail)
            monkeypatch.setenv(ENV, "http://127.0.0.1:")
            await await_for(lambda: server.fetches > 0, what="a fetch once allowed")
            await await_for(
                lambda: (c := judging()) is not None and "spec.judge.source" not in c.get("message", ""),
                what="condition cleared",
            )
    finally:
        await server.stop()


async def test_the_controller_does_not_follow_a_redirect_out_of_the_allow_list(kube, crds, monkeypatch):
    """Issue 16 item 12: an allowed URL answering 302 to a refused one. Before: followed on every look
    (the refused server was read); now: never fetched, and the Judging condition says why."""
    from aiohttp import web
    from kubernetes import client as kclient

    from bakeoff.judge.simulate import Arm

    from .conftest import start_app
    from .test_controller import (
        SnapshotServer,
        await_for,
        candidates_available,
        controller_for,
        create,
        get,
        running,
        shop_with_mainline,
        variant_doc,
    )

    ns = "sources-redirect"
    kclient.CoreV1Api(kube.api).create_namespace({"metadata": {"name": ns}})
    server = SnapshotServer({"mainline": Arm(), "fast": Arm()})
    refused_url = await server.start()
    server.routed = {"mainline", "fast"}
    redirects = 0

    async def redirect(request):
        nonlocal redirects
        redirects += 1
        raise web.HTTPFound(refused_url)

    app = web.Application()
    app.router.add_get("/-/snapshot", redirect)
    runner, port = await start_app(app, "127.0.0.1")
    allowed = f"http://127.0.0.1:{port}/"
    monkeypatch.setenv(ENV, allowed)  # only the redirector's address is allowed
    custom, apps, _ = shop_with_mainline(kube, ns, f"{allowed}-/snapshot")
    create(custom, ns, variant_doc("fast"))

    def judging():
        conds = (get(custom, ns, "bakeoffs", "shop").get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == "Judging"), None)

    try:
        async with running(controller_for(kube, ns, identity="redirect")):
            await candidates_available(apps, ns, ["fast"])
            cond = await await_for(
                lambda: (c := judging()) and "redirect" in c.get("message", "") and c, what="redirect refusal"
            )
            await await_for(lambda: redirects >= 3, what="several looks")
            assert cond["status"] == "False" and cond["reason"] == "NoData", cond
            assert f"HTTP 302 redirect to '{refused_url}' not followed" in cond["message"], cond
            assert server.fetches == 0, f"the refused server was read {server.fetches} times"
    finally:
        await runner.cleanup()
        await server.stop()
