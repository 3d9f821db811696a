"""The downstream side of HTTP/2: one client connection, many concurrent calls.

A connection arrives here either from the HTTP/1.1 protocol, which hands it
over when its first bytes are HTTP/2's connection preface (cleartext with
prior knowledge, how gRPC clients speak inside a cluster), or from TLS whose
ALPN chose ``h2``.  The sans-IO ``h2`` library does the framing, HPACK and
flow control; this module routes each stream like an HTTP/1.1 request (the
same routing table, stickiness header, override header and per-route
statistics, the route of a gRPC call being its method's path
``/pkg.Service/Method``) and records its outcome into the same per-variant
statistics, a gRPC call by its ``grpc-status`` (bakeoff.router.grpc).

Limits (``http2`` in the router config), each answered with HTTP/2's own
error and counted in ``Router.h2_counters``:

- more concurrent streams than advertised: the stream is refused (h2 raises;
  GOAWAY PROTOCOL_ERROR, RFC 9113 section 5.1.2);
- a decoded header block over ``maxHeaderListBytes`` (HPACK bombs):
  GOAWAY ENHANCE_YOUR_CALM;
- more than ``maxResetsPerSecond`` RST_STREAM frames from the client (rapid
  reset, CVE-2023-44487): GOAWAY ENHANCE_YOUR_CALM;
- any malformed frame: the connection error h2 names (PROTOCOL_ERROR,
  FRAME_SIZE_ERROR, COMPRESSION_ERROR, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import DenialOfServiceError, H2Error, ProtocolError, TooManyStreamsError
from h2.settings import SettingCodes, Settings

from bakeoff.contracts.snapshot import ABORTED, CONNECT_ERROR, TIMEOUT
from bakeoff.router import grpc
from bakeoff.router.h2_tuning import ResponseSender, fast_codec, tune_hpack
from bakeoff.router.h2_upstream import CONNECTION_WINDOW, Http1Bridge
from bakeoff.router.http11 import HOP_BY_HOP, LINGER_SECONDS, METRIC_PREFIX, METRIC_PREFIX_LEN, request_id_line

if TYPE_CHECKING:
    from bakeoff.router.routing import Upstream, Variant
    from bakeoff.router.server import Router

log = structlog.get_logger("bakeoff.router")
tune_hpack()
_perf = time.perf_counter
_REQUEST_ID = request_id_line  # "X-Request-Id: <id>\r\n"


class Sender(Protocol):
    """What Pipe needs of a connection: h2's H2Connection (downstream) or h2_wire's (upstream)."""

    @property
    def max_outbound_frame_size(self) -> int: ...

    def local_flow_control_window(self, stream_id: int) -> int: ...
    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> Any: ...
    def send_headers(self, stream_id: int, headers: Any, end_stream: bool = False) -> Any: ...
    def end_stream(self, stream_id: int) -> Any: ...


class Pipe:
    """One direction of one call: bytes waiting for the receiver's stream window."""

    __slots__ = ("chunks", "size", "end", "trailers", "sent_end", "on_sent", "sent_any")

    def __init__(self, on_sent: Callable[[int], None]) -> None:
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.end = False
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self.sent_end = False
        self.on_sent = on_sent  # n bytes went on: acknowledge them to their sender
        self.sent_any = False  # a body byte went on (a request can then no longer be retried)

    def push(self, data: bytes) -> None:
        if data:
            self.chunks.append(data)
            self.size += len(data)

    def pump(self, conn: Sender, sid: int) -> bool:
        """Send what the window allows; True once the stream's end has been sent."""
        while self.chunks:
            room = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
            if room <= 0:
                return False
            chunk = self.chunks[0]
            if len(chunk) <= room:
                self.chunks.popleft()
            else:
                self.chunks[0] = chunk[room:]
                chunk = chunk[:room]
            self.size -= len(chunk)
            last = not self.chunks and self.end and self.trailers is None
            conn.send_data(sid, chunk, end_stream=last)
            self.sent_any = True
            self.on_sent(len(chunk))
            if last:
                self.sent_end = True
        if self.end and not self.sent_end:
            self.sent_end = True
            if self.trailers is not None:
                conn.send_headers(sid, self.trailers, end_stream=True)
            else:
                conn.end_stream(sid)
        return self.sent_end


