"""HPACK through a real `bakeoff router` process: header blocks cached, never wrong.

The router remembers decoded header blocks and encodes fields without the
dynamic table (router/h2_tuning.py).  These tests drive it with a raw HTTP/2
client that writes its header blocks byte by byte (so the same bytes can
mean different fields as its dynamic table changes) and a raw h2c upstream
(the h2 library over a socket) that records what arrives.
"""

from __future__ import annotations

import socket

import h2.config
import h2.connection
import h2.events
import pytest
from hpack import NeverIndexedHeaderTuple
from hyperframe.frame import DataFrame, Frame, HeadersFrame, SettingsFrame

from tests.router.conftest import RouterProcess, accept_in_threads

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class H2cUpstream:
    """A raw h2c server: answers every request 200 with a fixed body, records each request's headers."""

    def __init__(self) -> None:
        self.requests: list[list[tuple[bytes, bytes]]] = []
        self.decoders: list[object] = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        accept_in_threads(self.sock, self._serve)

    def _serve(self, sock: socket.socket, _number: int) -> None:
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.decoders.append(c.decoder)
        c.initiate_connection()
        sock.sendall(c.data_to_send())
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            for ev in c.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    self.requests.append(list(ev.headers))
                    c.send_headers(ev.stream_id, [(b":status", b"200"), (b"x-up", b"same")])
                    c.send_data(ev.stream_id, b"ok", end_stream=True)
            sock.sendall(c.data_to_send())

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def h2c_upstream():
    u = H2cUpstream()
    yield u
    u.close()


def _literal(name: bytes, value: bytes, kind: int) -> bytes:
    """A literal field with a literal name (RFC 7541 6.2): kind 0x40 incremental indexing, 0x10 never indexed."""
    assert len(name) < 127 and len(value) < 127
    return bytes([kind, len(name)]) + name + bytes([len(value)]) + value


# :method GET, :scheme http, :path / (static indexes 2, 6, 4), :authority x (literal, static name 1)
BASE = b"\x82\x86\x84\x01\x01x"


class RawBlocks:
    """An HTTP/2 client writing its own header blocks (and ignoring what it is sent but the stream ends)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.sock.sendall(PREFACE + SettingsFrame(0).serialize())
        self.buf = b""
        self.sid = 1

    def call(self, block: bytes) -> list[bytes]:
        """Send one GET with this header block; the HEADERS payloads and body of its answer."""
        sid, self.sid = self.sid, self.sid + 2
        f = HeadersFrame(sid, data=block)
        f.flags.add("END_HEADERS")
        f.flags.add("END_STREAM")
        self.sock.sendall(f.serialize())
        got: list[bytes] = []
        while True:
            while len(self.buf) < 9:
                self._read()
            frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
            while len(self.buf) < 9 + length:
                self._read()
            frame.parse_body(memoryview(self.buf[9 : 9 + length]))
            self.buf = self.buf[9 + length :]
            if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                self.sock.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
            if frame.stream_id == sid and isinstance(frame, HeadersFrame | DataFrame):
                got.append(bytes(frame.data))
                if "END_STREAM" in frame.flags:
                    return got

    def _read(self) -> None:
        data = self.sock.recv(65536)
        assert data, "the router closed the connection"
        self.buf += data

    def close(self) -> None:
        self.sock.close()


def test_same_block_bytes_follow_the_dynamic_table(tmp_path, h2c_upstream):
    """One block's bytes mean what the client's dynamic table says at the time, cached or not.

    Block A inserts ``x-v: one`` into the router's decoding table (literal
    with incremental indexing; nginx sends its fields so on every call), A2
    inserts ``x-v: two``; block B is "the newest entry" (index 62).  B after
    A must be ``one``, B after A2 ``two``: the same bytes, other fields.  A
    repeated (a remembered block whose insertion is replayed) must insert
    again, or the B after it would read ``two``.  A never-indexed field stays
    never indexed on its way upstream.
    """
    router = RouterProcess(
        tmp_path, {"variants": [{"name": "a", "upstreams": [f"127.0.0.1:{h2c_upstream.port}"], "protocol": "h2c"}]}
    ).start()
    try:
        a = BASE + _literal(b"x-v", b"one", 0x40)
        a2 = BASE + _literal(b"x-v", b"two", 0x40)
        b = BASE + b"\xbe"
        secret = BASE + _literal(b"authorization", b"s3cret", 0x10)
        client = RawBlocks(router.port)
        sequence = [a, b, b, a2, b, b, a, b, a2, a2, b, a, b, secret, secret]
        for block in sequence:
            client.call(block)
        client.close()
        seen = [dict(h).get(b"x-v") for h in h2c_upstream.requests]
        one, two = b"one", b"two"
        assert seen == [one, one, one, two, two, two, one, one, two, two, two, one, one, None, None], seen
        for h in h2c_upstream.requests[-2:]:
            auth = [f for f in h if f[0] == b"authorization"]
            assert auth == [(b"authorization", b"s3cret")]
            assert isinstance(auth[0], NeverIndexedHeaderTuple), "a never-indexed field lost its flag"
        print(f"x-v seen upstream per call: {[v.decode() if v else None for v in seen]}")
    finally:
        router.stop()


def test_header_blocks_repeat_call_after_call(tmp_path, h2c_upstream):
    """The router's header blocks use no dynamic table: the same answer is the same bytes every call.

    Downstream, the response header block of every call is byte-identical
    (hpack's encoder indexed each new field, so the first call's block
    differed from the next); upstream, the router's requests add nothing to
    the upstream's decoding table (hpack's encoder added the request fields,
    x-request-id among them, one new entry per call).
    """
    router = RouterProcess(
        tmp_path, {"variants": [{"name": "a", "upstreams": [f"127.0.0.1:{h2c_upstream.port}"], "protocol": "h2c"}]}
    ).start()
    try:
        client = RawBlocks(router.port)
        blocks = [
            client.call(BASE + b"\x5f\x03abc")[0] for _ in range(20)
        ]  # content-type: abc (static name 31, indexed)
        client.close()
        distinct = len(set(blocks))
        table = [len(d.header_table.dynamic_entries) for d in h2c_upstream.decoders]  # type: ignore[attr-defined]
        print(
            f"distinct response header blocks over 20 calls: {distinct} ({len(blocks[0])} bytes); upstream table entries: {table}"
        )
        assert all(dict(h).get(b"content-type") == b"abc" for h in h2c_upstream.requests)
        assert distinct == 1, blocks[:3]
        assert table == [0] * len(table), table
    finally:
        router.stop()
