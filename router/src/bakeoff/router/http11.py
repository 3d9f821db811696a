"""HTTP/1.1 wire details shared by both sides of the proxy.

Which headers belong to one hop only, the strict grammars of the fast
paths, the router's own canned responses, request ids, and the checks on
framing headers that must pass before a request's first byte goes upstream.
"""

from __future__ import annotations

import os
import re
from typing import Final

from bakeoff.router.headscan import (
    CONNECTION,
    CONTENT_LENGTH,
    MAX_DATA,
    METRIC,
    NOT_FAST,
    OTHER,
    OVERRIDE,
    REQUEST_CODES,
    RESPONSE_CODES,
    STICKY,
)

# RFC 9110 section 7.6.1: meaningful for one connection only, never forwarded.
# Content-Length is not here: it passes through when it frames the body as is.
HOP_BY_HOP = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"te", b"transfer-encoding", b"upgrade", b"trailer")
)
METRIC_PREFIX = b"bakeoff-metric-"
METRIC_PREFIX_LEN = len(METRIC_PREFIX)

# The fast response path's grammar (RFC 9112 section 4 and 5, strictly): a
# status line, then field lines of a token, a colon and visible characters;
# no obsolete line folding, no bare CR or LF, no NUL.
# The quantifiers are possessive (*+, ++): no class can run into what follows
# it (no value byte is CR, no name byte a colon), so giving back characters
# could never find another match, and not saving the backtracking state
# makes the match about 15% cheaper (callgrind: 9.5k -> 8.0k instructions for a
# 185-byte response head).  The language is the same as with greedy ones.
RESPONSE_HEAD = re.compile(
    rb"HTTP/1\.1 [1-5][0-9][0-9] [\t\x20-\x7e\x80-\xff]*+\r\n"
    rb"(?:[!#$%&'*+.^_`|~0-9A-Za-z-]++:[\t\x20-\x7e\x80-\xff]*+\r\n)*+"
)
REQUEST_HEAD = re.compile(
    rb"(GET|HEAD|POST|PUT|DELETE|PATCH|OPTIONS) /[\x21-\x7e]*+ HTTP/1\.1\r\n"
    rb"(?:[!#$%&'*+.^_`|~0-9A-Za-z-]++:[\t\x20-\x7e]*+\r\n)*+"
)
# The same grammars in two parts, as the pure-Python fast paths use them (the
# compiled ones use headscan's byte loop, held to RESPONSE_HEAD and REQUEST_HEAD
# by tests/router/test_headscan.py): the first line,
# then every field line found by one ``findall`` that returns each line and its
# name.  findall skips what does not match, so a head is in the grammar exactly
# when the lines found, which never overlap, add up to the rest of the head (a
# gap would be a line that does not match).  One findall and a dictionary
# look-up per line cost a third of what a grammar match, then a search for the
# lines the router acts on (with a match object each) did (callgrind).
RESPONSE_LINE = re.compile(rb"HTTP/1\.1 [1-5][0-9][0-9] [\t\x20-\x7e\x80-\xff]*+\r\n")
RESPONSE_FIELD = re.compile(rb"(([!#$%&'*+.^_`|~0-9A-Za-z-]++):[\t\x20-\x7e\x80-\xff]*+\r\n)")
REQUEST_LINE = re.compile(rb"(GET|HEAD|POST|PUT|DELETE|PATCH|OPTIONS) /[\x21-\x7e]*+ HTTP/1\.1\r\n")
REQUEST_FIELD = re.compile(rb"(([!#$%&'*+.^_`|~0-9A-Za-z-]++):[\t\x20-\x7e]*+\r\n)")
PLAIN_CONNECTION_TOKENS = frozenset((b"keep-alive", b"close", b""))
# How long a connection the router ends on an error (an HTTP/1.1 400 or 431, an HTTP/2 GOAWAY)
# half-closed reads and drops what the client still sends before it closes (lingering close).
LINGER_SECONDS = 2.0


