"""The router against a reference parser (h11), over the same byte streams.

Each stream -- valid requests and seeded mutations of them, the fuzz test's
kind of input -- is parsed by h11 as a server would, and sent to a real
router in front of an upstream that itself parses with h11.  The two must
agree on accepting or rejecting the request, and on the method, target,
end-to-end headers and body the upstream application sees.

Where the router deliberately differs from h11, the difference is a named
category below, checked for exactly that reason; everything else must match.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
from pathlib import Path

import h11

from bakeoff.router.http11 import origin_form, request_transfer_codings
from tests.router.conftest import mutate

BASES = [
    b"GET /a?b=c HTTP/1.1\r\nHost: h\r\nX-User-Id: u1\r\nAccept: */*\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    b"PUT /u HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nX-A: 1\r\nX-A: 2\r\n\r\n",
    b"DELETE /d HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Hop\r\nX-Hop: x\r\nX-Keep: y\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: h\r\n\r\n",
    b"PATCH /t HTTP/1.1\r\nHost: h\r\nX-Tab:\ta b\t\r\nContent-Length: 3\r\n\r\nabc",
    b"GET http://shop.example:81/x?y=1 HTTP/1.1\r\nHost: other\r\n\r\n",
    b"POST /g HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"GET /nohost HTTP/1.1\r\nAccept: */*\r\n\r\n",
    b"GET /twohosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
    b"POST /te HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n",
]
STREAMS = 600
# Not end-to-end: the router replaces or adds these (each is tested on its own elsewhere).
HOP = {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade", b"transfer-encoding"}
ROUTER_OWN = {b"x-forwarded-for", b"x-forwarded-proto", b"x-request-id", b"content-length"}
# llhttp's (the router's parser's) method table; h11 takes any token as a method.
LLHTTP_METHODS = {
    b"DELETE", b"GET", b"HEAD", b"POST", b"PUT", b"CONNECT", b"OPTIONS", b"TRACE", b"COPY", b"LOCK", b"MKCOL",
    b"MOVE", b"PROPFIND", b"PROPPATCH", b"SEARCH", b"UNLOCK", b"BIND", b"REBIND", b"UNBIND", b"ACL", b"REPORT",
    b"MKACTIVITY", b"CHECKOUT", b"MERGE", b"M-SEARCH", b"NOTIFY", b"SUBSCRIBE", b"UNSUBSCRIBE", b"PATCH", b"PURGE",
    b"MKCALENDAR", b"LINK", b"UNLINK", b"SOURCE", b"QUERY",
}  # fmt: skip


def reference(stream: bytes) -> dict | None:
    """h11's reading of the first request in a stream; None if it needs more bytes."""
    if not stream:
        return None  # h11 would read b"" as the end of the connection
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(stream)
    out: dict = {"body": b""}
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                return None
            if event is h11.PAUSED:
                return out | {"verdict": "accept"} if "method" in out else None
            if isinstance(event, h11.Request):
                out["method"] = bytes(event.method)
                out["target"] = bytes(event.target)
                out["headers"] = [(bytes(n), bytes(v)) for n, v in event.headers.raw_items()]
                out["version"] = bytes(event.http_version)
            elif isinstance(event, h11.Data):
                out["body"] += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return out | {"verdict": "accept"}
    except h11.RemoteProtocolError as e:
        return {"verdict": "reject", "why": str(e), **out}


