"""The data plane: an HTTP/1.1 reverse proxy written as asyncio Protocols.

This is where a request is routed.  ``ClientConnection`` is one downstream
connection: httptools parses its requests, the routing table picks a
variant, and the request streams to a pooled keep-alive
``UpstreamConnection``, whose response streams back.  Both directions are
flow-controlled: when one side's write buffer fills, the other side stops
reading (``_update_reading``), so no body is ever held whole in memory.

Pipelined requests queue behind the one in flight (reading pauses while any
are queued) and are answered in order.  A request carrying ``Upgrade`` whose
upstream answers 101 turns both connections into a raw tunnel.

Every failure ends in a short response or a closed connection, never in an
exception escaping to the event loop: a malformed request gets 400, an
oversized head 431, an unreachable upstream 502, a silent one 504.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import time
from collections import deque
from typing import TYPE_CHECKING

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser, HttpResponseParser

from bakeoff.contracts.snapshot import ABORTED, CONNECT_ERROR, TIMEOUT

if TYPE_CHECKING:
    from bakeoff.router.routing import Upstream, Variant
    from bakeoff.router.server import Router

# RFC 9110 section 7.6.1: meaningful for one connection only, never forwarded.
# Content-Length is not here: it passes through when it frames the body as is.
HOP_BY_HOP = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"te", b"transfer-encoding", b"upgrade", b"trailer")
)
METRIC_PREFIX = b"bakeoff-metric-"
_METRIC_PREFIX_LEN = len(METRIC_PREFIX)
# Bytes of request body held while no upstream connection is ready yet.
_MAX_PENDING_BODY = 256 * 1024
# How long a connection answered with a 400 or 431 drains before it closes.
_LINGER_SECONDS = 2.0
_perf = time.perf_counter

# The fast response path's grammar (RFC 9112 section 4 and 5, strictly): a
# status line, then field lines of a token, a colon and visible characters;
# no obsolete line folding, no bare CR or LF, no NUL.
_RESPONSE_HEAD = re.compile(
    rb"HTTP/1\.1 [1-5][0-9][0-9] [\t\x20-\x7e\x80-\xff]*\r\n"
    rb"(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e\x80-\xff]*\r\n)*"
)
_REQUEST_HEAD = re.compile(
    rb"(GET|HEAD|POST|PUT|DELETE|PATCH|OPTIONS) /[\x21-\x7e]* HTTP/1\.1\r\n"
    rb"(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e]*\r\n)*"
)
# Matched on the lower-cased head, whose byte positions equal the original's.
_RESPONSE_SPECIAL = re.compile(
    rb"\r\n(connection|keep-alive|proxy-connection|te|trailer|upgrade|transfer-encoding|content-length"
    rb"|bakeoff-metric-[^:]*):[ \t]*([^\r]*)"
)
_PLAIN_CONNECTION_TOKENS = frozenset((b"keep-alive", b"close", b""))
# The lines the fast response path removes: hop-by-hop and metric headers
# (the same names as _RESPONSE_SPECIAL less those it keeps or refuses).
_RESPONSE_DROP = re.compile(
    rb"\r\n(?:connection|keep-alive|proxy-connection|te|trailer|bakeoff-metric-[^:\r]*):[^\r]*", re.IGNORECASE
)


def _error_response(status: int, reason: str, message: str) -> bytes:
    body = f"{status} {reason}: {message}\n".encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


BAD_REQUEST = _error_response(400, "Bad Request", "the request is not valid HTTP/1.1")
HEAD_TOO_LARGE = _error_response(431, "Request Header Fields Too Large", "the request head is too large")
NO_VARIANT = _error_response(503, "Service Unavailable", "no variant is routable")
DRAINING = _error_response(503, "Service Unavailable", "the router is shutting down")


class _HeadTooLarge(Exception):
    pass


_request_ids = itertools.count(1)
_REQUEST_ID_PREFIX = os.urandom(4).hex().encode() + b"-"


class Exchange:
    """One request and its response, from the head being read to the last byte."""

    __slots__ = (
        "head", "pending", "pending_bytes", "body_done", "chunked", "keep_alive", "is_head",
        "upgrade", "variant", "target", "started", "upstream", "response_started",
        "last_activity", "http10", "reused", "sent_body", "finished",
    )  # fmt: skip

    def __init__(self) -> None:
        self.head = b""
        self.pending: list[bytes] | None = None  # body bytes waiting for an upstream
        self.pending_bytes = 0
        self.body_done = False
        self.chunked = False
        self.keep_alive = True
        self.is_head = False
        self.upgrade = False
        self.variant: Variant | None = None
        self.target: Upstream | None = None
        self.started = 0.0
        self.upstream: UpstreamConnection | None = None
        self.response_started = False
        self.last_activity = 0.0  # loop time of the last byte either way; read timeouts count from it
        self.http10 = False
        self.reused = False
        self.sent_body = False
        self.finished = False


class ClientConnection(asyncio.Protocol):
    """One downstream connection."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.loop = router.loop
        self.parser = HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.exchanges: deque[Exchange] = deque()  # [in flight, queued...]
        self.parsing: Exchange | None = None
        self.peer = b""
        self.reading_paused = False
        self.writing_paused = False
        self.upstream_full = False
        self.closed = False
        self.eof = False
        self.out: list[bytes] | None = None  # see send()
        self.final_error: bytes | None = None  # written once in-flight work is answered
        self.last_active = router.loop.time()  # for the idle and head timeouts (Router.sweep)
        self.tunnel: UpstreamConnection | None = None
        self.tunnel_pending: list[bytes] | None = None
        self._parser_idle = True  # httptools is between messages: the fast path may be used
        # Per-request scratch, reset in on_message_begin.
        self._url = b""
        self._headers: list[bytes] = []
        self._head_size = 0
        self._key: bytes | None = None
        self._override: bytes | None = None
        self._xff: bytes | None = None
        self._has_rid = False
        self._has_xfp = False
        self._conn_tokens: bytes | None = None
        self._upgrade_value: bytes | None = None
        self._te: bytes | None = None

    # -- asyncio.Protocol ------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0] if isinstance(peer, tuple) else "unix").encode()
        self.router.clients.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.router.clients.discard(self)
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None
        while self.exchanges:
            ex = self.exchanges.popleft()
            if ex.started and not ex.finished:
                self._finish(ex, outcome=ABORTED)
            if ex.upstream is not None:
                ex.upstream.close()
                ex.upstream = None
        self.parsing = None

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.transport.write(data)  # type: ignore[union-attr]
            return
        if self.tunnel_pending is not None:
            self.tunnel_pending.append(data)
            return
        if self.final_error is not None:
            return  # after a parse error nothing more is read from this client
        self.last_active = self.loop.time()
        if self._parser_idle and not self.exchanges and self._fast_request(data):
            return
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as e:
            rest = data[e.args[0] :]
            self.tunnel_pending = [rest] if rest else []
        except HttpParserError as e:
            if isinstance(e.__context__, _HeadTooLarge):
                self._fail_connection(HEAD_TOO_LARGE)
            else:
                self._fail_connection(BAD_REQUEST)

    def eof_received(self) -> bool | None:
        # A client that half-closes after its last request still gets its
        # responses; one that half-closes in the middle of a request has
        # abandoned it (connection_lost then counts it aborted).
        self.eof = True
        if self.parsing is not None:
            return False
        return bool(self.exchanges)

    def pause_writing(self) -> None:
        self.writing_paused = True
        ex = self.exchanges[0] if self.exchanges else None
        up = self.tunnel or (ex.upstream if ex else None)
        if up is not None:
            up.set_reading(False)

    def resume_writing(self) -> None:
        self.writing_paused = False
        ex = self.exchanges[0] if self.exchanges else None
        up = self.tunnel or (ex.upstream if ex else None)
        if up is not None:
            up.set_reading(True)

    def _fast_request(self, data: bytes) -> bool:
        """Route a plain request that arrived whole, without httptools' callbacks.

        The common request -- one read holding a head and, if any, its
        whole Content-Length body, on an otherwise idle connection -- is
        checked against a strict grammar with one regular expression; the
        headers the router acts on are found with one more, by position.
        Anything else (HTTP/1.0, chunked, Upgrade, a split head, pipelining,
        a doubtful byte) returns False and takes httptools' path, the
        reference behaviour; tests/router/test_request_paths.py holds the
        two to the same results.
        """
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = data[: end + 2]
        m = _REQUEST_HEAD.match(head)
        if m is None or m.end() != len(head):
            return False
        router = self.router
        if end + 2 > router.max_header_bytes:
            return False
        lower = head.lower()
        keep_alive = True
        length = -1
        key = override = xff = None
        has_xfp = has_rid = False
        cuts: list[tuple[int, int]] | None = None
        sticky = router.sticky_header
        for f in router.request_special.finditer(lower):
            name = f.group(1)
            drop = False
            if name == b"content-length":
                value = f.group(2).strip()
                if length >= 0 or not value.isdigit() or len(value) > 18:
                    return False
                length = int(value)
            elif name == b"connection":
                tokens = {t.strip() for t in f.group(2).split(b",")}
                if not tokens <= {b"keep-alive", b"close", b""}:
                    return False
                if b"close" in tokens:
                    keep_alive = False
                drop = True
            elif name == b"transfer-encoding" or name == b"upgrade":
                return False
            elif name == sticky:
                key = router.sticky.key_from(head[f.start(2) : f.end(2)])  # type: ignore[union-attr]
            elif name == router.override_header:
                override = head[f.start(2) : f.end(2)].strip()
                drop = True
            elif name == b"x-forwarded-for":
                xff = head[f.start(2) : f.end(2)].rstrip()
                drop = True
            elif name == b"x-forwarded-proto":
                has_xfp = True
            elif name == b"x-request-id":
                has_rid = True
            else:  # keep-alive, proxy-connection, te, trailer: this hop's only
                drop = True
            if drop:
                if cuts is None:
                    cuts = []
                cuts.append((f.start(), f.end()))
        body_len = len(data) - end - 4
        if body_len != (length if length > 0 else 0):
            return False  # a body still to come, or a pipelined request behind it
        if cuts is not None:
            parts = []
            pos = 0
            for a, b in cuts:
                parts.append(head[pos:a])
                pos = b
            parts.append(head[pos:])
            head = b"".join(parts)
        extra = b"X-Forwarded-For: " + (xff + b", " + self.peer if xff is not None else self.peer) + b"\r\n"
        if not has_xfp:
            extra += b"X-Forwarded-Proto: http\r\n"
        if not has_rid:
            extra += b"X-Request-Id: " + _REQUEST_ID_PREFIX + b"%x\r\n" % next(_request_ids)
        ex = Exchange()
        ex.started = _perf()
        ex.last_activity = self.last_active
        ex.is_head = m.group(1) == b"HEAD"
        ex.keep_alive = keep_alive and not router.draining
        ex.head = head + extra + b"\r\n"
        ex.body_done = True
        if body_len:
            ex.pending = [data[end + 4 :]]
            ex.pending_bytes = body_len
        ex.variant = router.routes.choose(key, override if router.override_enabled else None)
        self.exchanges.append(ex)
        self._start(ex)
        return True

    # -- httptools callbacks ---------------------------------------------
    def on_message_begin(self) -> None:
        self._parser_idle = False
        self._url = b""
        self._headers = []
        self._head_size = 0
        self._key = None
        self._override = None
        self._xff = None
        self._has_rid = False
        self._has_xfp = False
        self._conn_tokens = None
        self._upgrade_value = None
        self._te = None
        ex = Exchange()
        ex.started = _perf()
        ex.last_activity = self.loop.time()
        self.parsing = ex
        self.exchanges.append(ex)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > self.router.max_header_bytes:
            raise _HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.router.max_header_bytes:
            raise _HeadTooLarge
        lname = name.lower()
        if lname in HOP_BY_HOP:
            if lname == b"connection":
                self._conn_tokens = value.lower()
            elif lname == b"upgrade":
                self._upgrade_value = value
            elif lname == b"transfer-encoding":
                self._te = value
            return
        router = self.router
        if lname == router.sticky_header:
            self._key = router.sticky.key_from(value)  # type: ignore[union-attr]
        elif lname == router.override_header:
            self._override = value.strip()
            return
        elif lname == b"x-forwarded-for":
            self._xff = value
            return
        elif lname == b"x-request-id":
            self._has_rid = True
        elif lname == b"x-forwarded-proto":
            self._has_xfp = True
        self._headers.append(name + b": " + value + b"\r\n")

    def on_headers_complete(self) -> None:
        ex = self.parsing
        assert ex is not None
        parser = self.parser
        router = self.router
        method = parser.get_method()
        ex.is_head = method == b"HEAD"
        ex.http10 = parser.get_http_version() == "1.0"
        ex.keep_alive = parser.should_keep_alive() and not router.draining
        headers = self._headers
        if self._conn_tokens is not None:
            headers = drop_connection_listed(headers, self._conn_tokens)
        if self._upgrade_value is not None and parser.should_upgrade():
            ex.upgrade = True
            headers.append(b"Connection: upgrade\r\nUpgrade: " + self._upgrade_value + b"\r\n")
        if self._xff is not None:
            headers.append(b"X-Forwarded-For: " + self._xff + b", " + self.peer + b"\r\n")
        else:
            headers.append(b"X-Forwarded-For: " + self.peer + b"\r\n")
        if not self._has_xfp:
            headers.append(b"X-Forwarded-Proto: http\r\n")
        if not self._has_rid:
            headers.append(b"X-Request-Id: " + _REQUEST_ID_PREFIX + b"%x\r\n" % next(_request_ids))
        # httptools has already rejected Content-Length together with chunked.
        if self._te is not None and b"chunked" in self._te.lower():
            ex.chunked = True
            headers.append(b"Transfer-Encoding: chunked\r\n")
        ex.head = b"".join((method, b" ", self._url, b" HTTP/1.1\r\n", *headers, b"\r\n"))

        ex.variant = router.routes.choose(self._key, self._override if router.override_enabled else None)
        if ex is self.exchanges[0]:
            self._start(ex)

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        if ex is None or ex.finished:
            return  # the answer was already given (an error); the body is dropped
        if ex.chunked:
            self._send_body(ex, b"%x\r\n" % len(body) + body + b"\r\n")
        else:
            self._send_body(ex, body)

    def on_message_complete(self) -> None:
        self._parser_idle = True
        ex = self.parsing
        if ex is None:
            return
        ex.body_done = True
        if ex.chunked and not ex.finished:
            self._send_body(ex, b"0\r\n\r\n")
        self.parsing = None
        self._update_reading()

    # -- the exchange ----------------------------------------------------
    def _start(self, ex: Exchange) -> None:
        """Send an exchange's request: to a pooled connection now, or after a connect."""
        variant = ex.variant
        if variant is None:
            self._answer_error(ex, NO_VARIANT, None)
            return
        router = self.router
        ex.last_activity = self.loop.time()
        target = variant.next_upstream()
        ex.target = target
        conn = router.pool_get(target)
        if conn is not None:
            ex.reused = True
            self._attach(ex, conn)
        else:
            self.loop.create_task(self._connect(ex, target))

    async def _connect(self, ex: Exchange, target: Upstream) -> None:
        router = self.router
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: UpstreamConnection(router, target), target.host, target.port),
                router.connect_timeout,
            )
        except TimeoutError:
            if not ex.finished and not self.closed:
                self._answer_error(ex, _gateway_error(504, ex, "did not accept a connection in time"), TIMEOUT)
            return
        except OSError as e:
            if not ex.finished and not self.closed:
                reason = e.strerror or type(e).__name__
                self._answer_error(ex, _gateway_error(502, ex, f"connection failed ({reason})"), CONNECT_ERROR)
            return
        if ex.finished or self.closed:
            router.pool_put(conn)  # the client went away while we connected
            return
        self._attach(ex, conn)

    def _attach(self, ex: Exchange, conn: UpstreamConnection) -> None:
        ex.upstream = conn
        conn.bind(self, ex)
        transport = conn.transport
        if ex.pending:
            transport.writelines([ex.head, *ex.pending])
            ex.sent_body = True
            ex.pending = None
            ex.pending_bytes = 0
        else:
            transport.write(ex.head)
        if self.writing_paused:
            conn.set_reading(False)
        self._update_reading()

    def _send_body(self, ex: Exchange, chunk: bytes) -> None:
        up = ex.upstream
        if up is not None and up.transport is not None:
            up.transport.write(chunk)
            ex.sent_body = True
            ex.last_activity = self.loop.time()
        else:
            if ex.pending is None:
                ex.pending = []
            ex.pending.append(chunk)
            ex.pending_bytes += len(chunk)
            if ex.pending_bytes > _MAX_PENDING_BODY:
                self._update_reading()

    def sweep(self, now: float) -> None:
        """Enforce timeouts; called by Router about four times per shortest timeout.

        One periodic pass over all connections replaces two timers per
        request (read timeout, keep-alive idle), which cost more than the
        rest of the request's bookkeeping together.
        """
        if self.closed or self.tunnel is not None:
            return
        router = self.router
        ex = self.exchanges[0] if self.exchanges else None
        if ex is None:
            if now - self.last_active > router.idle_timeout:
                self._close()  # idle keep-alive connection
            return
        if not ex.head:
            if now - ex.last_activity > router.idle_timeout:
                self._close()  # a head that takes this long is an attack or a dead client
            return
        if ex.upstream is not None and not ex.finished and now - ex.last_activity >= router.read_timeout:
            self._read_timed_out(ex)

    def _read_timed_out(self, ex: Exchange) -> None:
        timeout = self.router.read_timeout
        if ex.response_started:
            self._finish(ex, outcome=TIMEOUT)
            self._close()
        else:
            self._answer_error(ex, _gateway_error(504, ex, f"no response within {timeout:g}s"), TIMEOUT)

    def upstream_failed(self, conn: UpstreamConnection, ex: Exchange, detail: str) -> None:
        """The upstream connection broke (closed, reset or sent garbage) mid-exchange."""
        if ex.finished:
            return
        ex.upstream = None
        if ex.response_started:
            self._finish(ex, outcome=CONNECT_ERROR)
            self._close()
            return
        if ex.reused and not ex.sent_body and not ex.upgrade and ex.pending is None:
            # A pooled connection the upstream closed just as we reused it:
            # nothing reached the application, so a fresh connection is safe.
            ex.reused = False
            self.loop.create_task(self._connect(ex, ex.target))  # type: ignore[arg-type]
            return
        self._answer_error(ex, _gateway_error(502, ex, detail), CONNECT_ERROR)

    def _answer_error(self, ex: Exchange, response: bytes, outcome: int | None) -> None:
        """Answer an exchange with the router's own error and close the connection."""
        if ex.upstream is not None:
            ex.upstream.close()
            ex.upstream = None
        if outcome is None:
            ex.finished = True
        else:
            self._finish(ex, outcome=outcome)
        if self.exchanges and self.exchanges[0] is ex:
            self._write_final(response)
        else:
            self.final_error = response

    def _write_final(self, response: bytes) -> None:
        if self.transport is None or self.closed:
            return
        self.send(response)
        self.flush()
        if self.final_error is None or not self.transport.can_write_eof():
            self._close()
            return
        # Lingering close (as nginx does): half-close, then read and discard
        # what the client is still sending for a moment.  Closing at once
        # would answer its next bytes with a reset, which can destroy the
        # error response before the client has read it.
        self.transport.write_eof()
        self._set_reading(True)
        self.loop.call_later(_LINGER_SECONDS, self._close)

    def _fail_connection(self, response: bytes) -> None:
        """A request could not be parsed: answer once everything before it is."""
        self.final_error = response
        ex = self.parsing
        self.parsing = None
        if ex is not None and ex in self.exchanges:
            if ex is self.exchanges[0] and ex.head:
                # Its head went to a variant and its body turned out bad:
                # the upstream connection cannot be reused or left waiting.
                self.exchanges.popleft()
                if ex.upstream is not None:
                    ex.upstream.close()
                    ex.upstream = None
                if not ex.finished:
                    self._finish(ex, outcome=ABORTED)
                if ex.response_started:
                    self._close()
                    return
            else:
                self.exchanges.remove(ex)
        if not self.exchanges:
            self._write_final(response)
        else:
            self._update_reading()

    def _finish(self, ex: Exchange, status: int = 0, outcome: int | None = None) -> None:
        ex.finished = True
        variant = ex.variant
        if variant is None:
            return
        stats = self.router.stats.variant(variant.name)
        if outcome is None:
            stats.record_response(status, _perf() - ex.started)
        else:
            stats.record_failure(outcome, _perf() - ex.started)

    # -- called by UpstreamConnection -------------------------------------
    def response_head(self, ex: Exchange, head: bytes) -> None:
        ex.response_started = True
        self.send(head)

    def response_complete(self, ex: Exchange, status: int, conn: UpstreamConnection, reusable: bool) -> None:
        self._finish(ex, status)
        ex.upstream = None
        if reusable and ex.body_done:
            self.router.pool_put(conn)
        else:
            conn.close()
        if not self.exchanges or self.exchanges[0] is not ex:
            return
        self.exchanges.popleft()
        if not ex.keep_alive or ex.upgrade or not ex.body_done:
            self._close()
            return
        if self.exchanges:
            nxt = self.exchanges[0]
            if nxt.head:  # its head is complete: send it
                self._start(nxt)
        elif self.final_error is not None:
            self._write_final(self.final_error)
            return
        elif self.router.draining:
            self._close()
            return
        elif self.eof:
            self._close()  # the client half-closed and has had every answer
            return
        else:
            self.last_active = self.loop.time()
        self._update_reading()

    def start_tunnel(self, conn: UpstreamConnection, rest: bytes) -> None:
        """The upstream answered 101: from now on bytes flow unparsed both ways."""
        self.tunnel = conn
        if self.exchanges:
            self._finish(self.exchanges[0], 101)  # its latency is the time to the switch
        pending = self.tunnel_pending or []
        self.tunnel_pending = None
        if rest:
            self.send(rest)
        for chunk in pending:
            conn.transport.write(chunk)  # type: ignore[union-attr]
        self._set_reading(True)

    # -- flow control ----------------------------------------------------
    def _update_reading(self) -> None:
        """Read from the client only while nothing downstream of it is full."""
        if self.closed:
            return
        if self.tunnel is not None:
            self._set_reading(not self.upstream_full)  # a tunnel: only the upstream can be full
            return
        ex = self.exchanges[0] if self.exchanges else None
        blocked = (
            len(self.exchanges) > 1
            or self.final_error is not None
            or self.upstream_full
            or (ex is not None and ex.pending_bytes > _MAX_PENDING_BODY)
        )
        self._set_reading(not blocked)

    def _set_reading(self, on: bool) -> None:
        if on == (not self.reading_paused) or self.transport is None or self.closed:
            return
        if on:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()
        self.reading_paused = not on

    def upstream_write_state(self, full: bool) -> None:
        self.upstream_full = full
        self._update_reading()

    def send(self, data: bytes) -> None:
        """Write to the client, or gather while an upstream's bytes are being parsed.

        A response's head and body usually arrive in one read; gathering them
        makes one write (one system call) of what would otherwise be two.
        """
        out = self.out
        if out is not None:
            out.append(data)
        elif not self.closed and self.transport is not None:
            self.transport.write(data)

    def flush(self) -> None:
        out = self.out
        self.out = None
        if out and not self.closed and self.transport is not None:
            if len(out) == 1:
                self.transport.write(out[0])
            else:
                self.transport.writelines(out)

    def _close(self) -> None:
        self.flush()
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()

    def close_if_idle(self) -> bool:
        """For draining: close now unless a request is in flight."""
        if not self.exchanges and self.tunnel is None:
            self._close()
            return True
        return False


