"""The upstream side of HTTP/2 calls: multiplexed h2c connections, or HTTP/1.1 for an http1 variant.

``H2Upstream`` is one cleartext HTTP/2 connection to a variant's address
carrying many calls at once (``H2UpstreamPool`` opens another when the
peer's ``MAX_CONCURRENT_STREAMS`` is reached).  ``Http1Bridge`` carries one
HTTP/2 call to an HTTP/1.1 upstream on a connection of its own.

Flow control is honoured both ways and per stream: bytes received on one
side are acknowledged (their WINDOW_UPDATE sent) only once the other side's
window let them go on (``h2_downstream.Pipe``).  A slow reader thus holds
back only its own stream's sender, and the router holds at most one
stream window of it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import structlog
from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import H2Error, ProtocolError
from httptools import HttpParserError, HttpResponseParser

from bakeoff.router.h2_tuning import fast_codec
from bakeoff.router.http11 import HOP_BY_HOP

if TYPE_CHECKING:
    from bakeoff.router.h2_downstream import Call
    from bakeoff.router.routing import Upstream
    from bakeoff.router.server import Router

log = structlog.get_logger("bakeoff.router")

# The connection-level receive window the router grants a peer: large, so one
# stalled stream (which keeps at most its own 64 KiB window) never closes it for the others.
CONNECTION_WINDOW = 16 * 1024 * 1024
# Response bytes an HTTP/1.1 upstream may get ahead of an HTTP/2 client before its reading pauses.
_BRIDGE_HIGH_WATER = 256 * 1024


class _GracefulH2(H2Connection):
    """h2's client connection, but a graceful GOAWAY (NO_ERROR) lets the streams it keeps finish.

    RFC 9113 section 6.8: streams up to the GOAWAY's last_stream_id go on to
    their end; h2 moves the whole connection to CLOSED on any GOAWAY and then
    rejects their responses.  nginx, for one, sends such a GOAWAY every
    keepalive_requests calls.
    """

    def _receive_goaway_frame(self, frame: Any) -> Any:
        frames, events = super()._receive_goaway_frame(frame)
        if frame.error_code == 0:
            self.state_machine.state = ConnectionState.CLIENT_OPEN
        return frames, events


class H2Upstream(asyncio.Protocol):
    """One h2c connection to an upstream address, shared by many calls."""

    def __init__(self, pool: H2UpstreamPool, target: Upstream) -> None:
        self.pool = pool
        self.target = target
        # Outbound headers were validated and normalised when they came in from the client.
        config = H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False, normalize_outbound_headers=False
        )
        self.h2 = _GracefulH2(config)
        fast_codec(self.h2)
        self.transport: asyncio.Transport | None = None
        self.calls: dict[int, Call] = {}
        self.closed = False
        self.goaway = False
        self._flush_pending = False

    # -- asyncio.Protocol ----------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        from bakeoff.router.h2_downstream import nodelay

        nodelay(transport)
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.discard(self)
        calls, self.calls = self.calls, {}
        for call in calls.values():
            call.client.upstream_failed(call, "connection closed")

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except ProtocolError as e:
            log.warning("upstream broke HTTP/2", upstream=str(self.target), error=str(e))
            self.h2.close_connection(error_code=e.error_code)
            self.flush()
            self.close()
            return
        for ev in events:
            call = self.calls.get(getattr(ev, "stream_id", 0) or 0)
            if isinstance(ev, ResponseReceived):
                if call is not None:
                    call.client.on_response(call, ev.headers, ev.stream_ended is not None)
            elif isinstance(ev, DataReceived):
                if call is None:
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                else:
                    if ev.flow_controlled_length > len(ev.data):  # padding: nobody waits for it
                        self._ack(ev.stream_id, ev.flow_controlled_length - len(ev.data))
                    call.client.on_data(call, ev.data)
            elif isinstance(ev, TrailersReceived):
                if call is not None:
                    call.client.on_trailers(call, ev.headers)
            elif isinstance(ev, StreamEnded):
                if call is not None:
                    call.client.on_end(call)
            elif isinstance(ev, StreamReset):
                if call is not None:
                    del self.calls[ev.stream_id]
                    call.client.upstream_failed(call, f"stream reset ({_code_name(ev.error_code)})")
            elif isinstance(ev, WindowUpdated):
                targets = list(self.calls.values()) if ev.stream_id == 0 else ([call] if call else [])
                for c in targets:
                    self.pump(c)
            elif isinstance(ev, ConnectionTerminated):
                self.goaway = True
                self.pool.discard(self)
                for sid in [s for s in self.calls if s > (ev.last_stream_id or 0) or ev.error_code]:
                    c = self.calls.pop(sid)
                    c.client.refused(c, "connection terminated (GOAWAY)", sid > (ev.last_stream_id or 0))
            elif isinstance(ev, RemoteSettingsChanged):
                self.pool.wake(self.target)
        self.flush()

    # -- the upstream interface of a Call -----------------------------------
    def has_room(self) -> bool:
        if self.closed or self.goaway:
            return False
        limit = self.h2.remote_settings.max_concurrent_streams
        # h2's count walks every stream; the streams open are those of self.calls (a finished call's
        # stream closed), so below half the limit that count is not needed.
        return len(self.calls) < limit // 2 or self.h2.open_outbound_streams < limit

    def start(self, call: Call, headers: list[tuple[bytes, bytes]], end: bool) -> None:
        try:
            sid = self.h2.get_next_available_stream_id()
            self.h2.send_headers(sid, headers, end_stream=end)
        except H2Error as e:  # no stream to be had on this connection: the call fails, the connection stays
            call.client.upstream_failed(call, f"could not open a stream ({type(e).__name__})")
            return
        self.calls[sid] = call
        call.up = self
        call.up_sid = sid
        if end:
            call.req.sent_end = True
        self.pump(call)

    def pump(self, call: Call) -> None:
        """Send the call's request bytes its stream window allows."""
        if call.up_sid in self.calls:
            try:
                call.req.pump(self.h2, call.up_sid)
            except H2Error:
                pass  # the stream closed under us; its reset event follows
            self.flush()

    def sent(self, call: Call, n: int) -> None:
        """n response bytes reached the client: let the upstream send as many more."""
        if n and not self.closed:
            self._ack(call.up_sid, n)
            self.flush()

    def cancel(self, call: Call) -> None:
        """The client gave up (or the deadline passed): reset the upstream stream."""
        if self.calls.pop(call.up_sid, None) is not None and not self.closed:
            try:
                self.h2.reset_stream(call.up_sid, ErrorCodes.CANCEL)
            except H2Error:
                pass
            self.flush()
        self.pool.wake(self.target)

    def done(self, call: Call) -> None:
        self.calls.pop(call.up_sid, None)
        self.pool.wake(self.target)

    # -- helpers ---------------------------------------------------------------
    def _ack(self, sid: int, n: int) -> None:
        try:
            self.h2.acknowledge_received_data(n, sid)
        except H2Error:
            pass

    def flush(self) -> None:
        """Send what h2 has queued, once per loop iteration: many calls' frames go in one write."""
        if not self._flush_pending:
            self._flush_pending = True
            self.pool.router.loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_pending = False
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self._flush_now()  # a GOAWAY or RST_STREAM queued just before goes out first
            self.transport.close()
        self.closed = True