class Call:
    """One stream of a client connection: a request routed to a variant, its response."""

    __slots__ = (
        "client", "sid", "variant", "target", "route", "started", "grpc", "timer", "up", "up_sid",
        "req", "resp", "resp_started", "finished", "status", "head_only", "deadline", "headers", "retried",
        "last_read", "span",
    )  # fmt: skip

    def __init__(self, client: H2Client, sid: int) -> None:
        self.client = client
        self.sid = sid
        self.variant: Variant | None = None
        self.target: Upstream | None = None
        self.route = -1
        self.started = _perf()
        self.grpc = False
        self.timer: asyncio.TimerHandle | None = None
        self.up: Any = None  # H2Upstream or Http1Bridge once started
        self.up_sid = 0
        self.req = Pipe(self._req_sent)
        self.resp = Pipe(self._resp_sent)
        self.resp_started = False
        self.finished = False
        self.status = 0
        self.head_only = False
        self.deadline = 0.0  # loop time grpc-timeout ends at; 0: none
        self.headers: list[tuple[bytes, bytes]] = []  # as sent upstream, for one retry of a refused stream
        self.retried = False
        self.last_read = 0.0  # loop time the upstream last answered (or the client last sent): timeouts.read
        self.span: object = None  # a sampled call's span (bakeoff.router.tracing), ended in _finish

    def _req_sent(self, n: int) -> None:
        self.client.ack(self.sid, n)

    def _resp_sent(self, n: int) -> None:
        if self.up is not None:
            self.up.sent(self, n)


