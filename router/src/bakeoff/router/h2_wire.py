"""A narrow HTTP/2 client connection for the router's h2c upstreams (RFC 9113), in place of ``h2``'s.

The router relays calls to the operator's own services: it opens streams,
sends a request's headers, data and trailers, and reads responses.  ``h2``
runs a general state machine per frame and per stream, builds a frame object
and an event object for each frame, and counts open streams by walking them;
profiles put that machinery at about half of a proxied call's cost on each
side.  This connection does only what the relay needs, with the frames
parsed and built by ``struct`` and each received frame handed straight to a
handler method (no event objects):

- frames: DATA, HEADERS (+ CONTINUATION on receive and send), RST_STREAM,
  SETTINGS (+ ACK), PING (+ ACK), GOAWAY, WINDOW_UPDATE; PRIORITY and unknown
  types are ignored, PUSH_PROMISE is an error (push is disabled);
- flow control both ways: never sends beyond the peer's connection and
  stream windows (SETTINGS_INITIAL_WINDOW_SIZE changes move every open
  stream's window); grants the peer window again only for bytes the router
  acknowledges (``acknowledge_received_data``, called once they went on
  downstream), so a stalled stream holds at most its own window;
- the peer's SETTINGS_MAX_FRAME_SIZE, SETTINGS_HEADER_TABLE_SIZE and
  SETTINGS_MAX_CONCURRENT_STREAMS (``open_outbound_streams`` is the size of
  the stream table, not a walk);
- HPACK by ``hpack`` (the memoising codec of ``h2_tuning``).

The downstream side (hostile clients, h2spec) keeps ``h2``.  Its sender
methods mirror ``h2.H2Connection``'s names so ``h2_downstream.Pipe`` drives
either.  Errors are ``WireError``: a connection error (``stream_id`` 0,
answered with GOAWAY by the caller) or a stream that is gone.
"""

from __future__ import annotations

import struct
from typing import Any, Protocol

from hpack import HPACKError

from bakeoff.router.h2_tuning import CachingDecoder, StaticEncoder

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 0x6, 0x7, 0x8, 0x9

S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS = 0x1, 0x2, 0x3
S_INITIAL_WINDOW_SIZE, S_MAX_FRAME_SIZE, S_MAX_HEADER_LIST_SIZE = 0x4, 0x5, 0x6

DEFAULT_WINDOW = 65535
MAX_WINDOW = 2**31 - 1
MAX_STREAM_ID = 2**31 - 1
# Frames the router accepts are at most the default size: it never advertises a larger SETTINGS_MAX_FRAME_SIZE.
MAX_INBOUND_FRAME = 16384
MAX_HEADER_LIST = 65536

_HEAD = struct.Struct(">HBBBL")  # length (24 bits: 16 + 8), type, flags, stream id (with its reserved bit)
_U32 = struct.Struct(">L")
_SETTING = struct.Struct(">HL")
_GOAWAY = struct.Struct(">LL")


class WireError(Exception):
    """A connection error (stream_id 0: the caller sends GOAWAY with error_code) or a stream's."""

    def __init__(self, error_code: int, message: str, stream_id: int = 0) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.stream_id = stream_id


class Handler(Protocol):
    """What the connection reports, frame by frame (the upstream side of a call implements it)."""

    def h2_response(self, sid: int, headers: list[Any], end: bool) -> None: ...
    def h2_data(self, sid: int, data: bytes) -> None: ...
    def h2_trailers(self, sid: int, headers: list[Any]) -> None: ...
    def h2_end(self, sid: int) -> None: ...
    def h2_reset(self, sid: int, error_code: int) -> None: ...
    def h2_window(self, sid: int) -> None: ...
    def h2_goaway(self, last_stream_id: int, error_code: int) -> None: ...
    def h2_settings(self) -> None: ...


class _Stream:
    __slots__ = ("send_window", "recv_window", "unacked", "responded", "local_closed", "remote_closed")

    def __init__(self, send_window: int) -> None:
        self.send_window = send_window
        self.recv_window = DEFAULT_WINDOW
        self.unacked = 0  # bytes consumed and acknowledged by the router, not yet granted back
        self.responded = False  # a final (non-1xx) response header block arrived
        self.local_closed = False
        self.remote_closed = False