class H2UpstreamPool:
    """h2c connections per upstream address; a call takes any with a free stream."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.conns: dict[Upstream, list[H2Upstream]] = {}
        self._connecting: dict[Upstream, asyncio.Future[H2Upstream]] = {}
        self._waiters: dict[Upstream, list[asyncio.Future[None]]] = {}

    def ready(self, target: Upstream) -> H2Upstream | None:
        """A connection to target with a free stream, if one is open."""
        for conn in self.conns.get(target, ()):
            if conn.has_room():
                return conn
        return None

    async def get(self, target: Upstream) -> H2Upstream:
        while True:
            for conn in self.conns.get(target, ()):
                if conn.has_room():
                    return conn
            pending = self._connecting.get(target)
            if pending is not None:
                conn = await asyncio.shield(pending)
                if conn.has_room():
                    return conn
                continue
            fut: asyncio.Future[H2Upstream] = self.router.loop.create_future()
            self._connecting[target] = fut
            try:
                _, conn = await asyncio.wait_for(
                    self.router.loop.create_connection(lambda: H2Upstream(self, target), target.host, target.port),
                    self.router.connect_timeout,
                )
            except BaseException as e:
                fut.set_exception(e)
                fut.exception()  # retrieved: waiters re-raise it themselves
                raise
            finally:
                del self._connecting[target]
            self.conns.setdefault(target, []).append(conn)
            fut.set_result(conn)
            return conn

    def discard(self, conn: H2Upstream) -> None:
        conns = self.conns.get(conn.target)
        if conns is not None and conn in conns:
            conns.remove(conn)

    def wake(self, target: Upstream) -> None:
        """A stream finished or the peer's settings changed (nothing waits yet: a new connection is opened instead)."""

    def close_all(self) -> None:
        for conns in list(self.conns.values()):
            for conn in list(conns):
                conn.close()
        self.conns.clear()


