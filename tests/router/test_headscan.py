"""The hand-written head scanner (bakeoff.router.headscan) against the regular expressions it replaces.

The compiled fast paths check a head with ``headscan.response_head`` and
``headscan.request_head`` instead of ``http11.RESPONSE_LINE`` /
``REQUEST_LINE`` and a ``findall`` of the field lines; each must accept
exactly the heads ``http11.RESPONSE_HEAD`` / ``REQUEST_HEAD`` fullmatch, and
find the same field lines.  The heads below are generated from a seed:
well-formed ones, then each broken in the ways a scanner gets wrong (a bad
byte in a name or a value, obs-text in a request, obs-fold, a bare CR or LF,
a missing CRLF, a truncated line, no colon, an empty name, a bad status or
request line), and random single-byte edits of them, so every position and
byte class is tried.  It runs against whichever build of headscan is
imported (compiled, or the source with BAKEOFF_PURE_PYTHON=1).
"""

from __future__ import annotations

import random

import pytest

from bakeoff.router import headscan
from bakeoff.router.http11 import (
    REQUEST_FIELD,
    REQUEST_HEAD,
    REQUEST_LINE,
    RESPONSE_FIELD,
    RESPONSE_HEAD,
    RESPONSE_LINE,
    request_head_by_regex,
    response_head_by_regex,
)

TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Bytes a value may hold (HTAB, SP, VCHAR, obs-text), and the ones around the edges of those classes.
VALUE = bytes([9, *range(0x20, 0x7F), *range(0x80, 0x100)])
EDGE = bytes([0, 8, 9, 10, 11, 13, 31, 32, 34, 40, 41, 44, 47, 58, 59, 64, 91, 92, 93, 123, 125, 126, 127, 128, 255])
NAMES = [
    b"Content-Length", b"Connection", b"Bakeoff-Metric-revenue", b"X-A", b"te", b"Date", b"Server", b"k",
    b"HOST", b"x-forwarded-For", b"X-Forwarded-Proto", b"X-Request-Id", b"Transfer-Encoding", b"upgrade",
    b"TraceParent", b"Keep-Alive", b"Proxy-Connection", b"Trailer", b"bakeoff-metric-", b"Bakeoff-Metric",
    b"Contentlength", b"tE", b"hosts", b"X-User-Id",
]  # fmt: skip
# The configured names the request scan is given (lower case): a sticky header, an override header.
STICKY_NAME = b"x-user-id"
OVERRIDE_NAME = b"x-a"
# The code each name the fast paths act on gets (headscan's constants), by the lower-cased name.
FIXED = {
    b"content-length": headscan.CONTENT_LENGTH, b"connection": headscan.CONNECTION,
    b"transfer-encoding": headscan.NOT_FAST, b"upgrade": headscan.NOT_FAST, b"keep-alive": headscan.HOP,
    b"proxy-connection": headscan.HOP, b"te": headscan.HOP, b"trailer": headscan.HOP,
}  # fmt: skip
REQUEST_ONLY = {
    b"x-forwarded-for": headscan.XFF, b"x-forwarded-proto": headscan.XFP, b"x-request-id": headscan.REQUEST_ID,
    b"host": headscan.HOST, b"traceparent": headscan.TRACEPARENT,
}  # fmt: skip


def _value(rng: random.Random, request: bool = False) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return b""
    if kind == 1:
        return b" " + str(rng.randrange(10**6)).encode()
    if kind == 2:
        # A request's value holds no obs-text: the edits below bring some in.
        alphabet = VALUE[:96] if request else VALUE
        return bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 40)))
    return b" \tkeep-alive, close \t"