def end_to_end(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    listed: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            listed |= {t.strip().lower() for t in value.split(b",")}
    return [
        (n.lower(), v.strip(b" \t"))
        for n, v in headers
        if n.lower() not in HOP and n.lower() not in ROUTER_OWN and n.lower() not in listed
    ]


class H11Upstream:
    """An upstream server that parses with h11 and records what it received."""

    def __init__(self) -> None:
        self.seen: list[dict] = []
        self.errors: list[str] = []
        self.port = 0

    async def start(self) -> H11Upstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        current: dict = {}
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    conn.receive_data(data)
                    if not data:
                        return
                    continue
                if isinstance(event, h11.Request):
                    current = {
                        "method": bytes(event.method),
                        "target": bytes(event.target),
                        "headers": [(bytes(n), bytes(v)) for n, v in event.headers.raw_items()],
                        "body": b"",
                    }
                elif isinstance(event, h11.Data):
                    current["body"] += bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    self.seen.append(current)
                    body = b"ok"
                    writer.write(
                        conn.send(h11.Response(status_code=200, headers=[("Content-Length", str(len(body)))]))  # type: ignore[arg-type]
                        + conn.send(h11.Data(data=body))  # type: ignore[operator]
                        + conn.send(h11.EndOfMessage())  # type: ignore[operator]
                    )
                    await writer.drain()
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    return
        except h11.ProtocolError as e:
            self.errors.append(str(e))  # the router sent something h11 cannot read
        except ConnectionError:
            pass
        finally:
            writer.close()

    @property
    def name(self) -> str:
        return "ref"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_TARGET = re.compile(rb"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")


def _stricter(stream: bytes) -> bool:
    """Whether the head holds a byte llhttp refuses and h11 accepts."""
    head = stream.split(b"\r\n\r\n", 1)[0]
    lines = head.split(b"\r\n")
    if any(_CTL.search(line) for line in lines):
        return True
    parts = lines[0].split(b" ")
    # RFC 3986 allows ( and ) in a target; llhttp does not.
    return len(parts) == 3 and (not _TARGET.fullmatch(parts[1]) or b"(" in parts[1] or b")" in parts[1])


async def _through_router(port: int, stream: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(stream)
    await writer.drain()
    writer.write_eof()  # after a whole request: answer it, then close
    try:
        answer = await asyncio.wait_for(reader.read(), 5)
    except (TimeoutError, ConnectionError):
        return b""
    finally:
        writer.close()
    # A half-closing client may be sent a 100 (Continue) before the answer
    # (the router's check that it still reads); like any client, skip it.
    while re.match(rb"HTTP/1\.1 1\d\d ", answer) and not answer.startswith(b"HTTP/1.1 101"):
        answer = answer[answer.index(b"\r\n\r\n") + 4 :]
    return answer


def _category(ref: dict, stream: bytes) -> str | None:
    """The router's deliberate difference from h11 for this request, if any."""
    method = ref.get("method")
    if method is not None and method not in LLHTTP_METHODS:
        return "method outside llhttp's table: the router answers 400"
    if method == b"CONNECT":
        return "CONNECT: the router answers 405 (issue 11)"
    if ref["verdict"] == "reject" and "Transfer-Encoding" in ref["why"]:
        head = stream.split(b"\r\n\r\n", 1)[0]
        codings = [m.strip() for m in re.findall(rb"(?im)^transfer-encoding:([^\r\n]*)", head)]
        if codings and request_transfer_codings(b", ".join(codings)) is not None:
            # h11 reads only chunked; RFC 9112 section 6.1 allows codings before it.
            return "codings before chunked: the router forwards them"
    return None


async def test_router_and_h11_agree_on_the_same_streams(make_router):
    up = await H11Upstream().start()
    router = await make_router([up], timeouts={"read": 3})
    rng = random.Random(20261201)
    streams = list(BASES)
    while len(streams) < STREAMS:
        streams.append(mutate(rng, rng.choice(BASES)))
    compared = accepted = rejected = 0
    categories: dict[str, int] = {}
    mismatches = []
    for stream in streams:
        ref = reference(stream)
        if ref is None:
            continue  # h11 waits for more bytes: nothing to compare at end of stream
        category = _category(ref, stream)
        if category is not None and category.startswith("codings"):
            # An h11 upstream cannot read them either: checked on a raw upstream in
            # test_conformance.test_a_coding_before_chunked_is_kept.
            categories[category] = categories.get(category, 0) + 1
            continue
        before = len(up.seen)
        answer = await _through_router(router.port, stream)
        seen = up.seen[before:]
        status = answer[9:12]
        if category is not None:
            categories[category] = categories.get(category, 0) + 1
            if status != (b"405" if "CONNECT" in category else b"400") or seen:
                mismatches.append((stream, category, answer[:60], seen))
            continue
        compared += 1
        if ref["verdict"] == "reject":
            rejected += 1
            # Rejected: nothing forwarded, and a 400/431 or (a head never
            # completed in llhttp's reading, e.g. after a leading empty line,
            # RFC 9112 section 2.2) a close.
            if seen or (answer and status not in (b"400", b"431")):
                mismatches.append((stream, "h11 rejects: " + ref["why"], answer[:60], seen))
            continue
        accepted += 1
        if status == b"400" and not seen and _stricter(stream):
            # The router may be stricter than h11, never laxer (that way lies
            # request smuggling): llhttp refuses control characters in field
            # values, which h11 keeps (RFC 9110 section 5.5 allows either), and
            # target bytes outside RFC 3986.
            categories["stricter on characters"] = categories.get("stricter on characters", 0) + 1
            continue
        if status != b"200" or len(seen) != 1:
            mismatches.append((stream, "h11 accepts", answer[:80], seen))
            continue
        got = seen[0]
        target, headers = ref["target"], ref["headers"]
        absolute = origin_form(target)
        if absolute is not None:  # the router sends origin-form and a Host that agrees
            target = absolute[0]
            headers = [(b"host", absolute[1])] + [(n, v) for n, v in headers if n.lower() != b"host"]
        elif ref["version"] == b"1.0" and not any(n.lower() == b"host" for n, _ in headers):
            headers = [(b"host", b"")] + headers  # forwarded as HTTP/1.1, which needs a Host
        want = (ref["method"], target, end_to_end(headers), ref["body"])
        have = (got["method"], got["target"], end_to_end(got["headers"]), got["body"])
        if want != have:
            mismatches.append((stream, "different request upstream", want, have))
    up.server.close()
    if mismatches and os.environ.get("DIFF_DUMP"):
        Path(os.environ["DIFF_DUMP"]).write_text("\n".join(repr(m) for m in mismatches))
    assert not mismatches, [(m[0][:90], m[1][:50], m[2][:50]) for m in mismatches]
    assert not up.errors, up.errors[:3]
    # The corpus must exercise both answers, or the agreement says nothing.
    assert accepted >= 20 and rejected >= 20, (accepted, rejected, categories)
    assert compared >= 100