class Http1Bridge(asyncio.Protocol):
    """One HTTP/2 call carried to an HTTP/1.1 upstream, on a connection of its own."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.transport: asyncio.Transport | None = None
        self.parser = HttpResponseParser(self)
        self.chunked = False
        self.closed = False
        self.complete = False
        self.paused = False
        self._headers: list[tuple[bytes, bytes]] = []
        self._last_name = b""

    def begin(self, headers: list[tuple[bytes, bytes]], end: bool) -> None:
        """Write the request head: HTTP/2's pseudo-headers back into a request line and Host."""
        call = self.call
        pseudo = {}
        lines = []
        has_length = False
        for name, value in headers:
            if name[:1] == b":":
                pseudo[name] = value
            elif name not in HOP_BY_HOP:
                if name == b"content-length":
                    has_length = True
                lines.append(name + b": " + value + b"\r\n")
        if b"host" not in {n for n, _ in headers} and b":authority" in pseudo:
            lines.insert(0, b"host: " + pseudo[b":authority"] + b"\r\n")
        if not end and not has_length:
            self.chunked = True
            lines.append(b"transfer-encoding: chunked\r\n")
        method = pseudo.get(b":method", b"GET")
        call.head_only = method == b"HEAD"
        head = b"".join((method, b" ", pseudo.get(b":path", b"/"), b" HTTP/1.1\r\n", *lines, b"\r\n"))
        if self.transport is not None:
            self.transport.write(head)
        if end:
            call.req.sent_end = True
        self.pump(call)

    # -- the upstream interface of a Call -----------------------------------
    def start(self, call: Call, headers: list[tuple[bytes, bytes]], end: bool) -> None:
        call.up = self
        self.begin(headers, end)

    def pump(self, call: Call) -> None:
        pipe = call.req
        t = self.transport
        if t is None or self.closed:
            return
        while pipe.chunks:
            chunk = pipe.chunks.popleft()
            pipe.size -= len(chunk)
            t.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if self.chunked else chunk)
            pipe.sent_any = True
            pipe.on_sent(len(chunk))
        if pipe.end and not pipe.sent_end:
            pipe.sent_end = True
            if self.chunked:
                t.write(b"0\r\n\r\n")

    def sent(self, call: Call, n: int) -> None:
        if self.paused and call.resp.size < _BRIDGE_HIGH_WATER // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def cancel(self, call: Call) -> None:
        self.close()

    def done(self, call: Call) -> None:
        self.close()

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.transport.close()
        self.closed = True

    # -- asyncio.Protocol ----------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            self.complete = True
            self.call.client.upstream_failed(self.call, "connection closed")

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except HttpParserError as e:
            if not self.complete:
                self.complete = True
                self.call.client.upstream_failed(self.call, f"malformed response ({e})")
            self.close()

    # -- httptools callbacks ------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value.strip()))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            self._headers = []
            return
        headers = [(b":status", str(status).encode())]
        for name, value in self._headers:
            if name not in HOP_BY_HOP and name != b"keep-alive":
                headers.append((name, value))
        self._headers = []
        self.call.client.on_response(self.call, headers, False)

    def on_body(self, body: bytes) -> None:
        call = self.call
        call.client.on_data(call, body)
        if call.resp.size > _BRIDGE_HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.parser.get_status_code() < 200:
            return
        self.complete = True
        self.call.client.on_end(self.call)


def _code_name(code: int) -> str:
    try:
        return ErrorCodes(code).name
    except ValueError:
        return str(code)
