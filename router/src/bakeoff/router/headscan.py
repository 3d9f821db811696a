"""A byte-at-a-time scanner of HTTP/1.1 heads, for the compiled fast paths.

``response_head`` accepts exactly the heads ``http11.RESPONSE_HEAD``
fullmatches, ``request_head`` those ``http11.REQUEST_HEAD`` fullmatches
(tests/router/test_headscan.py compares them on generated heads), and, in
the same pass, they return where each field line's colon and end are: the
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


def _fields(head: bytes, i: i64, out: list[int], high: bool) -> list[int] | None:
    """The field lines from ``i`` to the end of ``head``: each line's colon and end appended to ``out``.

    A line is a token, a colon and value bytes (HTAB, SP, VCHAR, and
    obs-text when ``high``), then CRLF; the lines must end exactly at the
    end of the head.  None if a byte breaks that.
    """
    n: i64 = len(head)
    while i < n:
        # The name: one or more tchar, then a colon.
        c: i64 = head[i]
        if not _TCHAR[c]:
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
        out.append(i)
        i = _line_end(head, i + 1, high)
        if i < 0:
            return None
        out.append(i)
    return out


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


def response_head(head: bytes) -> list[int] | None:
    """Check a response head (status line and field lines, each ending in CRLF, no blank line) and find its fields.

    The grammar is ``http11.RESPONSE_HEAD``'s, matched whole: ``HTTP/1.1``, a
    status of 100-599, a reason of value bytes; then field lines.  Returns
    None for a head outside it; else the end of the status line, then for
    each field line the position of its colon and the end of the line (past
    its LF), which is where the next line begins.
    """
    n: i64 = len(head)
    if (
        n < 15
        or head[0] != 72  # H
        or head[1] != 84  # T
        or head[2] != 84  # T
        or head[3] != 80  # P
        or head[4] != 47  # /
        or head[5] != 49  # 1
        or head[6] != 46  # .
        or head[7] != 49  # 1
        or head[8] != 32
    ):
        return None
    c: i64 = head[9]
    if c < 49 or c > 53:  # 1-5
        return None
    c = head[10]
    if c < 48 or c > 57:
        return None
    c = head[11]
    if c < 48 or c > 57 or head[12] != 32:
        return None
    i = _line_end(head, 13, True)  # the reason: value bytes
    if i < 0:
        return None
    out = [i]
    return _fields(head, i, out, True)


def _at(head: bytes, i: i64, literal: bytes) -> bool:
    """Whether ``literal`` is in ``head`` at ``i`` (the caller knows ``head`` is long enough)."""
    for j in range(len(literal)):
        if head[i + j] != literal[j]:
            return False
    return True


def request_head(head: bytes) -> list[int] | None:
    """Check a request head (request line and field lines, each ending in CRLF, no blank line) and find its fields.

    The grammar is ``http11.REQUEST_HEAD``'s, matched whole: one of the
    methods the fast path takes, an origin-form target of visible bytes,
    ``HTTP/1.1``; then field lines whose values hold no obs-text.  Returns
    None for a head outside it; else the length of the method, the end of
    the request line, then for each field line the position of its colon and
    the end of the line.
    """
    n: i64 = len(head)
    if n < 16:  # "GET / HTTP/1.1" and CRLF
        return None
    c: i64 = head[0]
    if c == 71:  # G
        k: i64 = 3 if head.startswith(b"GET ") else 0
    elif c == 80:  # P
        if head.startswith(b"POST "):
            k = 4
        elif head.startswith(b"PUT "):
            k = 3
        elif head.startswith(b"PATCH "):
            k = 5
        else:
            k = 0
    elif c == 72:  # H
        k = 4 if head.startswith(b"HEAD ") else 0
    elif c == 68:  # D
        k = 6 if head.startswith(b"DELETE ") else 0
    elif c == 79:  # O
        k = 7 if head.startswith(b"OPTIONS ") else 0
    else:
        k = 0
    if k == 0 or head[k + 1] != 47:  # "/"
        return None
    # The rest of the target: visible bytes, up to the space before the version.
    i: i64 = k + 2
    while True:
        if i >= n:
            return None
        c = head[i]
        if c < 33 or c > 126:
            break
        i += 1
    if i + 11 > n or not _at(head, i, b" HTTP/1.1\r\n"):
        return None
    i += 11
    out = [k, i]
    return _fields(head, i, out, False)