def response_head_by_regex(data: bytes) -> list[int] | None:
    """``headscan.response_head`` by the regular expressions: the pure-Python build's faster way to the same answer.

    None for a head outside ``RESPONSE_HEAD`` or no blank line; else the
    length of the head, the end of the status line, then each field line's
    code, colon and end, in one int as ``headscan.line`` packs them.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0 or len(data) >= MAX_DATA:
        return None
    head = data[: end + 2]
    m = RESPONSE_LINE.match(head)
    if m is None:
        return None
    return _field_spans(RESPONSE_FIELD, head, [end + 2, m.end()], False, b"", b"")


def error_response(status: int, reason: str, message: str, extra: str = "") -> bytes:
    body = f"{status} {reason}: {message}\n".encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
    ).encode() + body


BAD_REQUEST = error_response(400, "Bad Request", "the request is not valid HTTP/1.1")
HEAD_TOO_LARGE = error_response(431, "Request Header Fields Too Large", "the request head is too large")
METHOD_NOT_ALLOWED = error_response(
    405,
    "Method Not Allowed",
    "this router does not tunnel CONNECT",
    extra="Allow: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS\r\n",
)
REQUEST_TIMEOUT = error_response(408, "Request Timeout", "the request head was not complete in time")
BAD_FRAMING = error_response(
    400, "Bad Request", "Transfer-Encoding must end in chunked (RFC 9112 section 6.1), without Content-Length"
)
BAD_HOST = error_response(
    400, "Bad Request", "an HTTP/1.1 request needs exactly one Host header (RFC 9112 section 3.2)"
)
BAD_TARGET = error_response(400, "Bad Request", "the absolute-form request target has no valid authority")
NO_VARIANT = error_response(503, "Service Unavailable", "no variant is routable")


class HeadTooLarge(Exception):
    """Raised inside an httptools callback: the head passed limits.maxHeaderBytes."""


class Rejected(Exception):
    """Raised inside an httptools callback: answer with ``response`` before anything goes upstream."""

    def __init__(self, response: bytes) -> None:
        super().__init__()
        self.response = response


_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# A transfer-coding with optional parameters (RFC 9110 section 10.1.4); the
# parameter grammar is checked loosely, the coding name strictly.
_CODING = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*(;[\t\x20-\x7e]*)?")


def request_transfer_codings(value: bytes) -> bytes | None:
    """The Transfer-Encoding to forward for a request, or None if its framing is invalid.

    RFC 9112 section 6.1: chunked must be the final coding of a request and
    is applied once; codings before it (gzip, ...) are the application's and
    are passed on, since the router re-frames only the chunked layer.
    """
    codings = []
    for part in value.split(b","):
        part = part.strip(b" \t")
        if not part:
            continue  # empty list elements are allowed (RFC 9110 section 5.6.1)
        m = _CODING.fullmatch(part)
        if m is None:
            return None
        codings.append(m.group(0))
    if not codings or codings[-1].lower() != b"chunked":
        return None
    if any(c.split(b";", 1)[0].strip().lower() == b"chunked" for c in codings[:-1]):
        return None
    return b", ".join(codings)


def origin_form(url: bytes) -> tuple[bytes, bytes] | None:
    """Split an absolute-form target into (origin-form target, authority); None if not absolute.

    RFC 9112 section 3.2.2: a request to an origin carries the origin-form;
    the authority becomes the Host.  Raises Rejected for a target that is
    absolute but has no usable authority.
    """
    lower = url[:8].lower()
    if lower.startswith(b"http://"):
        rest = url[7:]
    elif lower.startswith(b"https://"):
        rest = url[8:]
    else:
        return None
    cut = len(rest)
    for sep in (b"/", b"?", b"#"):
        i = rest.find(sep)
        if 0 <= i < cut:
            cut = i
    authority = rest[:cut]
    path = rest[cut:].split(b"#", 1)[0]
    if b"@" in authority:
        authority = authority.rsplit(b"@", 1)[1]  # userinfo is not part of Host (RFC 9110 section 4.2.4)
    if not authority or not re.fullmatch(rb"[A-Za-z0-9.\-_~!$&'()*+,;=%:\[\]]+", authority):
        raise Rejected(BAD_TARGET)
    if not path.startswith(b"/"):
        path = b"/" + path
    return path, authority


_REQUEST_ID_PREFIX = os.urandom(4).hex().encode() + b"-"
_REQUEST_ID_LINE: Final = b"X-Request-Id: " + _REQUEST_ID_PREFIX  # joined once, not per request
# The last two hex digits of an id and the line's end, by the low byte: with
# or without a leading zero.  Formatting with %x took about 1,900
# instructions a request (callgrind); a table look-up and one concatenation
# take a tenth, and the rest of the line changes only every 256 ids.
_LOW_PADDED: Final = tuple(b"%02x\r\n" % i for i in range(256))
_LOW_ALONE: Final = tuple(b"%x\r\n" % i for i in range(256))


class _RequestIds:
    __slots__ = ("last", "line")

    def __init__(self) -> None:
        self.last = 0  # the last id given
        self.line = _REQUEST_ID_LINE  # the line up to the last two digits, of ids from 256 on


_request_ids: Final = _RequestIds()


def request_id_line() -> bytes:
    """An X-Request-Id header line unique to this process's lifetime: the prefix and a count, in hex."""
    ids = _request_ids
    n = ids.last + 1
    ids.last = n
    if n < 256:
        return _REQUEST_ID_LINE + _LOW_ALONE[n]
    low = n & 255
    if low == 0:
        ids.line = _REQUEST_ID_LINE + b"%x" % (n >> 8)
    return ids.line + _LOW_PADDED[low]