def _name(rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return rng.choice(NAMES)
    return bytes(rng.choice(TCHAR) for _ in range(rng.randrange(1, 12)))


def _status(rng: random.Random) -> bytes:
    reason = rng.choice([b"OK", b"", b"Not Found", b"caf\xc3\xa9 \t!", bytes(rng.choice(VALUE) for _ in range(8))])
    return b"HTTP/1.1 %d %s\r\n" % (rng.randrange(100, 600), reason)


METHODS = [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"]
ODD_METHODS = [b"CONNECT", b"get", b"GETS", b"PUTS", b"POS", b"OPTION", b"PATCHES", b"", b"DELET", b"HEADS"]


def _request_line(rng: random.Random) -> bytes:
    method = rng.choice(METHODS) if rng.random() < 0.9 else rng.choice(ODD_METHODS)
    target = rng.choice([b"/", b"/a/b?c=d&e=%20", b"/" + bytes(rng.randrange(0x21, 0x7F) for _ in range(20))])
    return method + b" " + target + b" HTTP/1.1\r\n"


def _good(rng: random.Random, request: bool) -> bytes:
    return (_request_line(rng) if request else _status(rng)) + b"".join(
        _name(rng) + b":" + _value(rng, request) + b"\r\n" for _ in range(rng.randrange(0, 9))
    )


BREAKS = [
    lambda h, i, rng: h[:i] + bytes([rng.choice(EDGE)]) + h[i:],  # a byte inserted
    lambda h, i, rng: h[:i] + bytes([rng.choice(EDGE)]) + h[i + 1 :],  # a byte replaced
    lambda h, i, rng: h[:i] + bytes([rng.randrange(256)]) + h[i + 1 :],  # any byte
    lambda h, i, rng: h[:i] + h[i + 1 :],  # a byte dropped
    lambda h, i, rng: h[:i],  # truncated
    lambda h, i, rng: h + b" folded value\r\n",  # obs-fold
    lambda h, i, rng: h + b"\tfolded\r\n",
    lambda h, i, rng: h.replace(b"\r\n", b"\n", 1 + rng.randrange(3)),  # bare LF
    lambda h, i, rng: h.replace(b"\r\n", b"\r", 1 + rng.randrange(3)),  # bare CR
    lambda h, i, rng: h + b"X-No-Colon\r\n",
    lambda h, i, rng: h + b": no name\r\n",
    lambda h, i, rng: h + b"Name : space before the colon\r\n",
    lambda h, i, rng: h + b"\r\n",  # a blank line inside
    lambda h, i, rng: h + b"X-Last: no CRLF",
    lambda h, i, rng: h[:-2] if h.endswith(b"\r\n") else h,
    lambda h, i, rng: h.replace(b"HTTP/1.1", rng.choice([b"HTTP/1.0", b"HTTP/2.0", b"http/1.1", b"HTTP/1.1 "])),
    lambda h, i, rng: h[:9] + rng.choice([b"099", b"600", b"20", b"2000", b"20x", b"a00", b"200"]) + h[12:],
    lambda h, i, rng: h[:12] + h[13:],  # no space after the status
    lambda h, i, rng: h.replace(b" /", rng.choice([b"  /", b" *", b" http://h/", b"/", b" "]), 1),
    lambda h, i, rng: h.replace(b" HTTP/1.1\r\n", rng.choice([b"HTTP/1.1\r\n", b" HTTP/1.1 \r\n", b" HTTP/1.\r\n"]), 1),
]


def _heads(seed: int, count: int, request: bool) -> list[bytes]:
    rng = random.Random(seed)
    heads = []
    for _ in range(count):
        head = _good(rng, request)
        for _ in range(rng.choice([0, 1, 1, 2])):
            head = rng.choice(BREAKS)(head, rng.randrange(len(head) + 1), rng)
        heads.append(head)
    return heads


def _code(name: bytes, request: bool, sticky: bytes, override: bytes) -> int:
    lname = name.lower()
    code = FIXED.get(lname, headscan.OTHER)
    if not request:
        return headscan.METRIC if code == headscan.OTHER and lname.startswith(b"bakeoff-metric-") else code
    if code in (headscan.CONTENT_LENGTH, headscan.CONNECTION, headscan.NOT_FAST):
        return code  # never shadowed by a configured name
    if lname == sticky:
        return headscan.STICKY
    if lname == override:
        return headscan.OVERRIDE
    return REQUEST_ONLY.get(lname, code)


def _by_regex(
    data: bytes, request: bool, sticky: bytes = STICKY_NAME, override: bytes = OVERRIDE_NAME
) -> list[int] | None:
    """What the fast path found before the scan did it all: the head is what precedes the first CRLF CRLF;
    None if there is none or the head is outside the grammar, else the positions and codes headscan returns."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = data[: end + 2]
    if (REQUEST_HEAD if request else RESPONSE_HEAD).fullmatch(head) is None:
        return None
    m = (REQUEST_LINE if request else RESPONSE_LINE).match(head)
    assert m is not None
    pos = m.end()
    spans = [len(head), m.end(1), pos] if request else [len(head), pos]
    for line, name in (REQUEST_FIELD if request else RESPONSE_FIELD).findall(head, pos):
        spans.append(headscan.line(_code(name, request, sticky, override), pos + len(name), pos + len(line)))
        pos += len(line)
    assert pos == len(head)
    return spans


def _scans(request: bool) -> list:
    """The compiled build's scan and the pure-Python build's, as the fast paths call them."""
    if request:
        return [
            lambda d: headscan.request_head(d, STICKY_NAME, OVERRIDE_NAME),
            lambda d: request_head_by_regex(d, STICKY_NAME, OVERRIDE_NAME),
        ]
    return [headscan.response_head, response_head_by_regex]


# What follows a head in a read: its blank line and a body (which may hold another CRLF CRLF), or nothing yet.
TAILS = [b"\r\n", b"\r\nbody\r\n\r\nmore", b"", b"\r", b"\r\n\r\n"]


COUNT = 30_000
RESPONSES = _heads(18, COUNT, request=False)
REQUESTS = _heads(19, COUNT, request=True)


@pytest.mark.parametrize("request_side", [False, True])
def test_the_generated_heads_cover_both_outcomes(request_side: bool) -> None:
    heads, grammar = (REQUESTS, REQUEST_HEAD) if request_side else (RESPONSES, RESPONSE_HEAD)
    accepted = sum(grammar.fullmatch(h) is not None for h in heads)
    assert 0.2 * len(heads) < accepted < 0.8 * len(heads), accepted


@pytest.mark.parametrize("part", range(6))
def test_response_head_accepts_what_the_regex_accepts_and_finds_the_same_fields(part: int) -> None:
    scans = _scans(request=False)
    for i, head in enumerate(RESPONSES[part::6]):
        data = head + TAILS[i % len(TAILS)]
        expected = _by_regex(data, request=False)
        for scan in scans:  # the compiled build's, and the pure-Python build's way
            assert scan(data) == expected, data


@pytest.mark.parametrize("part", range(6))
def test_request_head_accepts_what_the_regex_accepts_and_finds_the_same_fields(part: int) -> None:
    scans = _scans(request=True)
    for i, head in enumerate(REQUESTS[part::6]):
        data = head + TAILS[i % len(TAILS)]
        expected = _by_regex(data, request=True)
        for scan in scans:
            assert scan(data) == expected, data


@pytest.mark.parametrize(
    "base",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:\r\nk: v \xff\r\n",
        b"GET /x?y HTTP/1.1\r\nHost: h\r\nX-A:\r\nk: v \t\r\n",
        b"OPTIONS / HTTP/1.1\r\n",
    ],
)
def test_every_single_byte_in_every_position_of_a_head(base: bytes) -> None:
    request = not base.startswith(b"HTTP/")
    scan = _scans(request)[0]
    for i in range(len(base) + 1):
        for b in range(256):
            for head in (base[:i] + bytes([b]) + base[i:], base[:i] + bytes([b]) + base[i + 1 :]):
                data = head + b"\r\n"
                assert scan(data) == _by_regex(data, request), data


def test_compiled_means_the_extension() -> None:
    assert headscan.COMPILED == headscan.__file__.endswith((".so", ".pyd"))


@pytest.mark.parametrize("sticky", [b"host", b"content-length", b"connection", b"upgrade", b"te", b"traceparent"])
def test_a_configured_name_shadows_the_fixed_ones_except_the_framing_ones(sticky: bytes) -> None:
    data = (
        b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\nUpgrade: x\r\nTE: t\r\n"
        b"traceparent: p\r\n\r\n"
    )
    expected = _by_regex(data, True, sticky, b"")
    assert expected is not None
    codes = [x & 255 for x in expected[3:]]
    assert (headscan.STICKY in codes) == (sticky in (b"host", b"te", b"traceparent"))
    assert headscan.request_head(data, sticky, b"") == expected
    assert request_head_by_regex(data, sticky, b"") == expected


def _length_by_methods(value: bytes) -> int:
    """What the fast paths did with a Content-Length value before: strip, isdigit, at most 18 digits, int."""
    v = value.strip()
    return int(v) if v.isdigit() and len(v) <= 18 else -1


def test_content_length_reads_what_strip_isdigit_and_int_read() -> None:
    rng = random.Random(7)
    alphabet = b"0123456789 \t+-x\xff"
    values = [b"0", b"7", b" 42 ", b"\t1\t", b"", b" ", b"1 2", b"+1", b"-1", b"0x1", b"9" * 18, b"9" * 19, b"0" * 25]
    values += [bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 24))) for _ in range(20_000)]
    for value in values:
        data = b"Content-Length:" + value + b"\r\n"
        assert headscan.content_length(data, 15, len(data) - 2) == _length_by_methods(value), value


def test_a_line_unpacks_to_its_code_colon_and_end() -> None:
    for code, colon, end in [(0, 0, 0), (12, 17, 19), (255, headscan.MAX_DATA - 3, headscan.MAX_DATA - 1)]:
        x = headscan.line(code, colon, end)
        assert (x & 255, x >> 8 & headscan.COLON_MASK, x >> 34) == (code, colon, end)


def test_keep_alive_skip_ows_and_trim_ows_read_what_strip_and_lower_read() -> None:
    rng = random.Random(8)
    words = [b"keep-alive", b"Keep-Alive", b"KEEP-ALIVE", b"keep-alivE", b"keep_alive", b"keep-aliv", b"close", b""]
    for _ in range(5_000):
        value = rng.choice([b"", b" ", b"\t", b" \t"]) + rng.choice(words) + rng.choice([b"", b" ", b"\t ", b"x"])
        data = b"Connection:" + value + b"\r\n"
        assert headscan.is_keep_alive(data, 11, len(data) - 2) == (value.strip(b" \t").lower() == b"keep-alive")
        assert data[headscan.skip_ows(data, 11, len(data) - 2) : len(data) - 2] == value.lstrip(b" \t")
        assert data[11 : headscan.trim_ows(data, 11, len(data) - 2)] == value.rstrip(b" \t")