class H2Client(asyncio.Protocol):
    """One downstream HTTP/2 connection."""

    def __init__(self, router: Router, tls: bool = False) -> None:
        self.router = router
        self.loop = router.loop
        self.tls = tls
        # Outbound headers are the upstream's, validated by h2 as they came in, or the router's own.
        config = H2Configuration(
            client_side=False, header_encoding=None, validate_outbound_headers=False, normalize_outbound_headers=False
        )
        self.h2 = H2Connection(config)
        fast_codec(self.h2)
        self.out = ResponseSender(self.h2)  # responses, trailers and their DATA, without h2's frame objects
        self.h2.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: router.config.h2_max_concurrent_streams,
                SettingCodes.MAX_HEADER_LIST_SIZE: router.config.h2_max_header_list_bytes,
            },
        )
        self.h2.decoder.max_header_list_size = router.config.h2_max_header_list_bytes
        self.transport: asyncio.Transport | None = None
        self.calls: dict[int, Call] = {}
        self.closed = False
        self.peer = b""
        self.last_active = router.loop.time()
        self._resets = 0
        self._reset_window = 0.0
        self._flush_pending = False

    # -- asyncio.Protocol ----------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0] if isinstance(peer, tuple) else "unix").encode()
        self.router.h2_clients.add(self)
        nodelay(transport)
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.router.h2_clients.discard(self)
        calls, self.calls = self.calls, {}
        for call in calls.values():
            self._abandon(call)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return  # lingering after a connection error: read and drop
        self.last_active = self.loop.time()
        try:
            events = self.h2.receive_data(data)
        except ProtocolError as e:
            kind = (
                "refused_streams"
                if isinstance(e, TooManyStreamsError)
                else "oversize_headers"
                if isinstance(e, DenialOfServiceError)
                else "protocol_errors"
            )
            self._connection_error(kind, e.error_code, str(e))
            return
        for ev in events:
            if isinstance(ev, RequestReceived):
                self._request(ev.stream_id, ev.headers, ev.stream_ended is not None)
            elif isinstance(ev, DataReceived):
                call = self.calls.get(ev.stream_id)
                if ev.flow_controlled_length > len(ev.data) or call is None:
                    pad = ev.flow_controlled_length - (len(ev.data) if call is not None else 0)
                    self.ack(ev.stream_id, pad)
                if call is not None:
                    call.last_read = self.last_active  # a slow upload is not a silent upstream
                    call.req.push(ev.data)
                    if call.up is not None:
                        call.up.pump(call)
            elif isinstance(ev, StreamEnded):
                call = self.calls.get(ev.stream_id)
                if call is not None:
                    call.req.end = True
                    if call.up is not None:
                        call.up.pump(call)
            elif isinstance(ev, StreamReset):
                if self._count_reset():
                    return
                call = self.calls.pop(ev.stream_id, None)
                if call is not None:
                    self._abandon(call)
            elif isinstance(ev, WindowUpdated):
                for call in list(self.calls.values()) if ev.stream_id == 0 else [self.calls.get(ev.stream_id)]:
                    if call is not None:
                        self._pump_response(call)
            elif isinstance(ev, ConnectionTerminated):
                # The client is leaving: what it sent after its GOAWAY (a PING, say) is drained, not
                # answered with a reset (h2spec generic 3.8 read one instead of the close).
                self._close_lingering()
                return
        self.flush()

    # -- limits ----------------------------------------------------------------
    def _count_reset(self) -> bool:
        """Count a client RST_STREAM; True if the connection was closed for resetting too fast."""
        now = self.loop.time()
        if now - self._reset_window >= 1.0:
            self._reset_window = now
            self._resets = 0
        self._resets += 1
        if self._resets > self.router.config.h2_max_resets_per_second:
            self._connection_error(
                "rapid_resets", ErrorCodes.ENHANCE_YOUR_CALM, f"more than {self._resets - 1} stream resets in 1s"
            )
            return True
        return False

    def _connection_error(self, kind: str, code: int, detail: str) -> None:
        self.router.h2_counters[kind] += 1
        log.warning(
            "HTTP/2 client connection closed",
            reason=kind,
            error_code=_name(code),
            detail=detail,
            client=self.peer.decode("latin-1"),
        )
        try:
            self.h2.close_connection(error_code=code)
        except H2Error:
            pass
        self._close_lingering()

    def _close_lingering(self) -> None:
        """End the connection: abandon its calls, send the GOAWAY, half-close, then drain for LINGER_SECONDS.

        Closing a socket with unread bytes in its receive buffer makes the
        kernel answer with a reset, which can reach the client before the
        GOAWAY it was meant to read (RFC 9113 section 5.4.1 wants the GOAWAY
        seen; nginx's ``lingering_close`` exists for the same reason).  TLS
        cannot half-close, so it closes at once.
        """
        calls, self.calls = self.calls, {}
        for call in calls.values():
            self._abandon(call)
        transport = self.transport
        if self.closed or transport is None:
            return
        self._flush_now()
        self.closed = True
        if transport.can_write_eof():
            transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()

    # -- a request -----------------------------------------------------------
    def _request(self, sid: int, headers: list[tuple[bytes, bytes]], end: bool) -> None:
        router = self.router
        call = Call(self, sid)
        self.calls[sid] = call
        key = override = path = content_type = timeout = traceparent = None
        method = b"POST"
        has_rid = has_xfp = False
        xff = None
        out: list[tuple[bytes, bytes]] = []
        settings = router.settings  # Router's settings are properties over this object: read it directly
        sticky = settings.sticky_header
        override_header = settings.override_header
        tracer = settings.tracer
        tracing = tracer is not None
        for field in headers:
            name, value = field
            if name == b":path":
                path = value
            elif name == b"content-type":
                content_type = value
            elif name == b":method":
                method = value
            elif name == b"grpc-timeout":
                timeout = grpc.parse_timeout(value)
            elif name == b"x-request-id":
                has_rid = True
            elif name == b"x-forwarded-proto":
                has_xfp = True
            if name == sticky and key is None:
                key = settings.sticky.key_from(value)  # type: ignore[union-attr]
            if name == override_header:
                override = value.strip()
                continue
            if name == b"x-forwarded-for":
                xff = value if xff is None else xff + b", " + value
                continue
            if name == b"traceparent" and tracing:
                traceparent = value if traceparent is None else b"several"  # several: invalid, a new trace
                continue
            out.append(field)  # as it came: a never-indexed field stays so (RFC 7541 section 6.2.3)
        out.append((b"x-forwarded-for", self.peer if xff is None else xff + b", " + self.peer))
        if not has_xfp:
            out.append((b"x-forwarded-proto", b"https" if self.tls else b"http"))
        if not has_rid:
            out.append((b"x-request-id", _REQUEST_ID()[len(b"X-Request-Id: ") : -2]))
        call.grpc = grpc.is_grpc(content_type)
        call.variant = settings.routes.choose(key, override if settings.override_enabled else None)
        request_routes = settings.request_routes
        if request_routes is not None and path is not None:
            call.route = request_routes.index(path)
        if end:
            call.req.end = True
        if call.variant is None:
            self._own_error(call, 503, grpc.UNAVAILABLE, "no variant has weight", None)
            return
        if tracer is not None:
            line = tracer.begin(call, traceparent, method)  # b"traceparent: <value>\r\n"
            out.append((b"traceparent", line[13:-2]))
        if timeout is not None:
            call.deadline = self.loop.time() + timeout
            call.timer = self.loop.call_later(timeout, self._deadline, call)
        call.last_read = self.last_active
        target = call.variant.next_upstream()
        call.target = target
        call.headers = out
        if call.variant.protocol == "h2c":
            up = router.h2_pool.ready(target)
            if up is not None:  # a pooled connection has a free stream: no task, no wait
                up.start(call, out, end)
                return
        self.loop.create_task(self._connect(call, target, out, end))

    async def _connect(self, call: Call, target: Upstream, headers: list[tuple[bytes, bytes]], end: bool) -> None:
        router = self.router
        try:
            if call.variant.protocol == "h2c":  # type: ignore[union-attr]
                up: Any = await router.h2_pool.get(target)
            else:
                bridge = Http1Bridge(call)
                await asyncio.wait_for(
                    self.loop.create_connection(lambda: bridge, target.host, target.port), router.connect_timeout
                )
                up = bridge
        except (OSError, TimeoutError) as e:
            if not call.finished:
                reason = "did not accept a connection in time" if isinstance(e, TimeoutError) else e.strerror
                outcome = TIMEOUT if isinstance(e, TimeoutError) else CONNECT_ERROR
                self._own_error(call, 502, grpc.UNAVAILABLE, f"connection failed ({reason})", outcome)
            return
        if call.finished or self.closed:
            if isinstance(up, Http1Bridge):
                up.close()
            return
        up.start(call, headers, call.req.end and not call.req.chunks)

    # -- called by the upstream side ------------------------------------------
    def on_response(self, call: Call, headers: list[tuple[bytes, bytes]], end: bool) -> None:
        if call.finished:
            return
        call.last_read = self.loop.time()
        out = self._response_headers(call, headers)
        call.resp_started = True
        for name, value in out:
            if name == b":status":
                call.status = int(value) if value.isdigit() else 502
        if call.grpc and end:
            code = grpc.status_of(out)
            if code is not None:
                call.status = grpc.http_equivalent(code) or call.status
        if self.router.settings.expose_variant:
            out.append((b"x-bakeoff-variant", call.variant.name_bytes))  # type: ignore[union-attr]
        try:
            self.out.send_headers(call.sid, out, end_stream=end)
        except H2Error:
            return self._upstream_done(call, outcome=ABORTED)
        if end:
            call.resp.sent_end = True
            self._complete(call)
        self.flush()

    def on_data(self, call: Call, data: bytes) -> None:
        if call.finished:
            call.up.sent(call, len(data))
            return
        call.last_read = self.loop.time()
        call.resp.push(data)
        self._pump_response(call)

    def on_trailers(self, call: Call, headers: list[tuple[bytes, bytes]]) -> None:
        if call.finished:
            return
        out = self._response_headers(call, headers)
        if call.grpc:
            code = grpc.status_of(out)
            if code is not None:
                call.status = grpc.http_equivalent(code)
        call.resp.trailers = out

    def on_end(self, call: Call) -> None:
        if call.finished:
            return
        call.resp.end = True
        self._pump_response(call)

    def upstream_failed(self, call: Call, detail: str) -> None:
        if call.finished:
            return
        call.up = None
        if call.resp_started:
            self._reset(call, ErrorCodes.INTERNAL_ERROR)
            self._finish(call, outcome=CONNECT_ERROR)
        else:
            self._own_error(call, 502, grpc.UNAVAILABLE, f"upstream {call.target}: {detail}", CONNECT_ERROR)
        self.flush()

    def refused(self, call: Call, detail: str, unprocessed: bool) -> None:
        """The upstream's GOAWAY left the stream unprocessed: retry it once on a new connection if it can be."""
        if call.finished:
            return
        if unprocessed and not call.retried and not call.req.sent_any and call.target is not None:
            call.retried = True
            call.up = None
            call.req.sent_end = False
            self.loop.create_task(self._connect(call, call.target, call.headers, call.req.end))
            return
        self.upstream_failed(call, detail)

    def _response_headers(self, call: Call, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        out = []
        stats = None
        for field in headers:
            name, value = field
            if name.startswith(METRIC_PREFIX):
                if stats is None:
                    stats = self.router.settings.stats.variant(call.variant.name)  # type: ignore[union-attr]
                stats.record_metric(name[METRIC_PREFIX_LEN:].decode("latin-1"), value)
            elif name not in HOP_BY_HOP:
                out.append(field)
        return out

    # -- the call's end ------------------------------------------------------
    def _pump_response(self, call: Call) -> None:
        if call.finished or not call.resp_started:
            return
        try:
            done = call.resp.pump(self.out, call.sid)
        except H2Error:
            return self._upstream_done(call, outcome=ABORTED)
        if done:
            self._complete(call)
        self.flush()

    def _complete(self, call: Call) -> None:
        status = call.status
        if status == 0:
            self._upstream_done(call, outcome=ABORTED)  # grpc CANCELLED
        else:
            self._upstream_done(call, status=status)

    def _upstream_done(self, call: Call, status: int = 0, outcome: int | None = None) -> None:
        self.calls.pop(call.sid, None)
        if call.up is not None:
            call.up.done(call)
        self._finish(call, status, outcome)

    def _deadline(self, call: Call) -> None:
        """grpc-timeout passed: cancel the upstream call, answer DEADLINE_EXCEEDED."""
        if call.finished:
            return
        self._cancel_upstream(call)
        if call.resp_started:
            try:
                self.out.send_headers(call.sid, grpc.error_trailers(4, "deadline exceeded")[2:], end_stream=True)
            except H2Error:
                self._reset(call, ErrorCodes.CANCEL)
            self.calls.pop(call.sid, None)
            self._finish(call, outcome=TIMEOUT)
        else:
            self._own_error(call, 504, grpc.DEADLINE_EXCEEDED, "deadline exceeded", TIMEOUT)
        self.flush()

    def _own_error(self, call: Call, status: int, code: int, message: str, outcome: int | None) -> None:
        """Answer a call with the router's own error: a trailers-only gRPC status, or an HTTP status."""
        self.calls.pop(call.sid, None)
        if call.grpc:
            headers = grpc.error_trailers(code, message)
            body = b""
        else:
            body = message.encode() + b"\n"
            headers = [(b":status", str(status).encode()), (b"content-type", b"text/plain; charset=utf-8")]
            headers.append((b"content-length", str(len(body)).encode()))
        try:
            self.out.send_headers(call.sid, headers, end_stream=not body)
            if body:
                self.out.send_data(call.sid, body, end_stream=True)
        except H2Error:
            pass
        if outcome is None:
            call.finished = True
        else:
            self._finish(call, outcome=outcome)
        self.flush()

    def _abandon(self, call: Call) -> None:
        """The client reset the stream or left: cancel upstream, count it aborted."""
        self._cancel_upstream(call)
        if not call.finished:
            # A client that cancels as its own deadline passes (it keeps the same clock) timed out.
            expired = call.deadline and self.loop.time() >= call.deadline - 0.05
            self._finish(call, outcome=TIMEOUT if expired else ABORTED)

    def _cancel_upstream(self, call: Call) -> None:
        if call.up is not None:
            call.up.cancel(call)
            call.up = None

    def _reset(self, call: Call, code: int) -> None:
        self.calls.pop(call.sid, None)
        try:
            self.h2.reset_stream(call.sid, code)
        except H2Error:
            pass

    def _finish(self, call: Call, status: int = 0, outcome: int | None = None) -> None:
        if call.finished:
            return
        call.finished = True
        if call.timer is not None:
            call.timer.cancel()
        variant = call.variant
        if variant is None:
            return
        settings = self.router.settings
        if call.span is not None:
            settings.tracer.end(call, status, outcome)  # type: ignore[union-attr]
        settings.stats.variant(variant.name).record(call.route, status, outcome, _perf() - call.started)

    # -- plumbing --------------------------------------------------------------
    def ack(self, sid: int, n: int) -> None:
        if n > 0 and not self.closed:
            try:
                self.h2.acknowledge_received_data(n, sid)
            except H2Error:
                pass
            self.flush()

    def flush(self) -> None:
        """Send what h2 has queued, once per loop iteration: a call's frames (and many calls') go in one write."""
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_pending = False
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self._flush_now()  # a GOAWAY queued just before goes out first
            self.closed = True
            self.transport.close()

    def close_if_idle(self) -> bool:
        """For draining: GOAWAY now; close once no call is in flight."""
        if not self.closed:
            try:
                self.h2.close_connection()
            except H2Error:
                pass
            self.flush()
        if not self.calls:
            self.close()
            return True
        return False

    def sweep(self, now: float) -> None:
        if not self.calls:
            if now - self.last_active > self.router.idle_timeout:
                self.close_if_idle()
            return
        limit = self.router.read_timeout
        expired = [c for c in self.calls.values() if not c.grpc and now - c.last_read >= limit]
        for call in expired:
            self._read_timed_out(call, limit)
        if expired:
            self.flush()

    def _read_timed_out(self, call: Call, limit: float) -> None:
        """A non-gRPC call whose upstream said nothing for timeouts.read: 504, or a reset once its answer began.

        As HTTP/1.1's read timeout (an inactivity bound, not a total one).  A
        gRPC call is bounded by its own deadline (grpc-timeout) instead: a
        stream silent for minutes is normal there (a watch), and the client
        sets how long it waits.
        """
        if call.finished:
            return
        self._cancel_upstream(call)
        if call.resp_started:
            self._reset(call, ErrorCodes.CANCEL)
            self._finish(call, outcome=TIMEOUT)
        else:
            self._own_error(call, 504, grpc.DEADLINE_EXCEEDED, f"no response within {limit:g}s", TIMEOUT)


def hand_over(router: Router, transport: asyncio.Transport, data: bytes) -> None:
    """Make a fresh H2Client the protocol of a connection and feed it the bytes read so far."""
    client = H2Client(router)
    transport.set_protocol(client)
    client.connection_made(transport)
    transport.resume_reading()
    client.data_received(data)


class AlpnDispatch(asyncio.Protocol):
    """The traffic port's protocol under TLS: ALPN's choice decides who takes the connection."""

    def __init__(self, router: Router, http1: Callable[[], asyncio.Protocol]) -> None:
        self.router = router
        self.http1 = http1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        obj = transport.get_extra_info("ssl_object")
        chosen = obj.selected_alpn_protocol() if obj is not None else None
        proto: asyncio.Protocol = H2Client(self.router, tls=True) if chosen == "h2" else self.http1()
        transport.set_protocol(proto)
        proto.connection_made(transport)


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


def nodelay(transport: asyncio.BaseTransport) -> None:
    """No Nagle delay: HTTP/2 writes a call's headers, data and trailers as they come, often in small pieces."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _name(code: int) -> str:
    try:
        return ErrorCodes(code).name
    except ValueError:
        return str(code)
