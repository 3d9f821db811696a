"""The upstream side of the proxy: one pooled keep-alive connection per exchange.

``UpstreamConnection`` parses a variant's responses (httptools, or a fast
path for the common plain response) and streams them to the client
connection bound to it; ``UpstreamPool`` keeps idle connections per upstream
address for reuse.  Back-pressure goes through the client's
``FlowControl``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from bakeoff.router.headscan import (
    COLON_MASK,
    COMPILED,
    CONNECTION,
    CONTENT_LENGTH,
    METRIC,
    NOT_FAST,
    OTHER,
    content_length,
    is_keep_alive,
    response_head,
    skip_ows,
)
from bakeoff.router.http11 import (
    HOP_BY_HOP,
    METRIC_PREFIX,
    METRIC_PREFIX_LEN,
    PLAIN_CONNECTION_TOKENS,
    drop_connection_listed,
    response_head_by_regex,
)

if TYPE_CHECKING:
    from bakeoff.router.downstream import ClientConnection, Exchange, RouterSettings
    from bakeoff.router.routing import Upstream
    from bakeoff.router.server import Router


def add_own_headers(lines: list[bytes], ex: Exchange, settings: RouterSettings, upgrade: bool = False) -> None:
    """The response headers that are the router's: this hop's Connection, and the variant's name."""
    if upgrade:
        lines.append(b"Connection: upgrade\r\n")
    elif not ex.keep_alive or settings.draining:
        ex.keep_alive = False
        lines.append(b"Connection: close\r\n")
    elif ex.http10:
        lines.append(b"Connection: keep-alive\r\n")
    if settings.expose_variant:
        lines.append(ex.variant.header_line)  # type: ignore[union-attr]


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
        self.router.pool.discard(self)
        client, ex = self.client, self.exchange
        self.client = self.exchange = None
        if client is None or ex is None:
            return
        if self.tunnel:
            client._close()
            return
        if self._until_eof and ex.response_started and not ex.finished and exc is None:
            # The body was delimited by the close itself: the response is
            # whole.  Only an orderly close (FIN) ends such a body; a reset
            # (exc set) is a failure, and the client must see an incomplete
            # response: no terminal chunk, its connection closed (as nginx
            # does), counted against the variant by upstream_failed.
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
            self.client.flow.upstream_write_full(True)

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.flow.upstream_write_full(False)

    def _fast_response(self, client: ClientConnection, ex: Exchange, data: bytes) -> bool:
        """Forward a plain Content-Length response without httptools' callbacks.

        Most responses are a whole head and a small body with a
        Content-Length, in one read.  This path checks the head against a
        strict grammar and finds its field lines in one pass
        (``headscan.response_head``, which also tells the names the router
        acts on, by a code per line), cuts
        hop-by-hop and metric headers out, and writes head and body at once:
        a handful of C-level calls where httptools makes a Python callback
        per header.  Anything
        else -- chunked, no length, 1xx, Upgrade, HEAD, a head split across
        reads, a doubtful byte -- returns False, having changed nothing, and
        takes the general path, the reference behaviour
        (tests/router/test_response_paths.py holds the two to the same results).
        """
        if ex.is_head or ex.upgrade:
            return False
        # Compiled, one loop over the head's bytes finds its end, checks the
        # grammar, finds the field lines and tells the names the router acts
        # on (about a third of the regular expressions' instructions, and no
        # object per line); interpreted, that loop is slower than the regular
        # expressions, so the pure-Python build keeps those.  Both give the
        # same answer (tests/router/test_headscan.py).
        spans = response_head(data) if COMPILED else response_head_by_regex(data)
        if spans is None:
            return False
        status = data[9] * 100 + data[10] * 10 + data[11] - 5328  # the three digits; 5328 is "000"
        if status < 200:
            return False
        end = spans[0]  # the head's length: its blank line follows
        length = -1
        reusable = True
        metrics = None
        # Spans of the lines to cut out (hop-by-hop and metric headers), found
        # in the same pass that reads them: the head is copied once, by the join.
        cuts: list[tuple[int, int]] | None = None
        pos = spans[1]
        k = 2
        n = len(spans)
        while k < n:
            x = spans[k]  # headscan.line: the name's code, the colon, the end
            k += 1
            code = x & 255
            if code == OTHER:
                pos = x >> 34
                continue
            start = pos
            colon = x >> 8 & COLON_MASK
            pos = x >> 34
            if code == METRIC:
                if metrics is None:
                    metrics = []
                # The name as sent (after the prefix): VariantStats finds its metric by these bytes.
                metrics.append(
                    (data[start + METRIC_PREFIX_LEN : colon], data[skip_ows(data, colon + 1, pos) : pos - 2])
                )
            elif code == CONTENT_LENGTH:
                length_value = content_length(data, colon + 1, pos - 2)
                if length >= 0 or length_value < 0:
                    return False  # several lengths, or a strange one: the general path decides
                length = length_value
                continue
            elif code == NOT_FAST:  # transfer-encoding, upgrade
                return False
            elif code == CONNECTION:
                if not is_keep_alive(data, colon + 1, pos - 2):
                    value_bytes = data[colon + 1 : pos - 2].lower()
                    tokens = {t.strip() for t in value_bytes.split(b",")}
                    if not tokens <= PLAIN_CONNECTION_TOKENS:
                        return False  # names more hop-by-hop headers: the general path drops them
                    if b"close" in tokens:
                        reusable = False
            if cuts is None:
                cuts = []
            cuts.append((start, pos))
        if status == 204 or status == 304:
            length = 0
        elif length < 0:
            return False  # the body runs until the upstream closes: the general path
        body_start = end + 2
        available = len(data) - body_start
        if available > length:
            return False
        # Committed to this path from here on.
        if metrics is not None:
            stats = client.settings.stats.variant(ex.variant.name)  # type: ignore[union-attr]
            for name, value in metrics:
                stats.record_wire_metric(name, value)
        if cuts is None:
            parts = [data[:end]]
        else:
            parts = []
            pos = 0
            for a, b in cuts:
                parts.append(data[pos:a])
                pos = b
            parts.append(data[pos:end])
        add_own_headers(parts, ex, client.settings)
        parts.append(b"\r\n")
        self._status = status
        ex.response_started = True
        if available:
            parts.append(data[body_start:])
        client.send(b"".join(parts))
        if available == length:
            self._complete(reusable=reusable)
        else:
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
            self._metrics.append((lname[METRIC_PREFIX_LEN:], value))
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
            stats = client.settings.stats.variant(ex.variant.name)  # type: ignore[union-attr]
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
        add_own_headers(headers, ex, client.settings, upgrade=status == 101)
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
        client.response_complete(ex, self._status, self, reusable and not self.closed)

    def bind(self, client: ClientConnection, ex: Exchange) -> None:
        self.client = client
        self.exchange = ex

    def close(self) -> None:
        self.client = self.exchange = None
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()
        self.router.pool.discard(self)


class UpstreamPool:
    """Idle keep-alive connections per upstream address, newest reused first."""

    def __init__(self, max_idle: int) -> None:
        self.max_idle = max_idle
        self.draining = False
        self._idle: dict[Upstream, list[UpstreamConnection]] = {}

    def get(self, target: Upstream) -> UpstreamConnection | None:
        idle = self._idle.get(target)
        while idle:
            conn = idle.pop()
            if not conn.closed and not conn.transport.is_closing():  # type: ignore[union-attr]
                return conn
        return None

    def put(self, conn: UpstreamConnection) -> None:
        if conn.closed:
            return
        idle = self._idle.get(conn.target)
        if idle is None:
            idle = self._idle[conn.target] = []
        if self.draining or len(idle) >= self.max_idle:
            conn.close()
            return
        conn.client = conn.exchange = None
        idle.append(conn)

    def discard(self, conn: UpstreamConnection) -> None:
        idle = self._idle.get(conn.target)
        if idle:
            try:
                idle.remove(conn)
            except ValueError:
                pass

    def close_all(self) -> None:
        for idle in list(self._idle.values()):
            for conn in list(idle):
                conn.close()
        self._idle.clear()
