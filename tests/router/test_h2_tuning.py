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


def test_caching_decoder_matches_hpack_on_a_churning_table(monkeypatch):
    """Differential: a peer's indexing encoder with a small table (entries evicted, indexes reused), blocks
    repeating; the caching decoder answers every block as hpack's decoder does, and serves many from memory."""
    import random

    from bakeoff.router.h2_tuning import CachingDecoder

    rnd = random.Random(7)
    pool = [(b"x-a", b"1"), (b"x-a", b"2"), (b"x-b", b"long-value-" * 3), (b"content-type", b"application/grpc")]
    pool += [(b":status", b"200"), (b"x-c", b"3"), (b"user-agent", b"grpc-python")]
    enc = hpack.Encoder()
    enc.header_table_size = 160  # a few entries: insertions evict
    plain, cached = hpack.Decoder(), CachingDecoder()
    for d in (plain, cached):
        d.header_table_size = 160
    decoded = []
    real = hpack.Decoder.decode
    monkeypatch.setattr(
        hpack.Decoder, "decode", lambda self, data, raw=False: decoded.append(1) or real(self, data, raw)
    )
    n = 3000
    for i in range(n):
        headers = rnd.sample(pool, rnd.randint(1, 4))
        if rnd.random() < 0.1:
            headers.append(hpack.NeverIndexedHeaderTuple(b"authorization", b"t%d" % rnd.randint(0, 3)))
        block = enc.encode(headers)
        got = cached.decode(block, raw=True)
        want = real(plain, block, raw=True)
        assert got == want == [tuple(h) for h in headers], i
        assert [type(h) for h in got] == [type(h) for h in want], i
        assert list(cached.header_table.dynamic_entries) == list(plain.header_table.dynamic_entries), i
    hits = n - len(decoded)
    assert hits > 0  # a churning table: most blocks read entries that have changed since
    # Then steady traffic: the same call again and again, its fields indexed once, referred to after.
    decoded.clear()
    steady = [(b":status", b"200"), (b"content-type", b"application/grpc"), (b"x-b", b"long-value-" * 3)]
    for _ in range(100):
        block = enc.encode(steady)
        assert cached.decode(block, raw=True) == real(plain, block, raw=True) == steady
    print(f"caching decoder: {hits} of {n} churning blocks, {100 - len(decoded)} of 100 steady ones from memory")
    assert len(decoded) <= 3, len(decoded)


def test_static_encoder_round_trips_and_inserts_nothing():
    from bakeoff.router.h2_tuning import _FIELD_CACHE, StaticEncoder

    enc = StaticEncoder()
    dec = hpack.Decoder()
    headers = [
        (b":status", b"200"),  # static table entry: one byte
        (b"content-type", b"application/grpc"),  # static name, literal value
        (b"x-request-id", b"abc-123"),  # literal name and value
        hpack.NeverIndexedHeaderTuple(b"authorization", b"secret"),
        (b"x-bin", bytes(range(256))),  # Huffman would be longer: sent plain
    ]
    first = enc.encode(headers)
    assert enc.encode(headers) == first  # the same bytes every time
    got = dec.decode(first, raw=True)
    assert got == [tuple(h) for h in headers]
    assert isinstance(got[3], hpack.NeverIndexedHeaderTuple)
    assert not dec.header_table.dynamic_entries
    assert first[:1] == b"\x88"  # :status 200 is static index 8
    # A per-call field: its value sent as it is (not Huffman-coded), and not remembered.
    assert b"\x07abc-123" in first
    assert all(k[0] != b"x-request-id" for k in _FIELD_CACHE)
    enc.header_table_size = 0  # the peer shrank its table: signalled at the start of the next block
    block = enc.encode(headers[:1])
    assert block == b"\x20\x88"
    assert dec.decode(block, raw=True) == [(b":status", b"200")]


def test_a_remembered_blocks_insertions_are_replayed_as_hpack_would_make_them():
    """nginx's way: the same literals with incremental indexing every call; evictions, and an entry too big."""
    from bakeoff.router.h2_tuning import CachingDecoder

    fields = [(b"server", b"nginx"), (b"x-long", b"v" * 70), (b"content-type", b"application/grpc")]
    block = hpack.Encoder().encode(fields)  # a fresh encoder: every field a literal with incremental indexing
    huge = hpack.Encoder().encode([(b"x-huge", b"h" * 200)])  # larger than the table: empties it
    plain, cached = hpack.Decoder(), CachingDecoder()
    for d in (plain, cached):
        d.header_table_size = 160
    for i in range(40):
        b = huge if i % 7 == 6 else block
        assert cached.decode(b, raw=True) == plain.decode(b, raw=True), i
        assert list(cached.header_table.dynamic_entries) == list(plain.header_table.dynamic_entries), i
        assert cached.header_table._current_size == plain.header_table._current_size, i
    assert cached._blocks  # the blocks were remembered, so most of the above were replays
