"""X-Request-Id lines (http11.request_id_line): the process's prefix and a count in lower-case hex, no gaps."""

from __future__ import annotations

import re

from bakeoff.router.http11 import request_id_line

LINE = re.compile(rb"X-Request-Id: ([0-9a-f]{8})-([1-9a-f][0-9a-f]*)\r\n")


def test_ids_count_up_by_one_in_plain_hex_across_the_digit_boundaries() -> None:
    m = LINE.fullmatch(request_id_line())
    assert m is not None
    prefix, first = m.group(1), int(m.group(2), 16)
    for n in range(first + 1, first + 70_000):  # past 0x100 and 0x10000 whatever earlier tests used
        assert request_id_line() == b"X-Request-Id: %s-%x\r\n" % (prefix, n)