class ClientConnection:
    """One HTTP/2 client connection, sans I/O: ``receive_data`` in, ``data_to_send`` out."""

    def __init__(self, handler: Handler, connection_window: int = DEFAULT_WINDOW) -> None:
        self.handler = handler
        self.streams: dict[int, _Stream] = {}
        self.encoder = StaticEncoder()
        self.decoder = CachingDecoder(MAX_HEADER_LIST)
        self.max_outbound_frame_size = 16384
        self.max_concurrent_streams = 2**32 + 1  # unlimited until the peer's SETTINGS say otherwise (as h2)
        self.peer_initial_window = DEFAULT_WINDOW
        self.send_window = DEFAULT_WINDOW  # the peer's connection window for our DATA
        self.connection_window = connection_window  # what the router grants the peer
        self.recv_window = DEFAULT_WINDOW
        self.unacked = 0
        self.next_stream_id = 1
        self.goaway_received = False
        self.closed = False
        self._out = bytearray()
        self._buf = b""
        self._block: list[bytes] | None = None  # a header block awaiting CONTINUATION
        self._block_sid = 0
        self._block_end = False

    # -- sending -----------------------------------------------------------------------------
    def initiate_connection(self) -> None:
        out = self._out
        out += PREFACE
        settings = _SETTING.pack(S_ENABLE_PUSH, 0) + _SETTING.pack(S_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST)
        self._frame(SETTINGS, 0, 0, settings)
        grant = self.connection_window - DEFAULT_WINDOW
        if grant > 0:
            self._frame(WINDOW_UPDATE, 0, 0, _U32.pack(grant))
            self.recv_window += grant

    def _frame(self, kind: int, flags: int, sid: int, payload: bytes) -> None:
        n = len(payload)
        out = self._out
        out += _HEAD.pack(n >> 8, n & 0xFF, kind, flags, sid)
        out += payload

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        data = bytes(out)
        out.clear()
        return data

    @property
    def open_outbound_streams(self) -> int:
        return len(self.streams)

    def get_next_available_stream_id(self) -> int:
        sid = self.next_stream_id
        if sid > MAX_STREAM_ID:
            raise WireError(PROTOCOL_ERROR, "stream ids exhausted", sid)
        return sid

    def send_headers(self, sid: int, headers: Any, end_stream: bool = False) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            if sid != self.next_stream_id or self.goaway_received or self.closed:
                raise WireError(PROTOCOL_ERROR, f"stream {sid} cannot be opened", sid)
            stream = self.streams[sid] = _Stream(self.peer_initial_window)
            self.next_stream_id = sid + 2
        elif stream.local_closed:
            raise WireError(PROTOCOL_ERROR, f"stream {sid} was ended", sid)
        block = self.encoder.encode(headers)
        flags = END_STREAM if end_stream else 0
        size = self.max_outbound_frame_size
        if len(block) <= size:
            self._frame(HEADERS, flags | END_HEADERS, sid, block)
        else:
            self._frame(HEADERS, flags, sid, block[:size])
            for at in range(size, len(block), size):
                last = at + size >= len(block)
                self._frame(CONTINUATION, END_HEADERS if last else 0, sid, block[at : at + size])
        if end_stream:
            self._local_end(sid, stream)

    def local_flow_control_window(self, sid: int) -> int:
        stream = self.streams.get(sid)
        if stream is None or stream.local_closed:
            raise WireError(PROTOCOL_ERROR, f"stream {sid} is closed", sid)
        return min(stream.send_window, self.send_window)

    def send_data(self, sid: int, data: bytes, end_stream: bool = False) -> None:
        stream = self.streams.get(sid)
        if stream is None or stream.local_closed:
            raise WireError(PROTOCOL_ERROR, f"stream {sid} is closed", sid)
        n = len(data)
        if n > stream.send_window or n > self.send_window or n > self.max_outbound_frame_size:
            raise WireError(FLOW_CONTROL_ERROR, f"{n} bytes exceed the window or frame size", sid)
        stream.send_window -= n
        self.send_window -= n
        self._frame(DATA, END_STREAM if end_stream else 0, sid, data)
        if end_stream:
            self._local_end(sid, stream)

    def end_stream(self, sid: int) -> None:
        self.send_data(sid, b"", end_stream=True)

    def _local_end(self, sid: int, stream: _Stream) -> None:
        stream.local_closed = True
        if stream.remote_closed:
            del self.streams[sid]

    def reset_stream(self, sid: int, error_code: int = CANCEL) -> None:
        if self.streams.pop(sid, None) is not None:
            self._frame(RST_STREAM, 0, sid, _U32.pack(error_code))

    def close_connection(self, error_code: int = NO_ERROR) -> None:
        if not self.closed:
            self.closed = True
            self._frame(GOAWAY, 0, 0, _GOAWAY.pack(0, error_code))  # the server opened no stream of ours

    def acknowledge_received_data(self, n: int, sid: int) -> None:
        """n bytes of stream sid went on: grant them back (in batches of half a window)."""
        self.unacked += n
        if self.unacked >= self.connection_window >> 1:
            self._frame(WINDOW_UPDATE, 0, 0, _U32.pack(self.unacked))
            self.recv_window += self.unacked
            self.unacked = 0
        stream = self.streams.get(sid)
        if stream is not None and not stream.remote_closed:
            stream.unacked += n
            if stream.unacked >= DEFAULT_WINDOW >> 1:
                self._frame(WINDOW_UPDATE, 0, sid, _U32.pack(stream.unacked))
                stream.recv_window += stream.unacked
                stream.unacked = 0

    # -- receiving -----------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Parse whole frames and report them to the handler; raises WireError on a connection error."""
        if self._buf:
            data = self._buf + data
            self._buf = b""
        pos = 0
        end = len(data)
        unpack = _HEAD.unpack_from
        while end - pos >= 9:
            hi, lo, kind, flags, sid = unpack(data, pos)
            n = (hi << 8) | lo
            if n > MAX_INBOUND_FRAME:
                raise WireError(FRAME_SIZE_ERROR, f"a frame of {n} bytes")
            if end - pos - 9 < n:
                break
            start = pos + 9
            pos = start + n
            sid &= MAX_STREAM_ID
            if self._block is not None and kind != CONTINUATION:
                raise WireError(PROTOCOL_ERROR, "a header block was interrupted")
            if kind == DATA:
                self._on_data(sid, flags, data[start:pos], n)
            elif kind == HEADERS:
                self._on_headers(sid, flags, data[start:pos])
            elif kind == CONTINUATION:
                if self._block is None or sid != self._block_sid:
                    raise WireError(PROTOCOL_ERROR, "CONTINUATION without its HEADERS")
                self._block.append(data[start:pos])
                if flags & END_HEADERS:
                    block = b"".join(self._block)
                    self._block = None
                    self._on_block(sid, block, self._block_end)
            elif kind == WINDOW_UPDATE:
                self._on_window_update(sid, data[start:pos])
            elif kind == SETTINGS:
                self._on_settings(sid, flags, data[start:pos])
            elif kind == RST_STREAM:
                if n != 4 or sid == 0:
                    raise WireError(FRAME_SIZE_ERROR if n != 4 else PROTOCOL_ERROR, "bad RST_STREAM")
                if self.streams.pop(sid, None) is not None:
                    self.handler.h2_reset(sid, _U32.unpack_from(data, start)[0])
            elif kind == PING:
                if n != 8 or sid != 0:
                    raise WireError(FRAME_SIZE_ERROR if n != 8 else PROTOCOL_ERROR, "bad PING")
                if not flags & ACK:
                    self._frame(PING, ACK, 0, data[start:pos])
            elif kind == GOAWAY:
                if n < 8 or sid != 0:
                    raise WireError(FRAME_SIZE_ERROR if n < 8 else PROTOCOL_ERROR, "bad GOAWAY")
                last, code = _GOAWAY.unpack_from(data, start)
                self.goaway_received = True
                self.handler.h2_goaway(last & MAX_STREAM_ID, code)
            elif kind == PUSH_PROMISE:
                raise WireError(PROTOCOL_ERROR, "PUSH_PROMISE, but push is disabled")
            elif kind == PRIORITY and (n != 5 or sid == 0):
                raise WireError(PROTOCOL_ERROR if sid == 0 else FRAME_SIZE_ERROR, "bad PRIORITY")
            # PRIORITY otherwise, and unknown frame types: ignored (RFC 9113 sections 5.3.2, 5.5)
        if pos < end:
            self._buf = data[pos:]

    @staticmethod
    def _unpad(flags: int, payload: bytes) -> bytes:
        if flags & PADDED:
            if not payload or payload[0] >= len(payload):
                raise WireError(PROTOCOL_ERROR, "padding longer than the frame")
            return payload[1 : len(payload) - payload[0]]
        return payload

    def _on_data(self, sid: int, flags: int, payload: bytes, n: int) -> None:
        if sid == 0:
            raise WireError(PROTOCOL_ERROR, "DATA on stream 0")
        self.recv_window -= n
        if self.recv_window < 0:
            raise WireError(FLOW_CONTROL_ERROR, "the peer overran the connection window")
        data = self._unpad(flags, payload) if flags & PADDED else payload
        stream = self.streams.get(sid)
        if stream is None or stream.remote_closed or not stream.responded:
            # A stream the router reset (or that ended): its bytes count only against the connection.
            self.acknowledge_received_data(n, 0)
            if stream is not None and not stream.remote_closed:  # DATA before a response: malformed
                self.reset_stream(sid, PROTOCOL_ERROR)
                self.handler.h2_reset(sid, PROTOCOL_ERROR)
            return
        stream.recv_window -= n
        if stream.recv_window < 0:
            raise WireError(FLOW_CONTROL_ERROR, f"the peer overran stream {sid}'s window")
        if n > len(data):  # padding: acknowledged at once, nobody waits for it
            self.acknowledge_received_data(n - len(data), sid)
        if data:
            self.handler.h2_data(sid, data)
        if flags & END_STREAM:
            self._remote_end(sid, stream)
            self.handler.h2_end(sid)

    def _on_headers(self, sid: int, flags: int, payload: bytes) -> None:
        if sid == 0:
            raise WireError(PROTOCOL_ERROR, "HEADERS on stream 0")
        block = self._unpad(flags, payload) if flags & PADDED else payload
        if flags & PRIORITY_FLAG:
            block = block[5:]
        if flags & END_HEADERS:
            self._on_block(sid, block, bool(flags & END_STREAM))
        else:
            self._block = [block]
            self._block_sid = sid
            self._block_end = bool(flags & END_STREAM)

    def _on_block(self, sid: int, block: bytes, end: bool) -> None:
        try:
            headers = self.decoder.decode(block, raw=True)  # always: the decoder's table must follow the peer's
        except HPACKError as e:
            raise WireError(COMPRESSION_ERROR, f"header block: {e}") from None
        stream = self.streams.get(sid)
        if stream is None or stream.remote_closed:
            return  # a stream the router reset: its answer is dropped
        handler = self.handler
        if not stream.responded:
            status = headers[0][1] if headers and headers[0][0] == b":status" else b""
            if len(status) != 3 or not status.isdigit() or _bad_fields(headers, 1):
                self._malformed(sid)
                return
            if status[0] == 0x31:  # 1xx: informational, a final response follows
                if end:
                    self._malformed(sid)
                return
            stream.responded = True
            if end:
                self._remote_end(sid, stream)
            handler.h2_response(sid, headers, end)
        else:
            if not end or _bad_fields(headers, 0):  # a second block is trailers, which end the stream
                self._malformed(sid)
                return
            self._remote_end(sid, stream)
            handler.h2_trailers(sid, headers)
            handler.h2_end(sid)

    def _malformed(self, sid: int) -> None:
        """A malformed response (RFC 9113 section 8.1.1): a stream error, the call fails."""
        self.reset_stream(sid, PROTOCOL_ERROR)
        self.handler.h2_reset(sid, PROTOCOL_ERROR)

    def _remote_end(self, sid: int, stream: _Stream) -> None:
        stream.remote_closed = True
        if stream.local_closed:
            del self.streams[sid]

    def _on_window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise WireError(FRAME_SIZE_ERROR, "bad WINDOW_UPDATE")
        inc = _U32.unpack(payload)[0] & MAX_WINDOW
        if sid == 0:
            if inc == 0:
                raise WireError(PROTOCOL_ERROR, "a WINDOW_UPDATE of 0")
            self.send_window += inc
            if self.send_window > MAX_WINDOW:
                raise WireError(FLOW_CONTROL_ERROR, "the connection window overflowed")
        else:
            stream = self.streams.get(sid)
            if stream is None:
                return
            if inc == 0 or stream.send_window + inc > MAX_WINDOW:
                code = PROTOCOL_ERROR if inc == 0 else FLOW_CONTROL_ERROR
                self.reset_stream(sid, code)
                self.handler.h2_reset(sid, code)
                return
            stream.send_window += inc
        self.handler.h2_window(sid)

    def _on_settings(self, sid: int, flags: int, payload: bytes) -> None:
        if sid != 0:
            raise WireError(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            if payload:
                raise WireError(FRAME_SIZE_ERROR, "a SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise WireError(FRAME_SIZE_ERROR, "bad SETTINGS")
        for at in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, at)
            if key == S_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise WireError(FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE too large")
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
                    if stream.send_window > MAX_WINDOW:
                        raise WireError(FLOW_CONTROL_ERROR, "a stream window overflowed")
            elif key == S_MAX_FRAME_SIZE:
                if not 16384 <= value <= 16777215:
                    raise WireError(PROTOCOL_ERROR, "bad SETTINGS_MAX_FRAME_SIZE")
                self.max_outbound_frame_size = value
            elif key == S_MAX_CONCURRENT_STREAMS:
                self.max_concurrent_streams = value
            elif key == S_HEADER_TABLE_SIZE:
                self.encoder.header_table_size = value
            elif key == S_ENABLE_PUSH and value > 1:
                raise WireError(PROTOCOL_ERROR, "bad SETTINGS_ENABLE_PUSH")
        self._frame(SETTINGS, ACK, 0, b"")
        self.handler.h2_settings()


def _bad_fields(headers: list[Any], start: int) -> bool:
    """A pseudo-header past the first field (or in trailers), or a connection-specific field (RFC 9113 8.2.2)."""
    for i in range(start, len(headers)):
        name = headers[i][0]
        if name[:1] == b":" or name == b"connection":
            return True
    return False
