"""router/h2_tuning.py: the memoised Huffman decoder gives hpack's answers, errors included."""

from __future__ import annotations

import hpack
import pytest
from hpack.exceptions import HPACKDecodingError
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.huffman_table import decode_huffman

from bakeoff.router.h2_tuning import cached_huffman, tune_hpack


def test_cached_huffman_matches_hpack_and_remembers_nothing_bad():
    enc = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
    dec = cached_huffman(decode_huffman)
    for value in (b"nginx/1.22.1", b"application/grpc", b"", b"x" * 300):
        coded = enc.encode(value)
        assert dec(coded) == value == decode_huffman(coded)
        assert dec(coded) == value  # the second time from the cache (short values)
    assert enc.encode(b"x" * 300) not in dec.cache  # too long to remember
    with pytest.raises(HPACKDecodingError):
        dec(b"\xff\xff\xff\xff")  # an EOS code inside the string
    assert b"\xff\xff\xff\xff" not in dec.cache


def test_tuned_hpack_round_trips_headers():
    tune_hpack()
    tune_hpack()  # idempotent
    headers = [(b":status", b"200"), (b"server", b"nginx"), (b"grpc-status", b"0"), (b"x-id", b"\xe2\x82\xac")]
    e, d = hpack.Encoder(), hpack.Decoder()
    for _ in range(3):
        assert d.decode(e.encode(headers), raw=True) == headers
