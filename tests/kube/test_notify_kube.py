"""spec.notify in a cluster: the controller reads the webhook's URL and signing key from a Secret and
posts each decision to a real receiver on 127.0.0.1, off the pass (a hanging webhook holds nothing
up); a missing Secret is a Warning Event naming the field; the API server refuses a non-http(s) URL."""

from __future__ import annotations

import base64
import json

import pytest

from tests.controller.test_notify import KEY, Receiver, verify

from .test_chart import helm as helm  # noqa: F401 - the fixture
from .test_controller import (
    SnapshotServer,
    apis,
    await_for,
    bakeoff_doc,
    create,
    events_for,
    get,
    mainline_deployment,
    mark_available,
    routing_of,
    running,
    variant_doc,
)
from .test_controller import controller_for as _controller_for

NS_PREFIX = "notify"

kclient = pytest.importorskip("kubernetes.client")


def secret(name: str, **data: str) -> dict:
    return {
        "metadata": {"name": name},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


async def test_cluster_notifications_come_from_a_secret_and_never_hold_up_a_pass(kube, ns):
    from bakeoff.judge.simulate import Arm

    custom, apps, core = apis(kube)
    async with Receiver() as rx:
        core.create_namespaced_secret(ns, secret("hooks", url=rx.url("flaky"), key=KEY))
        apps.create_namespaced_deployment(ns, mainline_deployment())
        mark_available(apps, ns, "shop")
        server = SnapshotServer(
            {"mainline": Arm(conversion=0.05), "fast": Arm(conversion=0.15), "buggy": Arm(error_rate=0.3)}
        )
        url = await server.start()
        doc = bakeoff_doc("shop", url)
        doc["spec"]["notify"] = [
            {
                "urlFrom": {"secretKeyRef": {"name": "hooks", "key": "url"}},
                "keyFrom": {"secretKeyRef": {"name": "hooks", "key": "key"}},
            },
            {"url": rx.url("hang"), "timeoutSeconds": 600, "retries": 0},  # never answers
            {"urlFrom": {"secretKeyRef": {"name": "nope", "key": "url"}}},  # no such Secret
            {"url": rx.url("slack"), "format": "slack", "events": ["rolled_back", "promoted"]},
        ]
        create(custom, ns, doc)
        create(custom, ns, variant_doc("fast"))
        create(custom, ns, variant_doc("buggy"))
        ctl = _controller_for(kube, ns)
        try:
            async with running(ctl):
                for n in ("fast", "buggy"):
                    await await_for(lambda n=n: apps.read_namespaced_deployment(f"shop-{n}", ns), what=n)
                    mark_available(apps, ns, f"shop-{n}")
                b = await await_for(
                    lambda: (lambda b: b if len(routing_of(b)) == 3 else None)(get(custom, ns, "bakeoffs", "shop")),
                    what="three routed variants",
                )
                server.routed = set(routing_of(b))
                await await_for(
                    lambda: get(custom, ns, "bakeoffs", "shop")["status"].get("phase") == "Promoted",
                    what="the promotion",
                    timeout=60,
                )
                # decided while the hanging webhook still holds the first notification open
                assert rx.open["hang"] == 1 and len(rx.got["hang"]) == 1, rx.got["hang"]
                await await_for(
                    lambda: [p["event"] for p in rx.payloads("flaky")[::2]][-1:] == ["promoted"],
                    what="the promotion notified",
                )
                await await_for(lambda: len(rx.payloads("slack")) == 2, what="two Slack messages")
                reasons = await await_for(
                    lambda: (lambda r: r if "NotificationFailed" in r else None)(events_for(core, ns, "shop")),
                    what="a NotificationFailed Event",
                )
                assert "NotificationFailed" in reasons
        finally:
            await server.stop()
            ctl.notifier.close(0.5)

    history = [(h["type"], h.get("variant")) for h in get(custom, ns, "bakeoffs", "shop")["status"]["history"]]
    flaky = rx.got["flaky"]
    payloads = [json.loads(r["body"]) for r in flaky[::2]]
    got = [(p["event"], p["variant"]) for p in payloads]
    want = [(t, v) for t, v in history if t in ("admitted", "rolled_back", "promoted")]
    assert got == want and ("rolled_back", "buggy") in got and got[-1] == ("promoted", "fast"), (got, history)
    # every attempt signed with the Secret's key; a 500 retried with the same delivery id
    assert all(verify(r["headers"], r["body"], KEY) for r in flaky)
    assert [json.loads(r["body"])["id"] for r in flaky[1::2]] == [p["id"] for p in payloads]
    assert all(p["namespace"] == ns and p["bakeoff"] == "shop" for p in payloads)
    assert payloads[-1]["commit"] == "fast123"
    texts = [p["text"] for p in rx.payloads("slack")]
    assert texts[0].startswith(f"bakeoff {ns}/shop: *buggy* (buggy123) rolled back: ")
    assert texts[1].startswith(f"bakeoff {ns}/shop: *fast* (fast123) promoted: ")
    ev = [e for e in core.list_namespaced_event(ns).items if e.reason == "NotificationFailed"]
    assert ev and ev[0].type == "Warning" and ev[0].involved_object.name == "shop"
    assert f"Bakeoff {ns}/shop: spec.notify[2].urlFrom.secretKeyRef: cannot read Secret 'nope'" in ev[0].message


async def test_a_webhook_url_that_is_not_http_is_refused_naming_the_field(kube, ns):
    custom, apps, _ = apis(kube)
    doc = bakeoff_doc("shop", "http://127.0.0.1:1/-/snapshot")
    doc["spec"]["notify"] = [{"url": "ftp://hooks.example/x"}]
    with pytest.raises(kclient.ApiException) as e:
        create(custom, ns, doc)
    assert e.value.status == 422
    assert "spec.notify[0].url" in e.value.body and "ftp://hooks.example/x" in e.value.body, e.value.body
    # what the schema cannot know: env is local mode only; the controller says so on the Bakeoff
    apps.create_namespaced_deployment(ns, mainline_deployment())
    doc["spec"]["notify"] = [{"url": "https://hooks.example/x", "keyFrom": {"env": "HOME"}}]
    create(custom, ns, doc)
    async with running(_controller_for(kube, ns)):
        cond = await await_for(
            lambda: next(
                (
                    c
                    for c in get(custom, ns, "bakeoffs", "shop")["status"]["conditions"]
                    if c["reason"] == "InvalidSpec"
                ),
                None,
            ),
            what="the InvalidSpec condition",
        )
    assert cond["message"].startswith(
        f"Bakeoff {ns}/shop: spec.notify[0].keyFrom.env is local mode only; in a cluster use secretKeyRef"
    ), cond


def test_the_chart_lets_the_controller_read_only_the_named_notify_secrets(helm, tmp_path):
    from .test_chart import CONTROLLER_RULES, one, render, rule_set

    assert rule_set(one(render(helm, tmp_path), "Role", "bakeoff-controller")) == CONTROLLER_RULES  # none by default
    docs = render(helm, tmp_path, {"controller": {"notifySecrets": ["hooks", "slack-hook"]}})
    extra = rule_set(one(docs, "Role", "bakeoff-controller")) - CONTROLLER_RULES
    assert extra == {("", "secrets", "get", "hooks"), ("", "secrets", "get", "slack-hook")}
