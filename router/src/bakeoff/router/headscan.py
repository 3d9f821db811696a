"""A byte-at-a-time scanner of HTTP/1.1 heads, for the compiled fast paths.

``response_head`` accepts exactly the heads ``http11.RESPONSE_HEAD``
fullmatches, ``request_head`` those ``http11.REQUEST_HEAD`` fullmatches
(tests/router/test_headscan.py compares them on generated heads), and, in
the same pass, they find the blank line and return where each field line's
colon and end are, and a code for the names the router acts on: the
grammar check and the header scan that the regular expressions did in two
state machines (the first line, then a ``findall`` of the field lines that
built a tuple and two bytes objects per line) take one loop over the head
here.  Compiled by mypyc, the loop indexes ``bytes`` with C integers
(``i64``) and allocates nothing per byte; interpreted, it is two to six times
slower than the regular expressions, so the pure-Python build keeps those
(``COMPILED`` tells the callers which to use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    # mypyc compiles an i64 to a C int64_t: no tagged-integer checks per byte.
    # Only annotations name it (never evaluated here: PEP 563), so the
    # interpreted module does not need mypy_extensions installed.
    from mypy_extensions import i64

# RFC 9110 section 5.6.2: tchar, as a table indexed by the byte.
_TCHAR: Final = bytes(
    1 if chr(c) in "!#$%&'*+-.^_`|~" or chr(c).isascii() and chr(c).isalnum() else 0 for c in range(256)
)


def _compiled() -> bool:
    # A function of a module mypyc compiled is a builtin, not a Python function.
    return type(_compiled).__name__ != "function"


COMPILED: Final = _compiled()


# The field names the fast paths act on, as the code each field line carries in
# the scans' answers (compared case-insensitively; other names are OTHER).
OTHER: Final = 0
CONTENT_LENGTH: Final = 1
CONNECTION: Final = 2
NOT_FAST: Final = 3  # transfer-encoding, upgrade: the general path frames these
HOP: Final = 4  # keep-alive, proxy-connection, te, trailer: this hop's only
METRIC: Final = 5  # bakeoff-metric-*, in a response
XFF: Final = 6  # the rest are a request's
XFP: Final = 7
REQUEST_ID: Final = 8
HOST: Final = 9
TRACEPARENT: Final = 10
STICKY: Final = 11  # the configured sticky header
OVERRIDE: Final = 12  # the configured override header
# The same codes by lower-cased name, for the regular-expression scans of the
# pure-Python build (http11); a name starting "bakeoff-metric-" in a response is METRIC.
RESPONSE_CODES: Final = {
    b"content-length": CONTENT_LENGTH, b"connection": CONNECTION, b"transfer-encoding": NOT_FAST,
    b"upgrade": NOT_FAST, b"keep-alive": HOP, b"proxy-connection": HOP, b"te": HOP, b"trailer": HOP,
}  # fmt: skip
REQUEST_CODES: Final = {
    **RESPONSE_CODES, b"x-forwarded-for": XFF, b"x-forwarded-proto": XFP, b"x-request-id": REQUEST_ID,
    b"host": HOST, b"traceparent": TRACEPARENT,
}  # fmt: skip
# Each field line is one item of the scans' answers: its code, the position of
# its colon and its end, in one int (``code | colon << 8 | end << 34``; a read
# longer than ``MAX_DATA`` is not scanned), where three items cost three list
# appends and three boxed ints (about 250 instructions a line, callgrind).
MAX_DATA: Final = 1 << 26
COLON_MASK: Final = (1 << 26) - 1


def line(code: int, colon: int, end: int) -> int:
    """The item of a field line in the scans' answers (``x & 255``, ``x >> 8 & COLON_MASK``, ``x >> 34`` undo it)."""
    return code | colon << 8 | end << 34


_LOWER: Final = bytes(c + 32 if 65 <= c <= 90 else c for c in range(256))


def _is(head: bytes, i: i64, name: bytes) -> bool:
    """Whether the field name at ``i`` is ``name`` (lower case) in any case; the caller has checked the length."""
    m: i64 = len(name)
    j: i64 = 0
    while j < m:
        if _LOWER[head[i + j]] != name[j]:
            return False
        j += 1
    return True


