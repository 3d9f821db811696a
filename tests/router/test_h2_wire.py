"""The router's HTTP/2 client connection (bakeoff.router.h2_wire) against h2's server side, in memory.

h2 (a conformant implementation) plays the variant: what the router's
client sends must parse there, and what h2 sends (flow control, CONTINUATION,
SETTINGS, PING, GOAWAY, RST_STREAM) must be read correctly.  The end-to-end
cases through a real router and grpcio are in test_http2.py.
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

from bakeoff.router.h2_downstream import Pipe
from bakeoff.router.h2_wire import CANCEL, ClientConnection, WireError


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.other: list[tuple] = []  # window and settings reports

    def h2_response(self, sid, headers, end):
        self.events.append(("response", sid, [tuple(h) for h in headers], end))

    def h2_data(self, sid, data):
        self.events.append(("data", sid, data))

    def h2_trailers(self, sid, headers):
        self.events.append(("trailers", sid, [tuple(h) for h in headers]))

    def h2_end(self, sid):
        self.events.append(("end", sid))

    def h2_reset(self, sid, code):
        self.events.append(("reset", sid, code))

    def h2_window(self, sid):
        self.other.append(("window", sid))

    def h2_goaway(self, last, code):
        self.events.append(("goaway", last, code))

    def h2_settings(self):
        self.other.append(("settings",))

    def data(self, sid) -> bytes:
        return b"".join(e[2] for e in self.events if e[0] == "data" and e[1] == sid)


REQUEST = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/t.S/M"), (b":authority", b"x")]


class Pair:
    """A router client connection and an h2 server connection wired back to back."""

    def __init__(self, window: int = 1 << 24) -> None:
        self.rec = Recorder()
        self.client = ClientConnection(self.rec, window)
        self.server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.server.initiate_connection()
        self.server_events: list = []
        self.client.initiate_connection()
        self.pump()

    def pump(self) -> None:
        """Move bytes both ways until neither side has anything to say."""
        for _ in range(1000):
            a = self.client.data_to_send()
            if a:
                self.server_events += self.server.receive_data(a)
            b = self.server.data_to_send()
            if b:
                self.client.receive_data(b)
            if not a and not b:
                return
        raise AssertionError("the two sides never went quiet")

    def request(self, end: bool = True) -> int:
        sid = self.client.get_next_available_stream_id()
        self.client.send_headers(sid, REQUEST, end_stream=end)
        self.pump()
        return sid


def test_a_call_and_its_trailers():
    p = Pair()
    sid = p.request()
    req = next(e for e in p.server_events if isinstance(e, h2.events.RequestReceived))
    assert [tuple(h) for h in req.headers] == REQUEST
    p.server.send_headers(sid, [(b":status", b"200"), (b"content-type", b"application/grpc")])
    p.server.send_data(sid, b"\x00\x00\x00\x00\x02hi")
    p.server.send_headers(sid, [(b"grpc-status", b"0")], end_stream=True)
    p.pump()
    assert p.rec.events == [
        ("response", sid, [(b":status", b"200"), (b"content-type", b"application/grpc")], False),
        ("data", sid, b"\x00\x00\x00\x00\x02hi"),
        ("trailers", sid, [(b"grpc-status", b"0")]),
        ("end", sid),
    ]
    assert p.client.streams == {}  # both ends closed: the stream left the table


def test_a_response_larger_than_the_initial_window_flows_as_it_is_acknowledged():
    p = Pair()
    sid = p.request()
    body = bytes(range(256)) * 1024  # 256 KiB, four stream windows
    p.server.send_headers(sid, [(b":status", b"200")])
    sent = 0
    for _ in range(100):
        room = min(p.server.local_flow_control_window(sid), p.server.max_outbound_frame_size)
        chunk = body[sent : sent + room]
        if chunk:
            p.server.send_data(sid, chunk, end_stream=sent + len(chunk) == len(body))
            sent += len(chunk)
        got_before = len(p.rec.data(sid))
        p.pump()
        p.client.acknowledge_received_data(len(p.rec.data(sid)) - got_before, sid)  # went on downstream
        p.pump()
        if sent == len(body):
            break
    assert sent == len(body)
    assert p.rec.data(sid) == body
    assert p.rec.events[-1] == ("end", sid)


def test_an_unacknowledged_stream_holds_only_its_own_window():
    p = Pair()
    slow, fast = p.request(), p.request()
    for sid in (slow, fast):
        p.server.send_headers(sid, [(b":status", b"200")])
    for n in (16384, 16384, 16384, 16383):  # the whole stream window, never acknowledged
        p.server.send_data(slow, b"s" * n)
    p.pump()
    assert p.server.local_flow_control_window(slow) == 0
    for _ in range(8):  # the other stream moves 8 windows meanwhile
        p.server.send_data(fast, b"f" * 16384)
        p.pump()
        p.client.acknowledge_received_data(16384, fast)
        p.pump()
    assert len(p.rec.data(fast)) == 8 * 16384
    assert p.server.local_flow_control_window(slow) == 0
    assert p.server.local_flow_control_window(fast) > 0


def test_request_bodies_never_exceed_the_peers_windows():
    p = Pair()
    p.server.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    p.pump()
    sid = p.request(end=False)
    pipe = Pipe(lambda n: None)
    pipe.push(b"a" * 5000)
    pipe.end = True
    assert pipe.pump(p.client, sid) is False
    p.pump()
    got = [e for e in p.server_events if isinstance(e, h2.events.DataReceived)]
    assert sum(len(e.data) for e in got) == 1000  # the stream window, not more
    for e in got:
        p.server.acknowledge_received_data(e.flow_controlled_length, sid)
    p.server.increment_flow_control_window(4000, sid)
    p.pump()
    assert pipe.pump(p.client, sid) is True
    p.pump()
    data = b"".join(e.data for e in p.server_events if isinstance(e, h2.events.DataReceived))
    assert data == b"a" * 5000
    assert any(isinstance(e, h2.events.StreamEnded) for e in p.server_events)


def test_settings_are_applied_and_acknowledged_and_pings_answered():
    p = Pair()
    p.server.update_settings(
        {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 3, h2.settings.SettingCodes.MAX_FRAME_SIZE: 20000}
    )
    p.server.ping(b"12345678")
    p.pump()
    assert p.client.max_concurrent_streams == 3
    assert p.client.max_outbound_frame_size == 20000
    assert any(isinstance(e, h2.events.SettingsAcknowledged) for e in p.server_events)
    ack = [e for e in p.server_events if isinstance(e, h2.events.PingAckReceived)]
    assert [e.ping_data for e in ack] == [b"12345678"]


def test_a_header_block_in_continuation_frames_both_ways():
    p = Pair()
    big = [(b"x-big-%d" % i, b"v" * 1000) for i in range(40)]  # about 40 KB: HEADERS + CONTINUATION
    sid = p.client.get_next_available_stream_id()
    p.client.send_headers(sid, REQUEST + big, end_stream=True)
    p.pump()
    req = next(e for e in p.server_events if isinstance(e, h2.events.RequestReceived))
    assert [tuple(h) for h in req.headers] == REQUEST + big
    p.server.send_headers(sid, [(b":status", b"200"), *big], end_stream=True)
    p.pump()
    assert p.rec.events == [("response", sid, [(b":status", b"200"), *big], True)]


def test_goaway_refuses_new_streams_and_names_the_last_one_processed():
    p = Pair()
    first, second = p.request(), p.request()
    p.server.close_connection(last_stream_id=first)
    p.pump()
    assert ("goaway", first, 0) in p.rec.events
    with pytest.raises(WireError):
        p.client.send_headers(p.client.get_next_available_stream_id(), REQUEST, end_stream=True)
    assert second > first


def test_resets_both_ways():
    p = Pair()
    a, b = p.request(), p.request(end=False)
    p.server.reset_stream(a, 0x2)
    p.pump()
    assert ("reset", a, 0x2) in p.rec.events
    p.client.reset_stream(b, CANCEL)
    p.pump()
    reset = [e for e in p.server_events if isinstance(e, h2.events.StreamReset)]
    assert [(e.stream_id, e.error_code) for e in reset] == [(b, CANCEL)]
    assert p.client.streams == {}


def test_a_flow_control_violation_is_a_connection_error():
    p = Pair(window=65535)
    sid = p.request()
    p.server.send_headers(sid, [(b":status", b"200")])
    p.pump()
    head = (70000).to_bytes(3, "big")  # larger than any frame the router accepts
    with pytest.raises(WireError) as e:
        p.client.receive_data(head + b"\x00\x00" + sid.to_bytes(4, "big") + b"x" * 10)
    assert e.value.error_code == 0x6  # FRAME_SIZE_ERROR


def test_stream_ids_run_out():
    p = Pair()
    p.client.next_stream_id = 2**31 - 1  # the last odd id
    last = p.request()
    assert last == 2**31 - 1
    with pytest.raises(WireError):
        p.client.get_next_available_stream_id()


def test_a_larger_initial_window_moves_open_streams_windows():
    p = Pair()
    sid = p.request(end=False)
    assert p.client.local_flow_control_window(sid) == 65535
    p.server.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100000})
    p.server.increment_flow_control_window(1 << 20)  # the connection's window, so the stream's is the bound
    p.pump()
    assert p.client.local_flow_control_window(sid) == 100000
    assert ("settings",) in p.rec.other