def drop_connection_listed(headers: list[bytes], tokens: bytes) -> list[bytes]:
    """Drop the header lines a Connection header names (RFC 9110 section 7.6.1)."""
    names = {t.strip() for t in tokens.lower().split(b",")} - {b"close", b"keep-alive", b"upgrade", b""}
    if not names:
        return headers
    return [h for h in headers if h.split(b":", 1)[0].strip().lower() not in names]


def _add_own_headers(lines: list[bytes], ex: Exchange, router: Router, upgrade: bool = False) -> None:
    """The response headers that are the router's: this hop's Connection, and the variant's name."""
    if upgrade:
        lines.append(b"Connection: upgrade\r\n")
    elif not ex.keep_alive or router.draining:
        ex.keep_alive = False
        lines.append(b"Connection: close\r\n")
    elif ex.http10:
        lines.append(b"Connection: keep-alive\r\n")
    if router.expose_variant:
        lines.append(ex.variant.header_line)  # type: ignore[union-attr]


def _gateway_error(status: int, ex: Exchange, detail: str) -> bytes:
    name = ex.variant.name if ex.variant is not None else "?"
    reason = "Bad Gateway" if status == 502 else "Gateway Timeout"
    return _error_response(status, reason, f"variant {name} upstream {ex.target}: {detail}")


