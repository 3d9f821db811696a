"""OpenTelemetry traces from `bakeoff router` (a real subprocess): W3C traceparent in and out, OTLP spans out.

The collector here is an aiohttp app that decodes each export with opentelemetry-proto's own
ExportTraceServiceRequest, so the router's hand-written protobuf is read by the reference decoder.
tests/router/test_tracing_jaeger.py does the same against a real Jaeger.
"""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import eventually_async
from tests.router.conftest import SEEN, Upstream
from tests.router.test_operations import run_cli

TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


class Collector:
    """An OTLP/HTTP traces endpoint: every span it receives, with its resource's attributes."""

    def __init__(self, hang: bool = False) -> None:
        self.spans: list[dict] = []
        self.posts = 0
        self.hang = hang
        self.release = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.posts += 1
        assert request.headers["Content-Type"] == "application/x-protobuf"
        body = await request.read()
        if self.hang:
            await self.release.wait()  # a collector that never answers (until the test ends)
        msg = ExportTraceServiceRequest.FromString(body)
        for rs in msg.resource_spans:
            resource = {a.key: _value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    self.spans.append(
                        {
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent_span_id": s.parent_span_id.hex(),
                            "name": s.name,
                            "kind": s.kind,
                            "start": s.start_time_unix_nano,
                            "end": s.end_time_unix_nano,
                            "status_code": s.status.code,
                            "attributes": {a.key: _value(a.value) for a in s.attributes},
                            "resource": resource,
                            "scope": ss.scope.name,
                            "headers": {k.lower(): v for k, v in request.headers.items()},
                        }
                    )
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def start(self) -> Collector:
        app = web.Application()
        app.router.add_post("/v1/traces", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"


def _value(v):  # AnyValue -> its Python value
    return getattr(v, v.WhichOneof("value"))


@pytest.fixture
async def collector():
    started: list[Collector] = []

    async def make(**kw) -> Collector:
        c = await Collector(**kw).start()
        started.append(c)
        return c

    yield make
    for c in started:
        await c.stop()


def _config(up: Upstream, tracing: dict | None) -> dict:
    cfg: dict = {
        "token": "t",
        "variants": [{"name": "cand", "upstreams": [up.address], "weight": 1, "version": "abc1234"}],
        "routes": [{"name": "api", "match": "/api/*"}],
    }
    if tracing is not None:
        cfg["tracing"] = tracing
    return cfg


async def test_sampled_requests_record_server_spans_with_attributes_and_continue_the_trace(
    upstreams, router_process, collector
):
    (up,) = await upstreams("cand")
    col = await collector()
    rp = router_process(
        _config(
            up,
            {
                "endpoint": col.url,
                "sampleRatio": 1.0,
                "bakeoff": "shop",
                "exportInterval": "100ms",
                "headers": {"x-ingest-key": "k1"},
            },
        )
    ).start()
    base = f"http://127.0.0.1:{rp.port}"
    async with aiohttp.ClientSession() as s:
        # 1. a client's sampled traceparent (fast path), 2. none (a root span), 3. a 503 from the variant,
        # 4. a chunked body (httptools' general path) with the client's traceparent.
        async with s.get(f"{base}/api/items", headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"}) as r:
            assert r.status == 200
        async with s.get(f"{base}/other") as r:
            assert r.status == 200
        async with s.get(f"{base}/api/x?status=503") as r:
            assert r.status == 503

        async def chunks():
            yield b"abc"

        async with s.post(
            f"{base}/api/post", data=chunks(), headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"}
        ) as r:
            assert r.status == 200
    spans = await eventually_async(lambda: list(col.spans), until=lambda x: len(x) >= 4, what="4 spans exported")
    seen = up.app[SEEN]
    assert len(spans) == 4 and len(seen) == 4
    sent = [TRACEPARENT.fullmatch(h["headers"]["traceparent"]).groups() for h in seen]
    by_id = {sp["span_id"]: sp for sp in spans}
    for trace_id, span_id, flags in sent:
        assert flags == "01"
        sp = by_id[span_id]  # the variant's parent is the router's span
        assert sp["trace_id"] == trace_id
        assert sp["kind"] == 2  # SPAN_KIND_SERVER
        assert sp["end"] >= sp["start"] > 0
        assert sp["attributes"]["bakeoff.variant"] == "cand"
        assert sp["attributes"]["service.version"] == "abc1234"
        assert sp["attributes"]["bakeoff.name"] == "shop"
        assert sp["resource"]["service.name"] == "bakeoff-router"
        assert sp["resource"]["service.version"] == "abc1234"
        assert sp["headers"]["x-ingest-key"] == "k1"
    first, root, failed, chunked = (by_id[g[1]] for g in sent)
    for sp in (first, chunked):  # continued the client's trace, as the child of its span
        assert sp["trace_id"] == CLIENT_TRACE and sp["parent_span_id"] == CLIENT_SPAN
    assert root["trace_id"] != CLIENT_TRACE and root["parent_span_id"] == ""
    assert first["attributes"] == {
        "bakeoff.variant": "cand",
        "http.request.method": "GET",
        "bakeoff.name": "shop",
        "service.version": "abc1234",
        "bakeoff.route": "api",
        "http.response.status_code": 200,
        "bakeoff.outcome": "ok",
    }
    assert first["name"] == "GET api"
    assert root["attributes"]["bakeoff.route"] == "other"
    assert failed["attributes"]["http.response.status_code"] == 503
    assert failed["attributes"]["bakeoff.outcome"] == "error" and failed["status_code"] == 2
    assert chunked["attributes"]["http.request.method"] == "POST"
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{rp.admin_port}/metrics") as r:
            text = await r.text()
    assert 'bakeoff_trace_spans_total{result="exported"} 4.0' in text
    assert 'bakeoff_trace_spans_total{result="dropped"} 0.0' in text


async def test_grpc_calls_over_http2_record_spans_and_continue_the_trace(router_process, collector):
    """An HTTP/2 (gRPC) call is traced as an HTTP/1.1 request is: the client's trace continued, the variant told."""
    import grpc

    from tests.router import grpc_peer

    server, port = grpc_peer.start()
    col = await collector()
    rp = router_process(
        {
            "variants": [{"name": "g", "upstreams": [f"127.0.0.1:{port}"], "protocol": "h2c", "version": "v2"}],
            "routes": [{"name": "trace", "match": "/test.Echo/Traceparent"}],
            "tracing": {"endpoint": col.url, "sampleRatio": 1.0, "exportInterval": "100ms"},
        }
    ).start()

    def calls() -> list[bytes]:
        with grpc.insecure_channel(f"127.0.0.1:{rp.port}") as ch:
            ask = grpc_peer.method(ch, "unary_unary", "Traceparent")
            return [ask(b"", metadata=(("traceparent", f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"),)), ask(b"")]

    try:
        seen = await asyncio.to_thread(calls)
    finally:
        server.stop(0)
    spans = await eventually_async(lambda: list(col.spans), until=lambda x: len(x) >= 2, what="2 spans exported")
    sent = [TRACEPARENT.fullmatch(s.decode()).groups() for s in seen]
    by_id = {sp["span_id"]: sp for sp in spans}
    continued, root = (by_id[span_id] for _, span_id, _ in sent)  # the variant's parent is the router's span
    assert continued["trace_id"] == CLIENT_TRACE and continued["parent_span_id"] == CLIENT_SPAN
    assert root["trace_id"] == sent[1][0] != CLIENT_TRACE and root["parent_span_id"] == ""
    for sp in (continued, root):
        assert sp["name"] == "POST trace"
        assert sp["attributes"]["bakeoff.variant"] == "g" and sp["attributes"]["service.version"] == "v2"
        assert sp["attributes"]["http.response.status_code"] == 200
        assert sp["attributes"]["bakeoff.outcome"] == "ok"


async def test_sampling_off_propagates_only_and_exports_nothing(upstreams, router_process, collector):
    (up,) = await upstreams("cand")
    col = await collector()
    rp = router_process(_config(up, {"endpoint": col.url, "exportInterval": "100ms"})).start()  # sampleRatio 0
    base = f"http://127.0.0.1:{rp.port}"
    unsampled = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00"
    async with aiohttp.ClientSession() as s:
        for _ in range(20):
            async with s.get(f"{base}/api/a") as r:
                assert r.status == 200
        async with s.get(f"{base}/api/b", headers={"traceparent": unsampled, "tracestate": "vendor=1"}) as r:
            assert r.status == 200
        async with s.get(f"{base}/api/c", headers={"traceparent": "00-zz-nonsense-01"}) as r:
            assert r.status == 200
    seen = up.app[SEEN]
    started = [TRACEPARENT.fullmatch(h["headers"]["traceparent"]).groups() for h in seen[:20]]
    assert all(flags == "00" for _, _, flags in started)  # a new trace, not sampled
    assert len({t for t, _, _ in started}) == 20  # a new trace id each
    assert seen[20]["headers"]["traceparent"] == unsampled  # passed on as it is
    assert seen[20]["headers"]["tracestate"] == "vendor=1"
    replaced = TRACEPARENT.fullmatch(seen[21]["headers"]["traceparent"])  # an invalid one: a new trace
    assert replaced is not None and replaced.group(3) == "00"
    await asyncio.sleep(0.5)  # several export intervals: nothing may arrive
    assert col.posts == 0 and col.spans == []


async def test_without_a_tracing_block_traceparent_passes_untouched_and_none_is_added(upstreams, router_process):
    (up,) = await upstreams("cand")
    rp = router_process(_config(up, None)).start()
    sampled = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{rp.port}/a", headers={"traceparent": sampled}) as r:
            assert r.status == 200
        async with s.get(f"http://127.0.0.1:{rp.port}/b") as r:
            assert r.status == 200
    seen = up.app[SEEN]
    assert seen[0]["headers"]["traceparent"] == sampled
    assert "traceparent" not in seen[1]["headers"]


async def test_a_collector_that_never_answers_drops_and_counts_spans_and_requests_still_flow(
    upstreams, router_process, collector
):
    (up,) = await upstreams("cand")
    col = await collector(hang=True)
    rp = router_process(
        _config(up, {"endpoint": col.url, "sampleRatio": 1, "queueSize": 20, "batchSize": 10, "exportInterval": "50ms"})
    ).start()
    n = 300
    async with aiohttp.ClientSession() as s:
        for _ in range(n):
            async with s.get(f"http://127.0.0.1:{rp.port}/api/x", timeout=aiohttp.ClientTimeout(total=10)) as r:
                assert r.status == 200

    async def metrics() -> str:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{rp.admin_port}/metrics") as r:
                return await r.text()

    def dropped(text: str) -> float:
        m = re.search(r'bakeoff_trace_spans_total\{result="dropped"\} (\S+)', text)
        return float(m.group(1)) if m else -1

    text = await eventually_async(metrics, until=lambda t: dropped(t) > 0, what="dropped spans counted")
    # One batch is held by the hung export; the queue holds at most queueSize; the rest were dropped.
    assert dropped(text) >= n - 10 - 20
    assert col.posts == 1


def test_bad_tracing_config_is_refused_naming_the_file_and_field(tmp_path):
    path = tmp_path / "router.yaml"
    path.write_text("variants: [{name: a, upstreams: ['127.0.0.1:1'], weight: 1}]\ntracing: {sampleRatio: 2}\n")
    r = run_cli("router", "--config", str(path))
    assert r.returncode == 2, r.stderr
    assert f"{path}: tracing.sampleRatio must be a number from 0 to 1, got 2" in r.stderr
    path.write_text("tracing: {endpoint: 'collector:4318'}\n")
    r = run_cli("router", "--config", str(path))
    assert r.returncode == 2 and "tracing.endpoint must be an http:// or https:// URL" in r.stderr, r.stderr
