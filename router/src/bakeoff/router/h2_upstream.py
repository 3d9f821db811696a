"""The upstream side of HTTP/2 calls: multiplexed h2c connections, or HTTP/1.1 for an http1 variant.

``H2Upstream`` is one cleartext HTTP/2 connection to a variant's address
carrying many calls at once (``H2UpstreamPool`` opens another when the
peer's ``MAX_CONCURRENT_STREAMS`` is reached).  ``Http1Bridge`` carries one
HTTP/2 call to an HTTP/1.1 upstream on a connection of its own.  An h2c
connection's framing is ``h2_wire.ClientConnection``, a client for the relay
only (the variants are the operator's services; hostile peers are the
downstream side's, which keeps ``h2``).

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
from h2.errors import ErrorCodes
from httptools import HttpParserError, HttpResponseParser

from bakeoff.router.h2_wire import CANCEL, MAX_STREAM_ID, ClientConnection, WireError
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


class H2Upstream(asyncio.Protocol):
    """One h2c connection to an upstream address, shared by many calls (framing: ``h2_wire``)."""

    def __init__(self, pool: H2UpstreamPool, target: Upstream) -> None:
        self.pool = pool
        self.target = target
        self.h2 = ClientConnection(self, CONNECTION_WINDOW)
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
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.discard(self)
        calls, self.calls = self.calls, {}
        for call in calls.values():
            call.client.upstream_failed(call, "connection closed")

    def data_received(self, data: bytes) -> None:
        try:
            self.h2.receive_data(data)
        except WireError as e:
            log.warning("upstream broke HTTP/2", upstream=str(self.target), error=str(e))
            self.h2.close_connection(e.error_code)
            self.close()
            return
        self.flush()

    # -- what the connection reports (h2_wire.Handler) -----------------------
    def h2_response(self, sid: int, headers: list[Any], end: bool) -> None:
        call = self.calls.get(sid)
        if call is not None:
            call.client.on_response(call, headers, end)

    def h2_data(self, sid: int, data: bytes) -> None:
        call = self.calls.get(sid)
        if call is None:
            self.h2.acknowledge_received_data(len(data), sid)
        else:
            call.client.on_data(call, data)

    def h2_trailers(self, sid: int, headers: list[Any]) -> None:
        call = self.calls.get(sid)
        if call is not None:
            call.client.on_trailers(call, headers)

    def h2_end(self, sid: int) -> None:
        call = self.calls.get(sid)
        if call is not None:
            call.client.on_end(call)

    def h2_reset(self, sid: int, error_code: int) -> None:
        call = self.calls.pop(sid, None)
        if call is not None:
            call.client.upstream_failed(call, f"stream reset ({_code_name(error_code)})")

    def h2_window(self, sid: int) -> None:
        if sid == 0:
            for c in list(self.calls.values()):
                self.pump(c)
        else:
            call = self.calls.get(sid)
            if call is not None:
                self.pump(call)

    def h2_goaway(self, last_stream_id: int, error_code: int) -> None:
        # RFC 9113 section 6.8: streams up to last_stream_id go on to their end after a graceful GOAWAY
        # (nginx sends one every keepalive_requests calls); the others were not processed.
        self.goaway = True
        self.pool.discard(self)
        for sid in [s for s in self.calls if s > last_stream_id or error_code]:
            c = self.calls.pop(sid)
            c.client.refused(c, "connection terminated (GOAWAY)", sid > last_stream_id)
        if not self.calls:
            self.close()

    def h2_settings(self) -> None:
        # A larger SETTINGS_INITIAL_WINDOW_SIZE opened every stream's window: request bodies waiting on it go on.
        for c in list(self.calls.values()):
            self.pump(c)
        self.pool.wake(self.target)

    # -- the upstream interface of a Call -----------------------------------
    def has_room(self) -> bool:
        if self.closed or self.goaway:
            return False
        return len(self.h2.streams) < self.h2.max_concurrent_streams

    def start(self, call: Call, headers: list[tuple[bytes, bytes]], end: bool) -> None:
        try:
            sid = self.h2.get_next_available_stream_id()
            self.h2.send_headers(sid, headers, end_stream=end)
        except WireError as e:  # no stream to be had on this connection: the call fails, the connection stays
            call.client.upstream_failed(call, f"could not open a stream ({e})")
            return
        self.calls[sid] = call
        call.up = self
        call.up_sid = sid
        if self.h2.next_stream_id > MAX_STREAM_ID:  # stream ids used up: no new stream here; closed once idle
            self.goaway = True
            self.pool.discard(self)
        if end:
            call.req.sent_end = True
        else:
            self.pump(call)
        self.flush()

    def pump(self, call: Call) -> None:
        """Send the call's request bytes its stream window allows."""
        if call.up_sid in self.calls:
            try:
                call.req.pump(self.h2, call.up_sid)
            except WireError:
                pass  # the stream closed under us; its reset was reported
            self.flush()

    def sent(self, call: Call, n: int) -> None:
        """n response bytes reached the client: let the upstream send as many more."""
        if n and not self.closed:
            self.h2.acknowledge_received_data(n, call.up_sid)
            self.flush()

    def cancel(self, call: Call) -> None:
        """The client gave up (or the deadline passed): reset the upstream stream."""
        if self.calls.pop(call.up_sid, None) is not None and not self.closed:
            self.h2.reset_stream(call.up_sid, CANCEL)
            self.flush()
        self._idle_after_goaway()

    def done(self, call: Call) -> None:
        if self.calls.pop(call.up_sid, None) is not None and call.up_sid in self.h2.streams:
            # The answer is complete while the request is not: nothing will read the rest of it.
            self.h2.reset_stream(call.up_sid, CANCEL)
            self.flush()
        self._idle_after_goaway()

    # -- helpers ---------------------------------------------------------------
    def _idle_after_goaway(self) -> None:
        if self.goaway and not self.calls:
            self.close()
        else:
            self.pool.wake(self.target)

    def flush(self) -> None:
        """Send what is queued, once per loop iteration: many calls' frames go in one write."""
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
