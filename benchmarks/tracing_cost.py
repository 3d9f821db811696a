"""CPU per request of tracing on the router's hot path: opentelemetry-sdk against bakeoff.router.tracing.

What a request costs the router to trace, measured in one process as CPU time (process_time, so the
exporter thread's encoding and POSTs count too) over N requests, for each way of doing it:

- ``sdk``: opentelemetry-sdk 1.x as an instrumentation would use it per request -- the W3C
  propagator's extract, ``start_span`` (SERVER, ParentBased(TraceIdRatioBased(ratio))) with the
  attributes the router records, inject into the upstream request's headers, the status code and
  outcome set, ``end``; BatchSpanProcessor with the OTLP/HTTP protobuf exporter;
- ``bakeoff``: bakeoff.router.tracing's ``begin`` (the traceparent line for the variant) and
  ``end`` (one tuple queued), its exporter thread encoding OTLP protobuf by hand.

Both export to the same OTLP/HTTP sink (a child process that reads each POST and answers 200), at
sampling ratios 0 (propagation only), 0.01 and 1, with and without a client's sampled traceparent.
The router's whole CPU per request is about 29 us compiled (docs/benchmarks.md), which is the
budget these figures are read against.  The last line is one JSON object.

    .venv/bin/python benchmarks/tracing_cost.py [--requests 20000]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from typing import Any

from router_vs_nginx import OTLP_SINK as SINK  # one copy of the sink; benchmarks/ is on sys.path when run as a script

CLIENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sdk_cost(url: str, ratio: float, incoming: bytes | None, n: int) -> float:
    from opentelemetry import propagate, trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    from opentelemetry.trace import SpanKind

    provider = TracerProvider(
        sampler=ParentBased(TraceIdRatioBased(ratio)),
        resource=Resource.create({"service.name": "bakeoff-router", "service.version": "bench"}),
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url), max_queue_size=2048))
    tracer = provider.get_tracer("bakeoff.router")
    carrier = {"traceparent": incoming.decode()} if incoming else {}
    attrs = {"bakeoff.variant": "v2", "http.request.method": "GET", "bakeoff.route": "api", "bakeoff.name": "b"}
    t0 = time.process_time()
    for _ in range(n):
        ctx = propagate.extract(carrier)
        span = tracer.start_span("GET api", context=ctx, kind=SpanKind.SERVER, attributes=attrs)
        headers: dict[str, str] = {}
        propagate.inject(headers, context=trace.set_span_in_context(span))
        span.set_attribute("http.response.status_code", 200)
        span.set_attribute("bakeoff.outcome", "ok")
        span.end()
    provider.force_flush()
    used = time.process_time() - t0
    provider.shutdown()
    return used / n * 1e6


class _Variant:
    name = "v2"
    version = "bench"


class _Exchange:
    __slots__ = ("span", "variant", "route")

    def __init__(self) -> None:
        self.span: Any = None
        self.variant = _Variant()
        self.route = 0


def bakeoff_cost(url: str, ratio: float, incoming: bytes | None, n: int) -> float:
    from bakeoff.router.tracing import Tracer, TracingConfig

    tracer = Tracer(TracingConfig(endpoint=url, sample_ratio=ratio, bakeoff="b"), ["api"])
    import asyncio

    loop = asyncio.new_event_loop()
    tracer.start(loop)
    ex = _Exchange()
    t0 = time.process_time()
    for i in range(n):
        tracer.begin(ex, incoming, b"GET")
        if ex.span is not None:
            tracer.end(ex, 200, None)
        if i % 256 == 0:
            loop.run_until_complete(asyncio.sleep(0))  # the flush the router's loop would run
    tracer.stop(timeout=30)
    used = time.process_time() - t0
    loop.close()
    return used / n * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=20000)
    args = p.parse_args(argv)
    port = free_port()
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(port)])
    url = f"http://127.0.0.1:{port}/v1/traces"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        results: dict[str, float] = {}
        print(f"{'way':8} {'ratio':>6} {'client traceparent':>19} {'cpu us/req':>11}")
        for ratio in (0.0, 0.01, 1.0):
            for incoming in (None, CLIENT):
                for way, fn in (("sdk", sdk_cost), ("bakeoff", bakeoff_cost)):
                    us = fn(url, ratio, incoming, args.requests)
                    key = f"{way}_ratio{ratio:g}_{'parent' if incoming else 'root'}_us"
                    results[key] = round(us, 2)
                    print(f"{way:8} {ratio:6g} {'sampled' if incoming else 'none':>19} {us:11.2f}", flush=True)
        for ratio in (0.0, 0.01, 1.0):
            s, b = results[f"sdk_ratio{ratio:g}_root_us"], results[f"bakeoff_ratio{ratio:g}_root_us"]
            results[f"sdk_vs_bakeoff_ratio{ratio:g}_root"] = round(s / b, 1) if b > 0 else float("nan")
        print(json.dumps(results))
    finally:
        sink.terminate()
        sink.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
