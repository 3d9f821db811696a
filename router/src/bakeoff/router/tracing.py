"""OpenTelemetry traces from the router: W3C Trace Context in and out, a server span per sampled request.

The router takes part in a trace as an HTTP server span between the client
and the variant (W3C Trace Context, https://www.w3.org/TR/trace-context/):

- a request whose ``traceparent`` is valid and sampled continues that trace:
  the router's span is the child of the client's, and the variant gets a
  ``traceparent`` naming the router's span as its parent (so the variant's
  own spans join the trace under it);
- one whose ``traceparent`` is valid but not sampled is passed on as it is
  (nothing recorded, nothing generated);
- one without (or with an invalid one) starts a trace: a fresh trace id,
  sampled when its low 64 bits fall under ``sampleRatio`` (as OpenTelemetry's
  TraceIdRatioBased sampler decides, so every hop that uses the same ratio
  agrees), and the variant gets the new ``traceparent`` either way.

That is OpenTelemetry's ParentBased(TraceIdRatioBased(ratio)) sampler.
``tracestate`` is never touched: it reaches the variant as the client sent it.

Cost (docs/benchmarks.md, "Tracing"): opentelemetry-sdk's span and its
BatchSpanProcessor cost several times the router's whole per-request CPU, so
the hot path here does the minimum: the header is parsed only when present,
ids come from ``random.getrandbits``, and a sampled request appends one tuple
to a list when it ends.  Everything else -- attribute assembly and the OTLP
protobuf encoding (opentelemetry-proto's ``ExportTraceServiceRequest``,
written by hand below; tests/router/test_tracing.py decodes it with
opentelemetry-proto) and the HTTP POST -- happens in batches on an exporter
thread.  When the exporter falls behind, the queue (``queueSize`` spans)
fills and further spans are dropped and counted
(``bakeoff_trace_spans_dropped_total``), never waited for.
"""

from __future__ import annotations

import os
import re
import struct
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from random import getrandbits
from typing import TYPE_CHECKING, Any

import structlog

from bakeoff.contracts.snapshot import ABORTED, CONNECT_ERROR, TIMEOUT, UPGRADED

if TYPE_CHECKING:
    import asyncio

log = structlog.get_logger("bakeoff.router")

_MASK64 = (1 << 64) - 1
# version-traceid-parentid-flags; a later version may append fields after a dash (the spec's forward compatibility).
_TRACEPARENT = re.compile(rb"[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^\r\n]*)?[ \t]*")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16


@dataclass(frozen=True)
class TracingConfig:
    """The ``tracing`` block of the router's configuration (bakeoff.router.config)."""

    endpoint: str | None = None  # OTLP/HTTP traces URL, e.g. http://collector:4318/v1/traces; None: propagation only
    sample_ratio: float = 0.0
    service_name: str = "bakeoff-router"
    bakeoff: str | None = None  # the bake-off's name, on every span as bakeoff.name
    headers: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # sent with every export (an ingestion key)
    queue_size: int = 2048
    batch_size: int = 512
    export_interval: float = 1.0
    export_timeout: float = 10.0


def endpoint_from_env(environ: dict[str, str] | None = None) -> str | None:
    """The OTLP traces URL the OpenTelemetry environment variables name, if any."""
    env = os.environ if environ is None else environ
    url = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if url:
        return url
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if base:
        return base.rstrip("/") + "/v1/traces"
    return None


def headers_from_env(environ: dict[str, str] | None = None) -> tuple[tuple[str, str], ...]:
    """OTEL_EXPORTER_OTLP_HEADERS (``key=value,key2=value2``)."""
    env = os.environ if environ is None else environ
    raw = env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS") or ""
    out = []
    for item in raw.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out.append((urllib.parse.unquote(key.strip()), urllib.parse.unquote(value.strip())))
    return tuple(out)


