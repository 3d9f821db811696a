"""The downstream side of the proxy: one client connection, its requests in order.

This is where a request is routed.  ``ClientConnection`` is one client
connection: httptools parses its requests (or a fast path takes the common
whole request), the routing table picks a variant, and the request streams
to a pooled keep-alive ``UpstreamConnection`` (bakeoff.router.upstream),
whose response streams back.  Back-pressure both ways goes through one
``FlowControl`` (bakeoff.router.flow_control), so no body is ever held whole
in memory.

Pipelined requests queue behind the one in flight (reading pauses while any
are queued) and are answered in order.  A request carrying ``Upgrade`` whose
upstream answers 101 turns both connections into a raw tunnel.

Every failure ends in a short response or a closed connection, never in an
exception escaping to the event loop: a malformed request gets 400, an
oversized head 431, an unreachable upstream 502, a silent one 504.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from typing import TYPE_CHECKING

import structlog
from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from bakeoff.contracts.snapshot import ABORTED, CONNECT_ERROR, TIMEOUT, UPGRADED
from bakeoff.router.flow_control import FlowControl
from bakeoff.router.headscan import (
    COLON_MASK,
    COMPILED,
    CONNECTION,
    CONTENT_LENGTH,
    HOP,
    HOST,
    NOT_FAST,
    OTHER,
    OVERRIDE,
    REQUEST_ID,
    STICKY,
    TRACEPARENT,
    XFF,
    XFP,
    content_length,
    request_head,
    skip_ows,
    trim_ows,
)
from bakeoff.router.http11 import (
    BAD_FRAMING,
    BAD_HOST,
    BAD_REQUEST,
    HEAD_TOO_LARGE,
    HOP_BY_HOP,
    LINGER_SECONDS,
    METHOD_NOT_ALLOWED,
    NO_VARIANT,
    REQUEST_TIMEOUT,
    HeadTooLarge,
    Rejected,
    drop_connection_listed,
    error_response,
    origin_form,
    request_head_by_regex,
    request_id_line,
    request_transfer_codings,
)
from bakeoff.router.stickiness.header import HeaderKey
from bakeoff.router.upstream import UpstreamConnection

if TYPE_CHECKING:
    from bakeoff.router.routing import RequestRoutes, RouteTable, Upstream, Variant
    from bakeoff.router.server import Router
    from bakeoff.router.stats import RouterStats
    from bakeoff.router.stickiness import StickyKeySource
    from bakeoff.router.tracing import Tracer
    from bakeoff.router.upstream import UpstreamPool

# Bytes of request body held while no upstream connection is ready yet.
_MAX_PENDING_BODY = 256 * 1024
_perf = time.perf_counter
_H2_PAUSE = "Pause on PRI/Upgrade"  # httptools' error at HTTP/2's connection preface
log = structlog.get_logger("bakeoff.router")


class RouterSettings:
    """The Router's settings that every request reads, in one compiled object.

    ``Router`` (server.py, interpreted) keeps these as properties that read
    and write this object, and every connection holds it: the hot path then
    reads a field of a native class (a struct access when compiled) instead
    of an attribute of an interpreted object (a dictionary look-up each,
    about 5,000 instructions per request in all, callgrind).
    """

    __slots__ = (
        "routes", "request_routes", "tracer", "sticky", "sticky_header", "override_header",
        "override_enabled", "max_header_bytes", "draining", "expose_variant",
        "pool", "stats",
    )  # fmt: skip

    routes: RouteTable
    pool: UpstreamPool
    stats: RouterStats

    def __init__(self) -> None:
        # routes, pool and stats are set by the Router before it serves.
        self.request_routes: RequestRoutes | None = None
        self.tracer: Tracer | None = None
        self.sticky: StickyKeySource | None = None
        self.sticky_header: bytes | None = None
        self.override_header = b""
        self.override_enabled = False
        self.max_header_bytes = 0
        self.draining = False
        self.expose_variant = False


class Exchange:
    """One request and its response, from the head being read to the last byte."""

    __slots__ = (
        "head", "pending", "pending_bytes", "body_done", "chunked", "keep_alive", "is_head",
        "upgrade", "variant", "target", "started", "upstream", "response_started",
        "last_activity", "http10", "reused", "sent_body", "finished", "route", "span",
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
        self.route = -1  # index into Router.request_routes.names; -1: no routes configured
        self.span: object = None  # a sampled request's span (bakeoff.router.tracing), ended in _finish


class ClientConnection(asyncio.Protocol):
    """One downstream connection."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.settings: RouterSettings = router.settings  # the hot path's reads of the Router's settings
        self.loop = router.loop
        self.parser = HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.exchanges: deque[Exchange] = deque()  # [in flight, queued...]
        self.parsing: Exchange | None = None
        self.peer = b""
        self._xff_line = b""  # "X-Forwarded-For: <peer>", the same for every request of the connection
        self._xfp_line = b"X-Forwarded-Proto: http\r\n"  # https under TLS (connection_made)
        self.flow: FlowControl = None  # type: ignore[assignment]  # set in connection_made
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
        self._content_length = b""
        self._hosts = 0
        self._traceparent: bytes | None = None
        # Set when a request's Upgrade offer was not passed on: b"" if it has
        # no body, else the framing header of the body still to come.
        self._upgrade_dropped: bytes | None = None
        self._resuming = False  # parsing the primer head of _resume_after_dropped_upgrade

    # -- asyncio.Protocol ------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.flow = FlowControl(transport)  # type: ignore[arg-type]
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0] if isinstance(peer, tuple) else "unix").encode()
        if transport.get_extra_info("ssl_object") is not None:
            self._xfp_line = b"X-Forwarded-Proto: https\r\n"
        self._xff_line = b"X-Forwarded-For: " + self.peer + b"\r\n"
        self.router.clients.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.router.clients.discard(self)
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None
        finish = self.router.finish_on_client_abort
        while self.exchanges:
            ex = self.exchanges.popleft()
            if ex.started and not ex.finished:
                self._finish(ex, outcome=ABORTED)
                if finish and ex.upstream is not None and ex.body_done and not ex.upgrade:
                    # onClientAbort: finish -- the upstream completes the
                    # request; its response is read and dropped (send() skips
                    # a closed client) and response_complete pools the connection.
                    self._let_upstream_finish(ex)
                    continue
            if ex.upstream is not None:
                ex.upstream.close()
                ex.upstream = None
        self.parsing = None

    def _let_upstream_finish(self, ex: Exchange) -> None:
        self.flow.client_write_full(False)  # nobody to hold the upstream back for
        self.loop.call_later(self.router.read_timeout, self._abandoned_read_timeout, ex)

    def _abandoned_read_timeout(self, ex: Exchange) -> None:
        """The read timeout for an upstream finishing a request whose client left (sweep no longer sees it)."""
        up = ex.upstream
        if up is None or up.exchange is not ex:
            return
        idle = self.loop.time() - ex.last_activity
        if idle >= self.router.read_timeout:
            ex.upstream = None
            up.close()
        else:
            self.loop.call_later(self.router.read_timeout - idle, self._abandoned_read_timeout, ex)

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
            if self._upgrade_dropped is not None:
                self._resume_after_dropped_upgrade(rest)
            else:
                self.tunnel_pending = [rest] if rest else []
        except HttpParserError as e:
            cause = e.__context__
            if isinstance(cause, HeadTooLarge):
                self._fail_connection(HEAD_TOO_LARGE)
            elif isinstance(cause, Rejected):
                self._fail_connection(cause.response)
            elif e.args and e.args[0] == _H2_PAUSE and self._to_http2(data):
                return
            else:
                self._fail_connection(BAD_REQUEST)

    def _to_http2(self, data: bytes) -> bool:
        """The connection opened with HTTP/2's preface: hand it to bakeoff.router.h2_downstream.

        Only reached on httptools' error path (it stops at the preface's
        ``PRI * HTTP/2.0`` line), so HTTP/1.1 requests pay nothing for it.
        """
        at = data.find(b"PRI * HTTP/2.0\r\n\r\n")
        if at < 0 or len(self.exchanges) > 1 or self.transport is None:
            return False
        from bakeoff.router.h2_downstream import hand_over

        self.exchanges.clear()
        self.parsing = None
        self.closed = True  # this object is done with the transport; the HTTP/2 protocol owns it
        self.router.clients.discard(self)
        hand_over(self.router, self.transport, data[at:])
        return True

    def _resume_after_dropped_upgrade(self, rest: bytes) -> None:
        """Go on parsing a request whose Upgrade offer was dropped as an ordinary one.

        httptools ends any request offering Upgrade at its head and hands back
        the bytes after it.  With the offer dropped those bytes are the body
        (then perhaps more requests): a fresh parser is primed with a head of
        the same framing, its callbacks ignored, and fed the rest.
        """
        framing = self._upgrade_dropped
        self._upgrade_dropped = None
        self.parser = HttpRequestParser(self)
        if framing:
            self._resuming = True
            self.parser.feed_data(b"PUT / HTTP/1.1\r\n" + framing + b"\r\n")
        if rest:
            self.data_received(rest)

    def eof_received(self) -> bool | None:
        # A client that half-closes after its last request still gets its
        # responses; one that half-closes in the middle of a request has
        # abandoned it (connection_lost then counts it aborted).
        self.eof = True
        if self.parsing is not None:
            return False
        if not self.exchanges:
            return False
        if self.tunnel is None and self.tunnel_pending is None:
            self._watch_delivery()
        return True

    # -- a client's FIN with a response outstanding ----------------------
    def _watch_delivery(self) -> None:
        """Tell a client that really half-closed (and still reads) from one that left.

        Both send the same FIN.  The one that left (curl --max-time, a
        cancelled fetch: its socket is closed) answers the next bytes it is
        sent with a reset; the one that half-closed reads them.  So, unless
        response bytes are already flowing, a 100 (Continue) is sent at once
        -- an interim response every HTTP/1.1 client must accept and skip
        (RFC 9110 section 15.2), never sent to HTTP/1.0 (the same section) --
        and the socket's TCP state is watched: a reset moves it to CLOSE, and
        the client is then gone (_client_gone).  Without a probe (HTTP/1.0,
        an upgrade, a response already started) the response's own bytes are
        the probe.
        """
        ex = self.exchanges[0]
        if not ex.response_started and not ex.finished and not ex.http10 and not ex.upgrade and ex.head:
            self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.loop.call_soon(self._check_delivery, 0.005)

    def _check_delivery(self, delay: float) -> None:
        if self.closed or not self.exchanges:
            return
        if _peer_reset(self.transport):
            self._client_gone()
            return
        self.loop.call_later(delay, self._check_delivery, min(delay * 2, 0.5))

    def _client_gone(self) -> None:
        """The client closed its socket with a response still owed: count it aborted, cancel the upstream."""
        ex = self.exchanges[0]
        log.info(
            "client closed the connection before its response was complete",
            variant=ex.variant.name if ex.variant is not None else None,
            upstream=str(ex.target),
            client=self.peer.decode("latin-1"),
            outcome="aborted",
            upstream_request="finishes" if self.router.finish_on_client_abort else "cancelled",
        )
        self.closed = True
        self.transport.abort()  # type: ignore[union-attr]  # connection_lost counts and cancels

    def pause_writing(self) -> None:
        self.flow.client_write_full(True)

    def resume_writing(self) -> None:
        self.flow.client_write_full(False)

    def _fast_request(self, data: bytes) -> bool:
        """Route a plain request that arrived whole, without httptools' callbacks.

        The common request -- one read holding a head and, if any, its
        whole Content-Length body, on an otherwise idle connection -- is
        checked against a strict grammar, and its field lines found, in one
        pass (``headscan.request_head``, which also tells the headers the
        router acts on, by a code per line); those are cut out by position.
        Anything else (HTTP/1.0, chunked, Upgrade, a split head, pipelining,
        a doubtful byte) returns False and takes httptools' path, the
        reference behaviour; tests/router/test_request_paths.py holds the
        two to the same results.
        """
        settings = self.settings
        sticky = settings.sticky_header or b""
        override_name = settings.override_header
        # One byte loop when compiled, the regular expressions when not (the
        # faster of the two for each build; see upstream._fast_response).
        spans = (
            request_head(data, sticky, override_name)
            if COMPILED
            else request_head_by_regex(data, sticky, override_name)
        )
        if spans is None:
            return False
        end = spans[0]  # the head's length: its blank line follows
        if end > settings.max_header_bytes:
            return False
        keep_alive = True
        length = -1
        key = override = xff = None
        has_xfp = has_rid = False
        hosts = 0
        traceparent: bytes | None = None
        cuts: list[tuple[int, int]] | None = None
        tracing = settings.tracer is not None
        pos = spans[2]
        k = 3
        n = len(spans)
        while k < n:
            # headscan.line: the code of the name, from the same pass (the order
            # of the tests, and so which one a configured header name shadows, is
            # the same as on the general path, on_header), the colon, the end.
            x = spans[k]
            k += 1
            code = x & 255
            if code == OTHER:
                pos = x >> 34
                continue
            start = pos
            colon = x >> 8 & COLON_MASK
            pos = x >> 34
            drop = False
            if code == CONTENT_LENGTH:
                length_value = content_length(data, colon + 1, pos - 2)
                if length >= 0 or length_value < 0:
                    return False
                length = length_value
            elif code == CONNECTION:
                tokens = {t.strip() for t in data[colon + 1 : pos - 2].lower().split(b",")}
                if not tokens <= {b"keep-alive", b"close", b""}:
                    return False
                if b"close" in tokens:
                    keep_alive = False
                drop = True
            elif code == NOT_FAST:  # transfer-encoding, upgrade
                return False
            elif code == STICKY:
                if key is None:  # several lines: the first that holds a key (see on_header)
                    a = skip_ows(data, colon + 1, pos - 2)  # lstrip(b" \t"), no method call
                    if type(settings.sticky) is HeaderKey:
                        # HeaderKey.key_from (the value stripped, or None) by a byte loop, not an interpreted call.
                        b = trim_ows(data, a, pos - 2)
                        key = data[a:b] if b > a else None
                    else:
                        key = settings.sticky.key_from(data[a : pos - 2])  # type: ignore[union-attr]
            elif code == OVERRIDE:
                override = data[colon + 1 : pos].strip()
                drop = True
            elif code == XFF:
                value = data[colon + 1 : pos - 2].strip(b" \t")
                xff = value if xff is None else xff + b", " + value
                drop = True
            elif code == XFP:
                has_xfp = True
            elif code == REQUEST_ID:
                has_rid = True
            elif code == HOST:
                hosts += 1
            elif code == HOP:  # keep-alive, proxy-connection, te, trailer: this hop's only
                drop = True
            elif tracing and code == TRACEPARENT:
                value = data[skip_ows(data, colon + 1, pos - 2) : pos - 2]
                traceparent = value if traceparent is None else b"several"
                drop = True
            if drop:
                if cuts is None:
                    cuts = []
                cuts.append((start, pos))
        body_len = len(data) - end - 2
        if hosts != 1:
            return False  # the general path answers it
        if body_len != (length if length > 0 else 0):
            return False  # a body still to come, or a pipelined request behind it
        # The head to send is assembled with one join: the kept spans of the
        # client's head, then the router's own lines, then the blank line.
        parts = []
        if cuts is not None:
            pos = 0
            for a, b in cuts:
                parts.append(data[pos:a])
                pos = b
            parts.append(data[pos:end])
        else:
            parts.append(data[:end])
        if xff is not None:
            parts.append(b"X-Forwarded-For: " + xff + b", " + self.peer + b"\r\n")
        else:
            parts.append(self._xff_line)
        if not has_xfp:
            parts.append(self._xfp_line)
        if not has_rid:
            parts.append(request_id_line())
        ex = Exchange()
        if settings.tracer is not None:
            parts.append(settings.tracer.begin(ex, traceparent, data[: spans[1]]))
        parts.append(b"\r\n")
        ex.started = _perf()
        ex.last_activity = self.last_active
        ex.is_head = spans[1] == 4 and data[0] == 72  # HEAD, the one four-letter method starting with H
        ex.keep_alive = keep_alive and not settings.draining
        ex.head = b"".join(parts)
        ex.body_done = True
        if body_len:
            ex.pending = [data[end + 2 :]]
            ex.pending_bytes = body_len
        ex.variant = settings.routes.choose(key, override if settings.override_enabled else None)
        if settings.request_routes is not None:
            ex.route = settings.request_routes.index(data[spans[1] + 1 : spans[2] - 11])  # the target
        self.exchanges.append(ex)
        self._start(ex, fresh=True)
        return True

    # -- httptools callbacks ---------------------------------------------
    def on_message_begin(self) -> None:
        self._parser_idle = False
        if self._resuming:
            return
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
        self._content_length = b""
        self._hosts = 0
        self._traceparent = None
        ex = Exchange()
        ex.started = _perf()
        ex.last_activity = self.loop.time()
        self.parsing = ex
        self.exchanges.append(ex)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > self.settings.max_header_bytes:
            raise HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.settings.max_header_bytes:
            raise HeadTooLarge
        lname = name.lower()
        if lname in HOP_BY_HOP:
            if lname == b"connection":
                self._conn_tokens = value.lower()
            elif lname == b"upgrade":
                self._upgrade_value = value
            elif lname == b"transfer-encoding":
                self._te = value if self._te is None else self._te + b", " + value
            return
        settings = self.settings
        if lname == settings.sticky_header:
            # Several Cookie lines are one list (an HTTP/2 hop splits a
            # Cookie and its gateway joins the lines with "; ", RFC 9113
            # section 8.2.3), so the key is the first found on any line; a
            # later line never replaces it.  Likewise a repeated sticky header.
            if self._key is None:
                self._key = settings.sticky.key_from(value)  # type: ignore[union-attr]
        elif lname == settings.override_header:
            self._override = value.strip()
            return
        elif lname == b"x-forwarded-for":
            # Several X-Forwarded-For lines are one list (RFC 9110 section 5.3).
            self._xff = value if self._xff is None else self._xff + b", " + value
            return
        elif lname == b"content-length":
            self._content_length = value
        elif lname == b"host":
            self._hosts += 1
        elif lname == b"x-request-id":
            self._has_rid = True
        elif lname == b"x-forwarded-proto":
            self._has_xfp = True
        elif lname == b"traceparent" and settings.tracer is not None:
            # Several traceparent lines make it invalid (a new trace starts); the router sends its own.
            self._traceparent = value if self._traceparent is None else b"several"
            return
        self._headers.append(name + b": " + value + b"\r\n")

    def on_headers_complete(self) -> None:
        if self._resuming:
            self._resuming = False
            return
        ex = self.parsing
        assert ex is not None
        parser = self.parser
        settings = self.settings
        method = parser.get_method()
        if method == b"CONNECT":
            raise Rejected(METHOD_NOT_ALLOWED)  # a tunnel to anywhere is not a variant's request
        ex.http10 = parser.get_http_version() == "1.0"
        # Framing is checked whole here, before the head can go upstream
        # (RFC 9112 section 6.1 and 6.3); a 400 later would be too late.
        te = None
        if self._te is not None:
            te = request_transfer_codings(self._te)
            if te is None or self._content_length or ex.http10:
                raise Rejected(BAD_FRAMING)
        url = self._url
        headers = self._headers
        absolute = origin_form(url)
        if absolute is not None:
            url, authority = absolute
            headers = [h for h in headers if h[:5].lower() != b"host:"]
            headers.insert(0, b"Host: " + authority + b"\r\n")
        elif self._hosts != 1:
            if self._hosts or not ex.http10:
                raise Rejected(BAD_HOST)
            # HTTP/1.0 had no Host; the request goes on as HTTP/1.1, which must
            # carry one, empty when there is no authority (RFC 9112 section 3.2).
            headers.insert(0, b"Host: \r\n")
        ex.is_head = method == b"HEAD"
        ex.keep_alive = parser.should_keep_alive() and not settings.draining
        if self._conn_tokens is not None:
            headers = drop_connection_listed(headers, self._conn_tokens)
        if self._upgrade_value is not None and parser.should_upgrade():
            has_body = te is not None or self._content_length.strip(b" \t") not in (b"", b"0")
            if has_body or b"h2c" in self._upgrade_value.lower():
                # Passed on as an ordinary request, as nginx does: a body sent
                # before the 101 would otherwise wait for a switch that may
                # never come, and an h2c connection would be one request to the
                # statistics however many it carries.
                if te is not None:
                    self._upgrade_dropped = b"Transfer-Encoding: chunked\r\n"
                elif has_body:
                    self._upgrade_dropped = b"Content-Length: " + self._content_length.strip(b" \t") + b"\r\n"
                else:
                    self._upgrade_dropped = b""
            else:
                ex.upgrade = True
                headers.append(b"Connection: upgrade\r\nUpgrade: " + self._upgrade_value + b"\r\n")
        if self._xff is not None:
            headers.append(b"X-Forwarded-For: " + self._xff + b", " + self.peer + b"\r\n")
        else:
            headers.append(self._xff_line)
        if not self._has_xfp:
            headers.append(self._xfp_line)
        if not self._has_rid:
            headers.append(request_id_line())
        if settings.tracer is not None:
            headers.append(settings.tracer.begin(ex, self._traceparent, method))
        if te is not None:
            ex.chunked = True
            headers.append(b"Transfer-Encoding: " + te + b"\r\n")
        ex.head = b"".join((method, b" ", url, b" HTTP/1.1\r\n", *headers, b"\r\n"))

        ex.variant = settings.routes.choose(self._key, self._override if settings.override_enabled else None)
        if settings.request_routes is not None:
            ex.route = settings.request_routes.index(url)
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
        if self._upgrade_dropped:
            return  # httptools' end of an upgrade request at its head: the body follows
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
    def _start(self, ex: Exchange, fresh: bool = False) -> None:
        """Send an exchange's request: to a pooled connection now, or after a connect.

        ``fresh``: the request was read in this very callback, so its
        last_activity (the time of that read) is still now.
        """
        variant = ex.variant
        if variant is None:
            self._answer_error(ex, NO_VARIANT, None)
            return
        if not fresh:
            ex.last_activity = self.loop.time()
        target = variant.next_upstream()
        ex.target = target
        conn = self.settings.pool.get(target)
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
            self.settings.pool.put(conn)  # the client went away while we connected
            return
        self._attach(ex, conn)

    def _attach(self, ex: Exchange, conn: UpstreamConnection) -> None:
        ex.upstream = conn
        conn.bind(self, ex)
        transport = conn.transport
        assert transport is not None  # connection_made ran: the connection is open
        if ex.pending:
            transport.writelines([ex.head, *ex.pending])
            ex.sent_body = True
            ex.pending = None
            ex.pending_bytes = 0
        else:
            transport.write(ex.head)
        self.flow.attach(transport)
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
            if now - ex.last_activity > router.head_timeout:
                # A head this slow is a dead client or an attack; it is told
                # why (as nginx's client_header_timeout does) before the close.
                self._fail_connection(REQUEST_TIMEOUT)
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
        self.flow.read_client_regardless()
        self.loop.call_later(LINGER_SECONDS, self._close)

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
                    log.warning(
                        "request body malformed after its head went upstream; upstream connection closed",
                        variant=ex.variant.name if ex.variant is not None else None,
                        upstream=str(ex.target),
                        client=self.peer.decode("latin-1"),
                        outcome="aborted",
                    )
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
        if ex.span is not None:
            self.settings.tracer.end(ex, status, outcome)  # type: ignore[union-attr]
        self.settings.stats.variant(variant.name).record(ex.route, status, outcome, _perf() - ex.started)

    # -- called by UpstreamConnection -------------------------------------
    def response_head(self, ex: Exchange, head: bytes) -> None:
        ex.response_started = True
        self.send(head)

    def response_complete(self, ex: Exchange, status: int, conn: UpstreamConnection, reusable: bool) -> None:
        if not ex.finished:  # else counted already: the client left (onClientAbort: finish)
            self._finish(ex, status)
        ex.upstream = None
        self.flow.detach()
        if reusable and ex.body_done:
            self.settings.pool.put(conn)
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
        elif self.settings.draining:
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
            self._finish(self.exchanges[0], outcome=UPGRADED)  # its latency is the time to the switch
        pending = self.tunnel_pending or []
        self.tunnel_pending = None
        if rest:
            self.send(rest)
        for chunk in pending:
            conn.transport.write(chunk)  # type: ignore[union-attr]
        self.flow.hold_client(False)

    # -- flow control ----------------------------------------------------
    def _update_reading(self) -> None:
        """Hold reading requests while others queue, an error waits, or parked body is too large."""
        if self.closed or self.tunnel is not None:
            return
        ex = self.exchanges[0] if self.exchanges else None
        self.flow.hold_client(
            len(self.exchanges) > 1
            or self.final_error is not None
            or (ex is not None and ex.pending_bytes > _MAX_PENDING_BODY)
        )

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


_TCP_CLOSE = 7  # tcp_info.tcpi_state of a socket that has been reset (include/net/tcp_states.h)


def _peer_reset(transport: asyncio.Transport | None) -> bool:
    """Whether the peer answered with a reset: the socket's TCP state is CLOSE (Linux TCP_INFO)."""
    if transport is None:
        return False
    sock = transport.get_extra_info("socket")
    tcp_info = getattr(socket, "TCP_INFO", None)
    if sock is None or tcp_info is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, tcp_info, 8)[0] == _TCP_CLOSE
    except OSError:
        return False


def _gateway_error(status: int, ex: Exchange, detail: str) -> bytes:
    name = ex.variant.name if ex.variant is not None else "?"
    reason = "Bad Gateway" if status == 502 else "Gateway Timeout"
    return error_response(status, reason, f"variant {name} upstream {ex.target}: {detail}")