class UpstreamConnection(asyncio.Protocol):
    """One pooled keep-alive connection to an upstream address."""

    def __init__(self, router: Router, target: Upstream) -> None:
        self.router = router
        self.target = target
        self.transport: asyncio.Transport | None = None
        self.parser = HttpResponseParser(self)
        self.client: ClientConnection | None = None
        self.exchange: Exchange | None = None
        self.closed = False
        self.reading = True
        self.tunnel = False
        self._status = 0
        self._reason = b""
        self._headers: list[bytes] = []
        self._metrics: list[tuple[bytes, bytes]] | None = None
        self._chunked = False
        self._has_length = False
        self._until_eof = False
        self._conn_tokens: bytes | None = None
        self._interim = False
        self._head_only_done = False
        # The fast path (see _fast_response) is used only while httptools
        # sits between two messages; -1: no fast-path body is in progress.
        self._parser_idle = True
        self._fast_left = -1
        self._fast_reusable = True
        # Inside httptools' feed_data a finished response is only noted
        # (_deferred); a response that begins after it in the same read is
        # stray: ignored, and the connection is not reused.
        self._feeding = False
        self._deferred: bool | None = None
        self._stray = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.router.pool_discard(self)
        client, ex = self.client, self.exchange
        self.client = self.exchange = None
        if client is None or ex is None:
            return
        if self.tunnel:
            client._close()
            return
        if self._until_eof and ex.response_started and not ex.finished:
            # The body was delimited by the close itself: the response is whole.
            if self._chunked:
                client.send(b"0\r\n\r\n")
            client.response_complete(ex, self._status, self, reusable=False)
            return
        detail = "closed the connection" if exc is None else f"connection lost ({exc})"
        client.upstream_failed(self, ex, detail)

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None:
            self.close()  # bytes on an idle connection: the upstream is confused
            return
        if self.tunnel:
            client.transport.write(data)  # type: ignore[union-attr]
            return
        ex = self.exchange
        ex.last_activity = client.loop.time()  # type: ignore[union-attr]
        left = self._fast_left
        if left > 0:
            # More of a fast-path body: pass it on as it is.
            n = len(data)
            if n < left:
                self._fast_left = left - n
                client.send(data)
                return
            if n > left:
                # Bytes past the framed body: the upstream is confused, so
                # the connection is not reused.
                data = data[:left]
                self._fast_reusable = False
            self._fast_left = -1
            client.send(data)
            self._complete(reusable=self._fast_reusable)
            return
        if self._parser_idle and self._fast_response(client, ex, data):  # type: ignore[arg-type]
            return
        client.out = []
        self._feeding = True
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as e:
            self._feeding = False
            if self._status == 101 and ex is not None and ex.upgrade:
                self.tunnel = True
                client.start_tunnel(self, data[e.args[0] :])
            else:
                client.upstream_failed(self, ex, "sent an unexpected upgrade")  # type: ignore[arg-type]
            client.flush()
            return
        except HttpParserError as e:
            self._feeding = False
            if self._deferred is not None:
                self._deferred = None  # the response was whole; what followed was junk
                self._complete(reusable=False)
            elif ex is not None:
                client.upstream_failed(self, ex, f"sent a malformed response ({e})")
            client.flush()
            self.close()
            return
        self._feeding = False
        if self._deferred is not None:
            # Completion waits for the end of the read so that bytes after
            # the response can never be taken for the next request's answer.
            reusable = self._deferred and not self._stray
            self._deferred = None
            self._stray = False
            self._complete(reusable)
        if self._head_only_done:
            # A HEAD response has no body whatever its Content-Length says;
            # httptools cannot be told, so it is given a fresh parser.
            self._head_only_done = False
            self.parser = HttpResponseParser(self)
            self._parser_idle = True
            self._complete(reusable=True)
        client.flush()

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.upstream_write_state(True)

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.upstream_write_state(False)

    def _fast_response(self, client: ClientConnection, ex: Exchange, data: bytes) -> bool:
        """Forward a plain Content-Length response without httptools' callbacks.

        Most responses are a whole head and a small body with a
        Content-Length, in one read.  This path checks the head against a
        strict grammar with one regular expression, finds the headers the
        router acts on with one more (by position, on the lower-cased copy,
        whose offsets are the original's), cuts hop-by-hop and metric
        headers out, and writes head and body at once: a handful of C-level
        calls where httptools makes a Python callback per header.  Anything
        else -- chunked, no length, 1xx, Upgrade, HEAD, a head split across
        reads, a doubtful byte -- returns False, having changed nothing, and
        takes the general path, the reference behaviour
        (tests/router/test_response_paths.py holds the two to the same results).
        """
        if ex.is_head or ex.upgrade:
            return False
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = data[: end + 2]
        if _RESPONSE_HEAD.fullmatch(head) is None:
            return False
        status = int(head[9:12])
        if status < 200:
            return False
        length = -1
        reusable = True
        metrics = None
        cut = False
        for name, value in _RESPONSE_SPECIAL.findall(head.lower()):
            if name == b"content-length":
                value = value.rstrip()
                if length >= 0 or not value.isdigit() or len(value) > 18:
                    return False  # several lengths, or a strange one: the general path decides
                length = int(value)
                continue
            if name == b"transfer-encoding" or name == b"upgrade":
                return False
            if name == b"connection":
                if value != b"keep-alive":
                    tokens = {t.strip() for t in value.split(b",")}
                    if not tokens <= _PLAIN_CONNECTION_TOKENS:
                        return False  # names more hop-by-hop headers: the general path drops them
                    if b"close" in tokens:
                        reusable = False
            elif name[0] == 98:  # b"b": bakeoff-metric-<name>
                if metrics is None:
                    metrics = []
                metrics.append((name[_METRIC_PREFIX_LEN:], value))
            cut = True
        if status == 204 or status == 304:
            length = 0
        elif length < 0:
            return False  # the body runs until the upstream closes: the general path
        body_start = end + 4
        available = len(data) - body_start
        if available > length:
            return False
        # Committed to this path from here on.
        router = client.router
        if metrics is not None:
            stats = router.stats.variant(ex.variant.name)  # type: ignore[union-attr]
            for name, value in metrics:
                stats.record_metric(name.decode("latin-1"), value)
        parts = [_RESPONSE_DROP.sub(b"", head) if cut else head]
        _add_own_headers(parts, ex, router)
        parts.append(b"\r\n")
        self._status = status
        ex.response_started = True
        if available == length:
            parts.append(data[body_start:])
            client.send(b"".join(parts))
            self._complete(reusable=reusable)
        else:
            if available:
                parts.append(data[body_start:])
            client.send(b"".join(parts))
            self._fast_left = length - available
            self._fast_reusable = reusable
        return True

    # -- httptools callbacks ---------------------------------------------
    def on_message_begin(self) -> None:
        if self._deferred is not None:
            self._stray = True
            return
        self._parser_idle = False
        self._headers = []
        self._metrics = None
        self._chunked = False
        self._has_length = False
        self._until_eof = False
        self._conn_tokens = None
        self._reason = b""

    def on_status(self, reason: bytes) -> None:
        if not self._stray:
            self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._stray:
            return
        lname = name.lower()
        if lname.startswith(METRIC_PREFIX):
            if self._metrics is None:
                self._metrics = []
            self._metrics.append((lname[_METRIC_PREFIX_LEN:], value))
            return
        if lname in HOP_BY_HOP:
            if lname == b"connection":
                self._conn_tokens = value
            elif lname == b"transfer-encoding":
                self._chunked = True
            elif lname == b"upgrade":
                self._headers.append(b"Upgrade: " + value + b"\r\n")
            return
        if lname == b"content-length":
            self._has_length = True
        self._headers.append(name + b": " + value + b"\r\n")

    def on_headers_complete(self) -> None:
        client, ex = self.client, self.exchange
        if client is None or ex is None or self._stray:
            return
        status = self.parser.get_status_code()
        self._status = status
        headers = self._headers
        if self._conn_tokens is not None:
            headers = self._headers = drop_connection_listed(headers, self._conn_tokens)
        if 100 <= status < 200 and status != 101:
            self._interim = True
            client.response_head(ex, b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, self._reason, b"".join(headers)))
            ex.response_started = False
            return
        if self._metrics is not None:
            stats = client.router.stats.variant(ex.variant.name)  # type: ignore[union-attr]
            for name, value in self._metrics:
                stats.record_metric(name.decode("latin-1"), value)
        no_body = ex.is_head or status in (204, 304) or status == 101
        if not no_body and not self._has_length and not self._chunked:
            self._until_eof = True  # body delimited by the upstream closing
        if status != 101 and not no_body and (self._chunked or self._until_eof):
            if ex.http10:
                ex.keep_alive = False  # HTTP/1.0 has no chunked: delimit by close
                self._chunked = False
            else:
                self._chunked = True
                headers.append(b"Transfer-Encoding: chunked\r\n")
        _add_own_headers(headers, ex, client.router, upgrade=status == 101)
        client.response_head(ex, b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, self._reason, b"".join(headers)))
        if ex.is_head:
            self._head_only_done = True

    def on_body(self, body: bytes) -> None:
        client = self.client
        if client is None or self._head_only_done or self._stray:
            return
        if self._chunked:
            client.send(b"%x\r\n" % len(body))
            client.send(body)
            client.send(b"\r\n")
        else:
            client.send(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._parser_idle = True
        if self._stray:
            return
        if self._head_only_done or self.tunnel or self._status == 101:
            return
        client = self.client
        if client is None:
            return
        if self._chunked:
            client.send(b"0\r\n\r\n")
        self._complete(reusable=self.parser.should_keep_alive())

    # -- life cycle --------------------------------------------------------
    def _complete(self, reusable: bool) -> None:
        if self._feeding:
            self._deferred = reusable
            return
        client, ex = self.client, self.exchange
        self.client = self.exchange = None
        if client is None or ex is None:
            return
        if not self.reading:
            self.set_reading(True)
        client.response_complete(ex, self._status, self, reusable and not self.closed)

    def bind(self, client: ClientConnection, ex: Exchange) -> None:
        self.client = client
        self.exchange = ex

    def set_reading(self, on: bool) -> None:
        if on == self.reading or self.transport is None or self.closed:
            return
        self.reading = on
        if on:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()

    def close(self) -> None:
        self.client = self.exchange = None
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()
        self.router.pool_discard(self)
