"""Webhook notifications (spec.notify) from `bakeoff run`: real receivers on 127.0.0.1 (aiohttp),
one that answers, one that fails first (500, then ok: retried), a Slack-compatible one, and ones
that hang (the decision is made anyway; the delivery is abandoned after its timeout, and logged)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import subprocess
import sys
import time

import pytest
from aiohttp import web

from bakeoff.controller.notify import Dispatcher, Webhook
from tests.conftest import eventually_async
from tests.controller.conftest import BAKEOFF, ROOT, bakeoff_doc, drive_load, variant_doc, write_docs

KEY = "s3cret-key-for-tests"


class Receiver:
    """A real HTTP server with a few webhook endpoints; it records every request it gets."""

    def __init__(self) -> None:
        self.got: dict[str, list[dict]] = {"ok": [], "flaky": [], "slack": [], "hang": [], "hangshort": []}
        self.open = {"hang": 0, "hangshort": 0}
        self.flaky_failed: set[str] = set()
        self.release = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await request.read()
        self.got[name].append({"headers": dict(request.headers), "body": body, "t": time.time()})
        if name in self.open:
            self.open[name] += 1
            try:
                await self.release.wait()  # hangs: never answers while the test runs
            finally:
                self.open[name] -= 1
        if name == "flaky":
            delivery = request.headers["Bakeoff-Delivery"]
            if delivery not in self.flaky_failed:
                self.flaky_failed.add(delivery)
                return web.Response(status=500, text="try again")
        return web.Response(text="ok")

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{name}", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc) -> None:
        self.release.set()
        assert self.runner is not None
        await self.runner.cleanup()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def payloads(self, name: str) -> list[dict]:
        return [json.loads(r["body"]) for r in self.got[name]]


def verify(headers: dict, body: bytes, key: str) -> bool:
    """What a receiver does (docs/resources.md, Notifications)."""
    ts = headers["Bakeoff-Timestamp"]
    want = "v1=" + hmac.new(key.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, headers["Bakeoff-Signature"]) and abs(time.time() - int(ts)) < 300


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("hook", "files", "env", "expect"),
    [
        (
            {"url": "ftp://hooks.example/x"},
            {},
            {},
            "document 0 (Bakeoff 't'): spec.notify[0].url must be an http:// or https:// URL, got 'ftp://hooks.example/x'",
        ),
        (
            {"urlFrom": {"file": "hook-url.txt"}},
            {"hook-url.txt": "file:///etc/passwd\n"},
            {},
            "spec.notify[0].urlFrom (file hook-url.txt) must hold an http:// or https:// URL",
        ),
        (
            {"url": "https://hooks.example/x", "keyFrom": {"env": "BAKEOFF_TEST_UNSET_KEY"}},
            {},
            {},
            "spec.notify[0].keyFrom.env: the environment variable BAKEOFF_TEST_UNSET_KEY is not set",
        ),
        (
            {"url": "https://hooks.example/x", "keyFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {},
            {},
            "spec.notify[0].keyFrom.secretKeyRef works only in a cluster; locally use env or file",
        ),
    ],
)
def test_a_webhook_that_cannot_be_used_is_refused_before_anything_starts(tmp_path, hook, files, env, expect):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    spec = write_docs(tmp_path / "bake.yaml", [bakeoff_doc(notify=[hook]), variant_doc("b", "good")])
    r = subprocess.run(
        [*BAKEOFF, "run", str(spec), "--headless", "--state-dir", str(tmp_path / "state")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("bakeoff: error: bake.yaml: ") and expect in r.stderr, r.stderr
    assert not (tmp_path / "state" / "journal.jsonl").exists()  # nothing started


# -- delivery ----------------------------------------------------------------------------------
async def test_dispatcher_retries_a_failing_endpoint_and_abandons_a_hanging_one_without_blocking_the_caller():
    async with Receiver() as rx:
        d = Dispatcher()
        hooks = [
            Webhook(rx.url("flaky"), key=KEY.encode(), timeout=5, retries=3, where="flaky"),
            Webhook(rx.url("hangshort"), timeout=0.5, retries=1, where="hang"),
        ]
        n = {"event": "rolled_back", "id": "d1", "bakeoff": "t", "variant": "v", "reason": "why"}
        t0 = time.monotonic()
        d.send(hooks, n)
        d.send(hooks, {**n, "id": "d2", "event": "promoted"})
        sent_in = time.monotonic() - t0
        await eventually_async(lambda: d.counts.sent == 2, what="both delivered to the flaky endpoint", timeout=30)
        await eventually_async(lambda: d.counts.abandoned == 2, what="both abandoned by the hanging one", timeout=30)
        await asyncio.to_thread(d.close, 1.0)
    # flaky: each delivery failed once (500) and was retried with the same id and a fresh signature
    assert [json.loads(r["body"])["id"] for r in rx.got["flaky"]] == ["d1", "d1", "d2", "d2"]
    assert all(verify(r["headers"], r["body"], KEY) for r in rx.got["flaky"])
    # hang: one attempt and one retry each, then abandoned (its own queue: the flaky one was not held up)
    assert len(rx.got["hangshort"]) == 4
    assert d.counts.by_url[rx.url("hangshort")] == {"sent": 0, "retried": 2, "abandoned": 2, "dropped": 0}
    assert d.counts.by_url[rx.url("flaky")]["retried"] == 2
    assert sent_in < 0.5, sent_in  # send() only enqueues (generous: the caller never waits for a delivery)


async def test_a_full_queue_drops_the_oldest_notification_and_counts_it(monkeypatch):
    import bakeoff.controller.notify as notify

    monkeypatch.setattr(notify, "QUEUE_LIMIT", 3)
    async with Receiver() as rx:
        d = Dispatcher()
        hook = Webhook(rx.url("hang"), timeout=600, retries=0, where="hang")
        d.send([hook], {"event": "admitted", "id": "d0", "variant": "v0"})
        await eventually_async(lambda: rx.open["hang"] == 1, what="d0 in flight", timeout=30)
        for i in range(1, 10):
            d.send([hook], {"event": "admitted", "id": f"d{i}", "variant": f"v{i}"})
        await eventually_async(lambda: d.counts.dropped == 6, what="six dropped", timeout=30)
        assert len(rx.got["hang"]) == 1 and json.loads(rx.got["hang"][0]["body"])["id"] == "d0"
        await asyncio.to_thread(d.close, 0.2)
    # in flight d0, waiting d7..d9 (the newest kept): all abandoned at close
    assert d.counts.by_url[rx.url("hang")] == {"sent": 0, "retried": 0, "abandoned": 4, "dropped": 6}


# -- bakeoff run end to end --------------------------------------------------------------------
@pytest.mark.slow
async def test_run_notifies_admitted_awaiting_approval_and_promoted(tmp_path, runs, monkeypatch):
    async with Receiver() as rx:
        (tmp_path / "flaky-url.txt").write_text(rx.url("flaky") + "\n")
        (tmp_path / "key.txt").write_text(KEY + "\n")
        monkeypatch.setenv("BAKEOFF_TEST_HOOK_KEY", KEY)
        notify = [
            {"url": rx.url("ok"), "keyFrom": {"env": "BAKEOFF_TEST_HOOK_KEY"}},
            {"urlFrom": {"file": "flaky-url.txt"}, "keyFrom": {"file": "key.txt"}, "retries": 4},
            {"url": rx.url("slack"), "format": "slack", "events": ["promoted", "awaiting_approval"]},
            # hangs far longer than the run: the decisions must not wait for it
            {"url": rx.url("hang"), "timeoutSeconds": 600, "retries": 0},
            # hangs past a short timeout: each delivery abandoned after one retry, and logged
            {"url": rx.url("hangshort"), "timeoutSeconds": 1, "retries": 1, "events": ["admitted"]},
        ]
        spec = write_docs(
            tmp_path / "bake.yaml",
            [bakeoff_doc(notify=notify, promotion={"mode": "manual"}), variant_doc("better", "better")],
        )
        run = runs(spec, tmp_path / "state", "--exit-on-decision")
        st = await run.wait_for(lambda s: s if s.get("weights", {}).get("better") else None, 60, "better admitted")
        stop = asyncio.Event()
        load = asyncio.create_task(drive_load(st["router"]["url"], stop, users=32))
        try:
            await run.wait_for(lambda s: s.get("phase") == "AwaitingApproval", 90, "a winner awaiting approval")
            # the hanging endpoint still holds the first notification (admitted) open: nothing waited for it
            assert rx.open["hang"] == 1 and len(rx.got["hang"]) == 1, rx.got["hang"]
            r = subprocess.run(
                [*BAKEOFF, "approve", str(tmp_path / "state")], cwd=ROOT, capture_output=True, text=True, timeout=30
            )
            assert r.returncode == 0, r.stderr
            await run.wait_for(lambda s: s.get("decision"), 60, "the promotion")
        finally:
            stop.set()
            await load
        assert await asyncio.to_thread(run.proc.wait, 60) == 0, run.output()[-3000:]
        assert rx.open["hang"] == 1 and len(rx.got["hang"]) == 1  # still one, still open: abandoned at exit

    recs = [e for e in run.journal() if e["type"] in ("admitted", "winner", "promoted")]
    expected = [("admitted", "better"), ("awaiting_approval", "better"), ("promoted", "better")]
    assert [({"winner": "awaiting_approval"}.get(e["type"], e["type"]), e["variant"]) for e in recs] == expected
    # json: every decision, in order, signed, with the journal's reason, commit and time
    assert [(p["event"], p["variant"]) for p in rx.payloads("ok")] == expected
    assert all(verify(r["headers"], r["body"], KEY) for r in rx.got["ok"])
    for p, e in zip(rx.payloads("ok"), recs):
        assert p["format"] == "bakeoff.notification/v1" and p["bakeoff"] == "t"
        assert p["reason"] == e["reason"] and p["commit"] == "c0ffee-better" and p["at"] == e["at"]
    # flaky (URL and key from files): each notification failed once with 500, then was delivered
    flaky = rx.payloads("flaky")
    assert [(p["event"], p["variant"]) for p in flaky[::2]] == expected
    assert [p["id"] for p in flaky[::2]] == [p["id"] for p in flaky[1::2]]
    assert all(verify(r["headers"], r["body"], KEY) for r in rx.got["flaky"])
    # slack: {"text": ...} for the chosen events only
    slack = rx.payloads("slack")
    assert all(set(p) == {"text"} for p in slack) and len(slack) == 2, slack
    assert slack[0]["text"].startswith("bakeoff t: *better* (c0ffee-better) won; awaiting approval: ")
    assert slack[1]["text"].startswith("bakeoff t: *better* (c0ffee-better) promoted: ")
    # logged: the abandoned deliveries, with why
    logs = [json.loads(line) for line in (tmp_path / "state" / "bakeoff.log").read_text().splitlines()]
    gave_up = [x for x in logs if x.get("event", "").startswith("notification abandoned")]
    assert any(x["webhook"].endswith("spec.notify[4]") and "no answer within 1s" in x["error"] for x in gave_up)
    at_exit = [x for x in gave_up if x["webhook"].endswith("spec.notify[3]")]
    assert [x["notification"] for x in at_exit] == ["admitted", "awaiting_approval", "promoted"], at_exit
    assert len(rx.got["hangshort"]) == 2  # the one admitted: an attempt and a retry


@pytest.mark.slow
async def test_run_notifies_rolled_back_and_stopped(tmp_path, runs):
    # No latency guardrail: `b` must still be serving when the run is aborted, and beside the xdist pass
    # a just-started build can read +200% p50 at its first look (CI: b rolled back, the run stopped itself)
    judge = bakeoff_doc()["spec"]["judge"]
    judge["guardrails"] = [g for g in judge["guardrails"] if g["metric"] != "latency_p50"]
    async with Receiver() as rx:
        notify = [
            {"url": rx.url("ok")},
            {"url": rx.url("slack"), "format": "slack", "events": ["rolled_back", "stopped"]},
        ]
        spec = write_docs(
            tmp_path / "bake.yaml",
            [bakeoff_doc(notify=notify, judge=judge), variant_doc("erroring", "error"), variant_doc("b", "good")],
        )
        run = runs(spec, tmp_path / "state", "--exit-on-decision")
        st = await run.wait_for(lambda s: s if len(s.get("weights", {})) == 3 else None, 60, "both admitted")
        stop = asyncio.Event()
        load = asyncio.create_task(drive_load(st["router"]["url"], stop, users=32))
        try:
            await run.wait_for(lambda s: s["variants"]["erroring"]["phase"] == "RolledBack", 90, "erroring rolled back")
        finally:
            stop.set()
            await load
        r = subprocess.run(
            [sys.executable, "-m", "bakeoff", "abort", str(tmp_path / "state"), "--reason", "release frozen"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 0, r.stderr
        assert await asyncio.to_thread(run.proc.wait, 60) == 3, run.output()[-3000:]
    recs = [e for e in run.journal() if e["type"] in ("admitted", "rolled_back", "stopped")]
    events = [(p["event"], p["variant"]) for p in rx.payloads("ok")]
    assert events == [(e["type"], e.get("variant")) for e in recs], events
    assert ("rolled_back", "erroring") in events and events[-1] == ("stopped", None), events
    assert "release frozen" in rx.payloads("ok")[-1]["reason"]
    assert "Bakeoff-Signature" not in rx.got["ok"][0]["headers"]  # no key: unsigned
    texts = [p["text"] for p in rx.payloads("slack")]
    assert texts[0].startswith("bakeoff t: *erroring* (c0ffee-erroring) rolled back: ") and "error_rate" in texts[0]
    assert texts[-1].startswith("bakeoff t: the run stopped without a winner: aborted"), texts
