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


def _server_and_client():
    """An h2 server connection (tuned as the router's) and an h2 client, each request stream opened, in memory."""
    from h2.config import H2Configuration
    from h2.connection import H2Connection

    from bakeoff.router.h2_tuning import fast_codec

    tune_hpack()
    server = H2Connection(
        H2Configuration(client_side=False, header_encoding=None, validate_outbound_headers=False,
                        normalize_outbound_headers=False)
    )  # fmt: skip
    fast_codec(server)
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    for sid in (1, 3, 5):
        client.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/a.B/C"),
                                  (b":authority", b"x"), (b"te", b"trailers")], end_stream=sid != 5)  # fmt: skip
    server.receive_data(client.data_to_send())
    server.data_to_send()
    return server, client


def _exchange(send_on, sid: int) -> None:
    send_on.send_headers(sid, [(b":status", b"200"), (b"content-type", b"application/grpc")])
    send_on.send_data(sid, b"\x00\x00\x00\x00\x02hi")
    send_on.send_headers(sid, [(b"grpc-status", b"0")], end_stream=True)


def test_response_sender_writes_what_h2_writes_and_moves_the_same_state():
    """ResponseSender's frames are h2's own bytes, and it leaves streams, windows and the state machine as h2 does."""
    from h2.events import DataReceived, ResponseReceived, StreamEnded, TrailersReceived

    from bakeoff.router.h2_tuning import ResponseSender

    plain, _ = _server_and_client()
    fast_conn, client = _server_and_client()
    fast = ResponseSender(fast_conn)
    for sid in (1, 3, 5):
        _exchange(plain, sid)
        _exchange(fast, sid)
    wire = fast_conn.data_to_send()
    assert wire == plain.data_to_send()
    for sid in (1, 3, 5):
        a, b = plain.streams[sid], fast_conn.streams[sid]
        assert a.state_machine.state == b.state_machine.state
        assert (a.state_machine.headers_sent, a.state_machine.trailers_sent) == (True, True)
        assert (b.state_machine.headers_sent, b.state_machine.trailers_sent) == (True, True)
        assert a.outbound_flow_control_window == b.outbound_flow_control_window
        assert a.request_method == b.request_method
    assert plain.outbound_flow_control_window == fast_conn.outbound_flow_control_window
    kinds = [type(e) for e in client.receive_data(wire)]
    assert kinds.count(ResponseReceived) == kinds.count(TrailersReceived) == kinds.count(StreamEnded) == 3
    assert kinds.count(DataReceived) == 3


def test_response_sender_leaves_the_rare_cases_to_h2():
    """Informational responses, CONTINUATION-sized blocks, DATA beyond the window, closed streams: h2's behaviour."""
    from h2.exceptions import FlowControlError, ProtocolError, StreamClosedError

    from bakeoff.router.h2_tuning import ResponseSender

    plain, _ = _server_and_client()
    fast_conn, _ = _server_and_client()
    fast = ResponseSender(fast_conn)
    big = [(b":status", b"200"), (b"x-big", b"v" * 20000)]  # beyond the 16 KiB frame size: CONTINUATION
    for conn in (plain, fast):
        conn.send_headers(1, [(b":status", b"103"), (b"link", b"</a>")])
        conn.send_headers(1, big)
        with pytest.raises(FlowControlError):
            conn.send_data(1, b"x" * 70000)  # beyond the stream window
        conn.send_headers(3, [(b":status", b"200")], end_stream=True)
        with pytest.raises(StreamClosedError):
            conn.send_headers(3, [(b"grpc-status", b"0")], end_stream=True)  # the stream is closed
        with pytest.raises(ProtocolError):
            conn.send_headers(5, [(b":status", b"100")], end_stream=True)  # END_STREAM on an informational
    assert fast_conn.data_to_send() == plain.data_to_send()
    assert fast.max_outbound_frame_size == fast_conn.max_outbound_frame_size
    assert fast.local_flow_control_window(1) == plain.local_flow_control_window(1)


def test_set_flags_refuses_flags_the_frame_does_not_define():
    from hyperframe.frame import DataFrame, HeadersFrame

    tune_hpack()
    f = HeadersFrame(1, flags=["END_STREAM"])
    f.flags.add("END_HEADERS")
    assert "END_STREAM" in f.flags and "END_HEADERS" in f.flags and "PADDED" not in f.flags
    with pytest.raises(ValueError, match="Unexpected flag"):
        DataFrame(1).flags.add("END_HEADERS")
    parsed, _ = HeadersFrame.parse_frame_header(memoryview(f.serialize()[:9]))
    assert set(parsed.flags) == {"END_STREAM", "END_HEADERS"}


def test_remembered_blocks_keep_never_indexed_fields_apart():
    """A block equal to a remembered one but with a never-indexed field encodes that field never indexed."""
    from hpack import NeverIndexedHeaderTuple

    from bakeoff.router.h2_tuning import StaticEncoder

    enc = StaticEncoder()
    enc.remember_blocks = True
    plain = [(b":status", b"200"), (b"authorization", b"secret")]
    hidden = [(b":status", b"200"), NeverIndexedHeaderTuple(b"authorization", b"secret")]
    assert hidden == plain  # equal as tuples: the block memo must not confuse them
    first = enc.encode(plain)
    assert enc.encode(plain) == first
    sensitive = enc.encode(hidden)
    assert sensitive != first
    decoded = hpack.Decoder().decode(sensitive, raw=True)
    assert decoded == hidden and not decoded[1].indexable
    per_call = [(b":status", b"200"), (b"x-request-id", b"abc")]
    assert hpack.Decoder().decode(enc.encode(per_call), raw=True) == per_call