def _code(head: bytes, i: i64, colon: i64, request: bool) -> i64:
    """The code of the field name from ``i`` to ``colon``: a switch on its first letter and length, no allocation."""
    n = colon - i
    c: i64 = _LOWER[head[i]]
    if c == 99:  # c
        if n == 14 and _is(head, i, b"content-length"):
            return CONTENT_LENGTH
        if n == 10 and _is(head, i, b"connection"):
            return CONNECTION
    elif c == 116:  # t
        if n == 2 and _LOWER[head[i + 1]] == 101:
            return HOP
        if n == 7 and _is(head, i, b"trailer"):
            return HOP
        if n == 17 and _is(head, i, b"transfer-encoding"):
            return NOT_FAST
        if request and n == 11 and _is(head, i, b"traceparent"):
            return TRACEPARENT
    elif c == 117:  # u
        if n == 7 and _is(head, i, b"upgrade"):
            return NOT_FAST
    elif c == 107:  # k
        if n == 10 and _is(head, i, b"keep-alive"):
            return HOP
    elif c == 112:  # p
        if n == 16 and _is(head, i, b"proxy-connection"):
            return HOP
    elif request:
        if c == 104:  # h
            if n == 4 and _is(head, i, b"host"):
                return HOST
        elif c == 120:  # x
            if n == 15 and _is(head, i, b"x-forwarded-for"):
                return XFF
            if n == 17 and _is(head, i, b"x-forwarded-proto"):
                return XFP
            if n == 12 and _is(head, i, b"x-request-id"):
                return REQUEST_ID
    elif c == 98:  # b
        if n >= 15 and _is(head, i, b"bakeoff-metric-"):
            return METRIC
    return OTHER


def _fields(head: bytes, i: i64, out: list[int], request: bool, sticky: bytes, override: bytes) -> list[int] | None:
    """The field lines from ``i`` to the blank line: each line's code, colon and end appended to ``out`` (``line``).

    A line is a token, a colon and value bytes (HTAB, SP, VCHAR, and
    obs-text in a response), then CRLF; the lines end at a blank line (CRLF),
    whose position becomes ``out[0]``.  None if a byte breaks that, or no
    blank line comes.  A request's names equal to ``sticky`` or ``override``
    (lower case; b"" for none) are STICKY or OVERRIDE, unless they are
    Content-Length, Connection, Transfer-Encoding or Upgrade.
    """
    n: i64 = len(head)
    high = not request
    while i < n:
        # The name: one or more tchar, then a colon.
        start = i
        c: i64 = head[i]
        if not _TCHAR[c]:
            if c == 13 and i + 1 < n and head[i + 1] == 10:  # the blank line
                out[0] = i
                return out
            return None
        i += 1
        while True:
            if i >= n:
                return None
            c = head[i]
            if c == 58:  # ':'
                break
            if not _TCHAR[c]:
                return None
            i += 1
        colon = i
        code = _code(head, start, i, request)
        if request and code != CONTENT_LENGTH and code != CONNECTION and code != NOT_FAST:
            if i - start == len(sticky) and _is(head, start, sticky):
                code = STICKY
            elif i - start == len(override) and _is(head, start, override):
                code = OVERRIDE
        i = _line_end(head, i + 1, high)
        if i < 0:
            return None
        out.append(code | colon << 8 | i << 34)
    return None


def skip_ows(head: bytes, i: i64, end: i64) -> i64:
    """Past the SP and HTAB from ``i`` (at most to ``end``): where ``head[i:end].lstrip(b" \\t")`` begins."""
    while i < end and (head[i] == 32 or head[i] == 9):
        i += 1
    return i


def trim_ows(head: bytes, i: i64, end: i64) -> i64:
    """Before the SP and HTAB that end ``head[i:end]``: where ``head[i:end].rstrip(b" \\t")`` ends."""
    while end > i and (head[end - 1] == 32 or head[end - 1] == 9):
        end -= 1
    return end


def is_keep_alive(head: bytes, i: i64, end: i64) -> bool:
    """Whether ``head[i:end]`` is ``keep-alive`` in any case between optional SP and HTAB."""
    i = skip_ows(head, i, end)
    end = trim_ows(head, i, end)
    return end - i == 10 and _is(head, i, b"keep-alive")


def content_length(head: bytes, i: i64, end: i64) -> i64:
    """A Content-Length value from ``i`` to ``end``: optional SP/HTAB, 1 to 18 digits, optional SP/HTAB; else -1.

    The same values as ``v.strip()`` passing ``isdigit()`` with at most 18
    digits, then ``int(v)``, without the three objects.
    """
    while i < end and (head[i] == 32 or head[i] == 9):
        i += 1
    first = i
    value: i64 = 0
    while i < end:
        c: i64 = head[i]
        if c < 48 or c > 57:
            break
        if i - first == 18:
            return -1
        value = value * 10 + c - 48
        i += 1
    if i == first:
        return -1
    while i < end and (head[i] == 32 or head[i] == 9):
        i += 1
    return value if i == end else -1