def drop_connection_listed(headers: list[bytes], tokens: bytes) -> list[bytes]:
    """Drop the header lines a Connection header names (RFC 9110 section 7.6.1)."""
    names = {t.strip() for t in tokens.lower().split(b",")} - {b"close", b"keep-alive", b"upgrade", b""}
    if not names:
        return headers
    return [h for h in headers if h.split(b":", 1)[0].strip().lower() not in names]


def request_head_by_regex(data: bytes, sticky: bytes, override: bytes) -> list[int] | None:
    """``headscan.request_head`` by the regular expressions, for the pure-Python build (as response_head_by_regex)."""
    end = data.find(b"\r\n\r\n")
    if end < 0 or len(data) >= MAX_DATA:
        return None
    head = data[: end + 2]
    m = REQUEST_LINE.match(head)
    if m is None:
        return None
    return _field_spans(REQUEST_FIELD, head, [end + 2, m.end(1), m.end()], True, sticky, override)


def _field_spans(
    field: re.Pattern[bytes], head: bytes, spans: list[int], request: bool, sticky: bytes, override: bytes
) -> list[int] | None:
    """Append each field line's code, colon and end (one int) to ``spans`` (its last item: where the field lines begin)."""
    pos = spans[-1]
    fields: list[tuple[bytes, bytes]] = field.findall(head, pos)
    codes = REQUEST_CODES if request else RESPONSE_CODES
    for line, name in fields:
        lname = name.lower()
        code = codes.get(lname, OTHER)
        if request:
            if code != CONTENT_LENGTH and code != CONNECTION and code != NOT_FAST:
                if lname == sticky:
                    code = STICKY
                elif lname == override:
                    code = OVERRIDE
        elif code == OTHER and lname.startswith(METRIC_PREFIX):
            code = METRIC
        colon = pos + len(name)
        pos += len(line)
        spans.append(code | colon << 8 | pos << 34)  # as headscan.line
    if pos != len(head):
        return None  # a line the grammar does not allow (findall skipped it)
    return spans