class Tracer:
    """One router process's tracing: the propagation on the hot path, the span queue, the exporter thread."""

    def __init__(self, config: TracingConfig, route_names: list[str]) -> None:
        self.config = config
        self.recording = config.endpoint is not None
        ratio = min(max(config.sample_ratio, 0.0), 1.0) if self.recording else 0.0
        # Sampled when the trace id's low 64 bits are below this bound (TraceIdRatioBased).
        self._bound = int(ratio * (1 << 64))
        self.route_names = route_names  # RouterStats.route_names: grows only, so an index stays valid
        self.queue: list[tuple[Any, ...]] = []
        self.queue_size = config.queue_size
        self.batch_size = config.batch_size
        self.dropped = 0  # spans dropped because the queue was full
        self.exported = 0  # spans the collector accepted
        self.failed = 0  # spans in batches the collector refused or never answered
        self._busy = False  # the exporter thread holds a batch
        self._kicked = False
        self._handoff: list[list[tuple[Any, ...]] | None] = []
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_warning = 0.0

    # -- the hot path -----------------------------------------------------------
    def begin(self, ex: Any, incoming: bytes | None, method: bytes) -> bytes:
        """The ``traceparent`` line for the request to the variant; sets ``ex.span`` when the request is sampled."""
        if incoming is not None:
            m = _TRACEPARENT.fullmatch(incoming)
            if m is not None:
                version, trace_id, parent_id, flags, rest = m.groups()
                if (
                    version != b"ff"
                    and trace_id != _ZERO_TRACE
                    and parent_id != _ZERO_SPAN
                    and (rest is None or version != b"00")
                ):
                    if not (int(flags, 16) & 1) or not self.recording:
                        return b"traceparent: " + incoming.strip(b" \t") + b"\r\n"  # passed on as it is
                    span_id = getrandbits(64) or 1
                    ex.span = (trace_id, span_id, parent_id, time.time_ns(), method)
                    return b"traceparent: 00-" + trace_id + b"-%016x-01\r\n" % span_id
            # An invalid traceparent is ignored: a new trace starts (W3C Trace Context section 4.3).
        trace = getrandbits(128) or 1
        span_id = getrandbits(64) or 1
        if (trace & _MASK64) < self._bound:
            ex.span = (b"%032x" % trace, span_id, None, time.time_ns(), method)
            return b"traceparent: 00-%032x-%016x-01\r\n" % (trace, span_id)
        return b"traceparent: 00-%032x-%016x-00\r\n" % (trace, span_id)

    def end(self, ex: Any, status: int, outcome: int | None) -> None:
        """A sampled request ended: queue its span (or count it dropped when the queue is full)."""
        span = ex.span
        ex.span = None
        queue = self.queue
        if len(queue) >= self.queue_size:
            self.dropped += 1
            return
        variant = ex.variant
        queue.append((span, time.time_ns(), variant.name, variant.version, ex.route, status, outcome))
        if len(queue) >= self.batch_size and not self._kicked and self._loop is not None:
            self._kicked = True
            self._loop.call_soon(self._flush)

    # -- the exporter -------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self.recording:
            return
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="bakeoff-otlp-export", daemon=True)
        self._thread.start()
        self._timer = loop.call_later(self.config.export_interval, self._tick)

    def _tick(self) -> None:
        self._flush()
        assert self._loop is not None
        self._timer = self._loop.call_later(self.config.export_interval, self._tick)

    def _flush(self) -> None:
        """Hand the queue to the exporter thread unless it is still busy (the queue then keeps filling)."""
        self._kicked = False
        if self._busy or not self.queue:
            return
        batch, self.queue = self.queue, []
        self._busy = True
        with self._wake:
            self._handoff.append(batch)
            self._wake.notify()

    def stop(self, timeout: float = 2.0) -> None:
        """Export what is queued (within the timeout) and end the thread."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        thread = self._thread
        if thread is None:
            return
        deadline = time.monotonic() + timeout
        while self._busy and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.queue and not self._busy:
            self._flush()
        with self._wake:
            self._handoff.append(None)
            self._wake.notify()
        thread.join(max(0.0, deadline - time.monotonic()))
        self._thread = None

    def counts(self) -> dict[str, int]:
        return {"exported": self.exported, "dropped": self.dropped, "failed": self.failed, "queued": len(self.queue)}

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._handoff:
                    self._wake.wait()
                batch = self._handoff.pop(0)
            if batch is None:
                return
            try:
                self._export(batch)
            except Exception as e:  # never let the thread die: count and say why
                self.failed += len(batch)
                self._warn(f"{type(e).__name__}: {e}")
            finally:
                self._busy = False

    def _export(self, batch: list[tuple[Any, ...]]) -> None:
        body = encode_export_request(batch, self.config, self.route_names)
        request = urllib.request.Request(
            self.config.endpoint,  # type: ignore[arg-type]
            data=body,
            method="POST",
            headers={"Content-Type": "application/x-protobuf", **dict(self.config.headers)},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.config.export_timeout) as response:
                response.read()
        except urllib.error.HTTPError as e:
            self.failed += len(batch)
            self._warn(f"the collector answered {e.code} {e.reason}")
            return
        except (OSError, ValueError) as e:
            self.failed += len(batch)
            self._warn(str(getattr(e, "reason", e)))
            return
        self.exported += len(batch)

    def _warn(self, why: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= 60:
            self._last_warning = now
            log.warning(
                "could not export spans (this batch is lost; the next is tried)",
                endpoint=self.config.endpoint,
                error=why,
                failed_spans_total=self.failed,
            )


# -- OTLP protobuf (opentelemetry/proto/collector/trace/v1/trace_service.proto) -------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _fixed64(number: int, value: int) -> bytes:
    return _varint(number << 3 | 1) + struct.pack("<Q", value)


def _str_attr(key: str, value: str) -> bytes:
    """KeyValue{key, AnyValue{string_value}}."""
    return _len_field(1, key.encode()) + _len_field(2, _len_field(1, value.encode()))


def _int_attr(key: str, value: int) -> bytes:
    """KeyValue{key, AnyValue{int_value}} (non-negative values only)."""
    return _len_field(1, key.encode()) + _len_field(2, _varint(3 << 3) + _varint(value))


_OUTCOME_NAMES = {ABORTED: "aborted", TIMEOUT: "timeout", CONNECT_ERROR: "error", UPGRADED: "ok"}
_SPAN_KIND_SERVER = 2
_STATUS_ERROR = 2
_SCOPE = _len_field(1, b"bakeoff.router")


def outcome_name(status: int, outcome: int | None) -> str:
    if outcome is not None:
        return _OUTCOME_NAMES.get(outcome, "error")
    return "error" if status >= 500 else "ok"


def encode_span(record: tuple[Any, ...], config: TracingConfig, route_names: list[str]) -> bytes:
    (trace_id, span_id, parent_id, start_ns, method), end_ns, variant, version, route, status, outcome = record
    method_s = method.decode("latin-1")
    route_name = route_names[route] if 0 <= route < len(route_names) else None
    outcome_s = outcome_name(status, outcome)
    attrs = [_str_attr("bakeoff.variant", variant), _str_attr("http.request.method", method_s)]
    if config.bakeoff:
        attrs.append(_str_attr("bakeoff.name", config.bakeoff))
    if version:
        attrs.append(_str_attr("service.version", version))
    if route_name is not None:
        attrs.append(_str_attr("bakeoff.route", route_name))
    if status and outcome is None:
        attrs.append(_int_attr("http.response.status_code", status))
    attrs.append(_str_attr("bakeoff.outcome", outcome_s))
    parts = [
        _len_field(1, bytes.fromhex(trace_id.decode())),
        _len_field(2, span_id.to_bytes(8, "big")),
    ]
    if parent_id is not None:
        parts.append(_len_field(4, bytes.fromhex(parent_id.decode())))
    name = f"{method_s} {route_name}" if route_name is not None else method_s
    parts += [
        _len_field(5, name.encode()),
        _varint(6 << 3) + _varint(_SPAN_KIND_SERVER),
        _fixed64(7, start_ns),
        _fixed64(8, max(end_ns, start_ns)),
    ]
    parts += [_len_field(9, a) for a in attrs]
    if outcome_s in ("error", "timeout"):
        parts.append(_len_field(15, _varint(3 << 3) + _varint(_STATUS_ERROR)))
    # flags: the W3C trace flags (sampled), and whether the parent is known to be remote (it is, when there is one).
    flags = 0x01 | 0x100 | (0x200 if parent_id is not None else 0)
    parts.append(_varint(16 << 3 | 5) + struct.pack("<I", flags))
    return b"".join(parts)


def encode_export_request(batch: list[tuple[Any, ...]], config: TracingConfig, route_names: list[str]) -> bytes:
    """An ExportTraceServiceRequest: one ResourceSpans per variant (service.version is the variant's commit)."""
    by_variant: dict[tuple[str, str | None], list[bytes]] = {}
    for record in batch:
        by_variant.setdefault((record[2], record[3]), []).append(encode_span(record, config, route_names))
    out = []
    for (variant, version), spans in by_variant.items():
        attrs = [_str_attr("service.name", config.service_name), _str_attr("bakeoff.variant", variant)]
        if version:
            attrs.append(_str_attr("service.version", version))
        if config.bakeoff:
            attrs.append(_str_attr("bakeoff.name", config.bakeoff))
        resource = b"".join(_len_field(1, a) for a in attrs)
        scope_spans = _len_field(1, _SCOPE) + b"".join(_len_field(2, s) for s in spans)
        out.append(_len_field(1, _len_field(1, resource) + _len_field(2, scope_spans)))
    return b"".join(out)