def _line_end(head: bytes, i: i64, high: bool) -> i64:
    """Past the CRLF that ends the value bytes from ``i`` (HTAB, SP, VCHAR, obs-text when ``high``); -1 if none does.

    A field value and a status line's reason share this grammar.
    """
    n: i64 = len(head)
    while True:
        if i >= n:
            return -1
        c: i64 = head[i]
        if c < 32:
            if c == 13:
                break
            if c != 9:
                return -1
        elif c >= 127:
            if c == 127 or not high:
                return -1
        i += 1
    i += 1
    if i >= n or head[i] != 10:
        return -1
    return i + 1


def response_head(data: bytes) -> list[int] | None:
    """Check the response head at the start of ``data`` (up to its blank line) and find its fields.

    The head, the bytes before the first CRLF CRLF, is in the grammar of
    ``http11.RESPONSE_HEAD`` (matched whole): ``HTTP/1.1``, a status of
    100-599, a reason of value bytes, then field lines.  Returns None for a
    head outside it or no blank line; else the length of the head (where its
    blank line begins), the end of the status line, then for each field line
    the code of its name (OTHER, CONTENT_LENGTH, ...), the position of its
    colon and the end of the line (past its LF, where the next line begins),
    packed in one int (``line``).
    Only lines end in CRLF, so the blank line the scan stops at is the first
    CRLF CRLF in ``data``, as a ``find`` would have it.
    """
    n: i64 = len(data)
    if (
        n < 15
        or n >= MAX_DATA
        or data[0] != 72  # H
        or data[1] != 84  # T
        or data[2] != 84  # T
        or data[3] != 80  # P
        or data[4] != 47  # /
        or data[5] != 49  # 1
        or data[6] != 46  # .
        or data[7] != 49  # 1
        or data[8] != 32
    ):
        return None
    c: i64 = data[9]
    if c < 49 or c > 53:  # 1-5
        return None
    c = data[10]
    if c < 48 or c > 57:
        return None
    c = data[11]
    if c < 48 or c > 57 or data[12] != 32:
        return None
    i = _line_end(data, 13, True)  # the reason: value bytes
    if i < 0:
        return None
    out = [0, i]
    return _fields(data, i, out, False, b"", b"")


def _at(head: bytes, i: i64, literal: bytes) -> bool:
    """Whether ``literal`` is in ``head`` at ``i`` (the caller knows ``head`` is long enough)."""
    for j in range(len(literal)):
        if head[i + j] != literal[j]:
            return False
    return True


def request_head(data: bytes, sticky: bytes, override: bytes) -> list[int] | None:
    """Check the request head at the start of ``data`` (up to its blank line) and find its fields.

    The head is in the grammar of ``http11.REQUEST_HEAD`` (matched whole):
    one of the methods the fast path takes, an origin-form target of visible
    bytes, ``HTTP/1.1``; then field lines whose values hold no obs-text.
    Returns None for a head outside it or no blank line; else the length of
    the head, the length of the method, the end of the request line, then
    for each field line the code of its name, its colon and its end in one
    int (``line``; with
    ``sticky`` and ``override``, lower case, the configured names: see
    ``_fields``).
    """
    n: i64 = len(data)
    if n < 16 or n >= MAX_DATA:  # "GET / HTTP/1.1" and CRLF
        return None
    c: i64 = data[0]
    if c == 71:  # G
        k: i64 = 3 if data.startswith(b"GET ") else 0
    elif c == 80:  # P
        if data.startswith(b"POST "):
            k = 4
        elif data.startswith(b"PUT "):
            k = 3
        elif data.startswith(b"PATCH "):
            k = 5
        else:
            k = 0
    elif c == 72:  # H
        k = 4 if data.startswith(b"HEAD ") else 0
    elif c == 68:  # D
        k = 6 if data.startswith(b"DELETE ") else 0
    elif c == 79:  # O
        k = 7 if data.startswith(b"OPTIONS ") else 0
    else:
        k = 0
    if k == 0 or data[k + 1] != 47:  # "/"
        return None
    # The rest of the target: visible bytes, up to the space before the version.
    i: i64 = k + 2
    while True:
        if i >= n:
            return None
        c = data[i]
        if c < 33 or c > 126:
            break
        i += 1
    if i + 11 > n or not _at(data, i, b" HTTP/1.1\r\n"):
        return None
    i += 11
    out = [0, k, i]
    return _fields(data, i, out, True, sticky, override)
