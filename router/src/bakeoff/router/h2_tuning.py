"""Cheaper HTTP/2 for the router: what ``h2`` and ``hpack`` spend per call for nothing, or again and again.

The sans-IO ``h2`` and ``hpack`` libraries are pure Python.  Profiles of the
router under h2load (docs/benchmarks.md) found costs that buy the router
nothing; ``tune_hpack()`` (called once, on import of the HTTP/2 modules)
removes them without changing what is decoded, validated or sent:

- **debug logging**: ``hpack`` calls ``logging.Logger.debug`` about 90 times
  per proxied call (per integer, per header, per block), each a disabled
  logger's level check; its module logger is replaced by one whose ``debug``
  does nothing (its other levels are the real logger's).  ``h2`` formats
  ``repr(frame)`` for its no-op logger on every frame received: that repr is
  now only computed if a logger formats it.
- **Huffman decoding**: a peer Huffman-codes each literal header value, and
  ``hpack`` decodes it bit by bit in Python; a server that does not index its
  response headers (nginx, for one) sends the same literals on every call
  (``server``, ``content-type``, ``grpc-status``...).  Decoding is a pure
  function of the bytes, so results are remembered in a bounded dict
  (``HUFFMAN_CACHE_ENTRIES`` values of at most ``HUFFMAN_CACHE_MAX_BYTES``
  bytes, cleared when full): a repeated value costs one dict lookup.
- **header blocks that recur** (the same request and response blocks call
  after call): ``fast_codec()`` gives each connection a decoder remembering
  recent blocks with what they did to the dynamic table
  (``CachingDecoder``) and an encoder that never inserts into the peer's
  table, so each field's bytes are a pure function of the field, memoised
  (``StaticEncoder``); h2's normalisation and validation of a received
  header list is memoised on the list (``cached_received_headers``), and its
  re-encoding of header lists that are bytes already is skipped
  (``bytes_headers_as_they_are``).

HPACK is RFC 7541; the representations used are its sections 6.1 (indexed
field), 6.2.2 (literal without indexing) and 6.2.3 (never indexed).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import Any

from h2.connection import ConnectionState, H2Connection
from h2.stream import StreamInputs, StreamState
from hpack import HeaderTuple
from hpack.hpack import DEFAULT_MAX_HEADER_LIST_SIZE, Decoder, Encoder, _to_bytes, encode_integer
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.table import HeaderTable

HUFFMAN_CACHE_ENTRIES = 4096
HUFFMAN_CACHE_MAX_BYTES = 256
FIELD_CACHE_ENTRIES = 4096
FIELD_CACHE_MAX_BYTES = 512
DECODE_CACHE_ENTRIES = 16
DECODE_CACHE_MAX_BYTES = 1024
PROCESSED_CACHE_ENTRIES = 1024

_HUFFMAN = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
_FIELD_CACHE: dict[tuple[Any, ...], bytes] = {}
_NAME_CACHE: dict[bytes, bytes] = {}
BLOCK_CACHE_ENTRIES = 1024
_BLOCK_CACHE: dict[tuple[Any, ...], bytes] = {}

_tuned = False
# Fields whose value is new on every call (the router sets them): not memoised, which would only churn the
# cache, and not Huffman-coded, which would cost more CPU per call than the few bytes it saves.
PER_CALL_FIELDS = frozenset((b"x-request-id", b"traceparent"))


class _QuietLogger:
    """A logger whose debug() does nothing; everything else is the wrapped logger's."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def debug(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)


class _LazyRepr:
    """``repr(x)`` computed only if it is formatted: h2 passes ``repr(frame)`` to its (no-op) logger per frame."""

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __str__(self) -> str:
        return repr(self.obj)

    __repr__ = __str__


class SetFlags(set[str]):
    """hyperframe's ``Flags`` as a ``set`` subclass: membership tests and iteration in C.

    hyperframe's ``Flags`` is a ``MutableSet`` written in Python: each frame
    built or parsed makes one (with a set of its valid names), and h2 tests it
    with ``in`` several times per frame, each a Python call.  This one keeps
    its one rule -- ``add`` refuses a flag the frame type does not define
    (ValueError) -- with the valid names remembered per frame type.
    """

    __slots__ = ("_valid_flags",)
    _valid: dict[int, tuple[Any, frozenset[str]]] = {}

    def __init__(self, defined_flags: Any) -> None:
        hit = SetFlags._valid.get(id(defined_flags))
        if hit is None or hit[0] is not defined_flags:
            valid = frozenset(flag.name for flag in defined_flags)
            if isinstance(defined_flags, list):  # a frame class's own list, alive as long as the class
                SetFlags._valid[id(defined_flags)] = (defined_flags, valid)
        else:
            valid = hit[1]
        self._valid_flags = valid

    def add(self, value: str) -> None:
        if value not in self._valid_flags:
            msg = f"Unexpected flag: {value}. Valid flags are: {set(self._valid_flags)}"
            raise ValueError(msg)
        set.add(self, value)

    def __repr__(self) -> str:
        return repr(sorted(self))


def bytes_headers_as_they_are(encode: Callable[[Any], list[Any]]) -> Callable[[Any], list[Any]]:
    """h2's ``utf8_encode_headers`` (run on every header list sent) without rebuilding lists that are bytes already.

    h2 rebuilds each field as a new tuple of UTF-8 bytes; the router's fields
    are bytes two-tuples (or hpack's ``HeaderTuple``) already, which it would
    rebuild unchanged.  Anything else goes to h2's function as before.
    """

    def utf8_encode_headers(headers: Any) -> list[Any]:
        out = list(headers)
        for h in out:
            if len(h) != 2 or type(h[0]) is not bytes or type(h[1]) is not bytes:
                return encode(out)
        return out

    return utf8_encode_headers


def cached_huffman(decode: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    """``decode`` (hpack's Huffman decoder) remembering its results for short inputs."""
    cache: dict[bytes, bytes] = {}

    def decode_huffman(data: bytes) -> bytes:
        try:
            return cache[data]
        except KeyError:
            pass
        except TypeError:  # a bytearray or memoryview: not hashable, decode as it is
            return decode(data)
        out = decode(data)  # raises HPACKDecodingError for a bad code: nothing is remembered
        if len(data) <= HUFFMAN_CACHE_MAX_BYTES:
            if len(cache) >= HUFFMAN_CACHE_ENTRIES:
                cache.clear()
            cache[data] = out
        return out

    decode_huffman.cache = cache  # type: ignore[attr-defined]
    return decode_huffman


def tune_hpack() -> None:
    """Apply the changes above to the imported ``hpack`` (once per process)."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    import hpack.hpack as hp

    if not isinstance(hp.log, _QuietLogger):
        hp.log = _QuietLogger(hp.log)  # type: ignore[assignment]
    hp.decode_huffman = cached_huffman(hp.decode_huffman)  # type: ignore[assignment]
    import h2.connection
    import h2.stream
    import hyperframe.frame
    from h2.stream import H2Stream

    hyperframe.frame.Flags = SetFlags  # type: ignore[assignment,misc]
    h2.connection.repr = _LazyRepr  # type: ignore[attr-defined]
    h2.stream.utf8_encode_headers = bytes_headers_as_they_are(h2.stream.utf8_encode_headers)  # type: ignore[assignment]
    H2Stream._process_received_headers = cached_received_headers(  # type: ignore[method-assign]
        H2Stream._process_received_headers
    )


# -- header blocks: the same ones recur call after call -----------------------------------------------


def _huffman_or_plain(data: bytes) -> bytes:
    """An HPACK string literal (RFC 7541 section 5.2): Huffman-coded when that is shorter."""
    coded = _HUFFMAN.encode(data)
    if len(coded) < len(data):
        length = encode_integer(len(coded), 7)
        length[0] |= 0x80
        return bytes(length) + coded
    return bytes(encode_integer(len(data), 7)) + data


def encode_field(name: bytes, value: bytes, sensitive: bool) -> bytes:
    """One header field without touching any dynamic table (RFC 7541 sections 6.1, 6.2.2, 6.2.3).

    A field of the static table is sent as its index; any other as a literal
    *without indexing* (*never indexed* if sensitive), its name as a static
    table index when the name is there.  Nothing is ever inserted into the
    peer's dynamic table, so the bytes depend on the field alone.
    """
    entry = HeaderTable.STATIC_TABLE_MAPPING.get(name)
    if entry is not None and not sensitive:
        index = entry[1].get(value)
        if index is not None:
            field = encode_integer(index, 7)
            field[0] |= 0x80
            return bytes(field)
    prefix = encode_integer(entry[0] if entry is not None else 0, 4)
    if sensitive:
        prefix[0] |= 0x10
    if entry is not None:
        name_part = b""
    else:
        name_part = _NAME_CACHE.get(name) or _huffman_or_plain(name)
        if len(_NAME_CACHE) < FIELD_CACHE_ENTRIES and len(name) <= FIELD_CACHE_MAX_BYTES:
            _NAME_CACHE[name] = name_part  # names recur even where values do not (x-request-id)
    return bytes(prefix) + name_part + _huffman_or_plain(value)


def _per_call_field(name: bytes, value: bytes) -> bytes:
    """A literal without indexing, its value as it is (RFC 7541 sections 6.2.2, 5.2 with H = 0)."""
    name_part = _NAME_CACHE.get(name)
    if name_part is None:
        name_part = _NAME_CACHE[name] = _huffman_or_plain(name)
    return b"\x00" + name_part + bytes(encode_integer(len(value), 7)) + value


class StaticEncoder(Encoder):
    """hpack's encoder without dynamic-table insertion: each field's bytes are memoised.

    ``hpack``'s encoder indexes every new field in the dynamic table and then
    searches that table linearly for every field of every later block; the
    router's blocks repeat (the same request and response fields call after
    call) but carry per-call values (``x-request-id``) that would churn the
    table anyway.  Encoding a field independently of any table state
    (``encode_field``) makes it a pure function of the field, remembered in a
    bounded dict (``FIELD_CACHE_ENTRIES`` fields of at most
    ``FIELD_CACHE_MAX_BYTES`` bytes, cleared when full).  The cost is a few
    bytes per repeated literal on the wire.  Table size changes the peer
    asks for (SETTINGS_HEADER_TABLE_SIZE) are still signalled as hpack does.
    With ``remember_blocks`` (the client-facing side, whose response and
    trailer blocks recur whole) a block without a per-call field is memoised
    too (``BLOCK_CACHE_ENTRIES``, cleared when full): one dict lookup a block.
    """

    remember_blocks = False  # whole blocks memoised too: for a side whose blocks carry no per-call field

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        block_key = None
        if self.remember_blocks and type(headers) is list and not self.header_table.resized:
            # The field types are in the key: a never-indexed field equals its plain tuple, encodes otherwise.
            block_key = (tuple(headers), tuple(map(type, headers)))
            try:
                return _BLOCK_CACHE[block_key]
            except KeyError:
                pass
            except TypeError:  # an unhashable field: encoded field by field
                block_key = None
        cache = _FIELD_CACHE
        parts = []
        if self.header_table.resized:
            parts.append(self._encode_table_size_change())
            self.header_table.resized = False
        for header in headers:
            cls = type(header)
            if cls is HeaderTuple or (cls is tuple and len(header) == 2):
                key = header
                sensitive = False
            else:
                sensitive = (
                    (not header.indexable) if isinstance(header, HeaderTuple) else bool(header[2:3] and header[2])
                )
                key = (header[0], header[1], sensitive)
            try:
                parts.append(cache[key])
                continue
            except KeyError:
                pass
            name, value = header[0], header[1]
            if not isinstance(name, bytes) or not isinstance(value, bytes):
                name, value = _to_bytes(name), _to_bytes(value)
            if name in PER_CALL_FIELDS and not sensitive:
                parts.append(_per_call_field(name, value))
                block_key = None  # a block with a per-call value would only churn the block cache
                continue
            field = encode_field(name, value, sensitive)
            if len(name) + len(value) <= FIELD_CACHE_MAX_BYTES:
                if len(cache) >= FIELD_CACHE_ENTRIES:
                    cache.clear()
                cache[key] = field
            parts.append(field)
        block = b"".join(parts)
        if block_key is not None and len(block) <= FIELD_CACHE_MAX_BYTES * 4:
            if len(_BLOCK_CACHE) >= BLOCK_CACHE_ENTRIES:
                _BLOCK_CACHE.clear()
            _BLOCK_CACHE[block_key] = block
        return block


class _CountedTable(HeaderTable):
    """hpack's header table telling what a decode did to it: entries read, entries added, size changed."""

    gen = 0  # bumped by every change
    read_dynamic = False  # an entry of the dynamic table was read
    added: list[tuple[bytes, bytes]] | None = None  # entries added, while recording

    def get_by_index(self, index: int) -> tuple[bytes, bytes]:
        if index > HeaderTable.STATIC_TABLE_LENGTH:
            self.read_dynamic = True
        return super().get_by_index(index)

    def add(self, name: bytes, value: bytes) -> None:
        self.gen += 1
        if self.added is not None:
            self.added.append((name, value))
        super().add(name, value)

    def replay(self, entries: tuple[tuple[bytes, bytes], ...]) -> None:
        """``add`` each entry, as one change: a remembered block's insertions, done again without per-entry calls.

        hpack's ``add`` and ``_shrink`` (with a debug log call per eviction)
        cost about 5% of a call where a peer indexes its response fields on
        every call (nginx); the table ends the same (RFC 7541 section 4.4).
        """
        self.gen += 1
        entries_now = self.dynamic_entries
        size = self._current_size
        maxsize = self._maxsize
        for entry in entries:
            n = 32 + len(entry[0]) + len(entry[1])  # RFC 7541 section 4.1
            if n > maxsize:
                entries_now.clear()
                size = 0
                continue
            entries_now.appendleft(entry)
            size += n
            while size > maxsize:
                old = entries_now.pop()
                size -= 32 + len(old[0]) + len(old[1])
        self._current_size = size

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @maxsize.setter
    def maxsize(self, newmax: int) -> None:
        self.gen += 1
        self.added = None  # a size update in a block: not replayable
        HeaderTable.maxsize.fset(self, newmax)  # type: ignore[attr-defined]


class CachingDecoder(Decoder):
    """hpack's decoder remembering the header lists of recent header blocks (one connection's).

    A peer sends the same block bytes call after call: fields it indexed
    referenced by index, literals repeated.  Decoding depends on the bytes and
    on the dynamic table, so what a block did is remembered with it:

    - a block that read no dynamic-table entry decodes the same whatever the
      table holds: it is remembered by its bytes, with the entries it added
      (literals with incremental indexing: nginx sends its response fields so,
      every call), which a repeat adds again in the same order;
    - a block that read the table but changed nothing in it (a client
      referring to the fields it indexed) is remembered by its bytes and the
      table's change count, so it is reused only while the table is as it was;
    - a block that read the table and changed it, or changed the table's size,
      is not remembered.

    The decoder's limits are in every key.  Bounded: ``DECODE_CACHE_ENTRIES``
    blocks of at most ``DECODE_CACHE_MAX_BYTES`` encoded and decoded bytes,
    cleared when full.  A block that fails to decode raises as before.
    """

    def __init__(self, max_header_list_size: int = DEFAULT_MAX_HEADER_LIST_SIZE) -> None:
        super().__init__(max_header_list_size)
        self.header_table: _CountedTable = _CountedTable()
        self._blocks: dict[tuple[bytes, int, int, int, int], tuple[tuple[Any, ...], tuple[Any, ...]]] = {}

    def decode(self, data: bytes, raw: bool = False) -> Any:
        if not raw or len(data) > DECODE_CACHE_MAX_BYTES:
            return super().decode(data, raw)
        if type(data) is not bytes:
            data = bytes(data)
        table = self.header_table
        blocks = self._blocks
        limits = (self.max_allowed_table_size, self.max_header_list_size, table._maxsize)
        hit = blocks.get((data, -1, *limits))
        if hit is None:
            hit = blocks.get((data, table.gen, *limits))
        if hit is not None:
            headers, added = hit
            if added:
                table.replay(added)
            return list(headers)
        gen = table.gen
        table.read_dynamic = False
        recorded: list[tuple[bytes, bytes]] = []
        table.added = recorded
        try:
            result = super().decode(data, raw=True)
        finally:
            replayable = table.added is recorded
            table.added = None
        if replayable and sum(len(n) + len(v) for n, v in result) <= DECODE_CACHE_MAX_BYTES:
            if not table.read_dynamic:
                key = (data, -1, *limits)
            elif not recorded:
                key = (data, gen, *limits)
            else:
                return result
            if len(blocks) >= DECODE_CACHE_ENTRIES:
                blocks.clear()
            blocks[key] = (tuple(result), tuple(recorded))
        return result


def fast_codec(conn: H2Connection) -> None:
    """Give a fresh h2 connection the encoder and decoder above (limits carried over)."""
    old = conn.decoder
    decoder = CachingDecoder(old.max_header_list_size)
    decoder.max_allowed_table_size = old.max_allowed_table_size
    conn.decoder = decoder
    conn.encoder = StaticEncoder()
    conn.encoder.remember_blocks = True  # responses and trailers recur whole, call after call


def cached_received_headers(process: Callable[..., list[Any]]) -> Callable[..., list[Any]]:
    """h2's ``H2Stream._process_received_headers`` (normalise and validate a received header list) memoised.

    Its checks are a pure function of the header list, the validation flags
    (request or response, trailers...) and the connection's two inbound
    settings, all in the key; a list that fails raises as before and is not
    remembered.  Only lists of plain ``HeaderTuple`` (not never-indexed
    ones) of at most ``FIELD_CACHE_MAX_BYTES * 4`` bytes are remembered, in a
    bounded dict (``PROCESSED_CACHE_ENTRIES``, cleared when full).
    """
    cache: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    def _process_received_headers(self: Any, headers: Any, flags: Any, header_encoding: Any) -> list[Any]:
        if isinstance(header_encoding, str):
            return process(self, headers, flags, header_encoding)
        headers = tuple(headers)
        for h in headers:
            if type(h) is not HeaderTuple:
                return process(self, headers, flags, header_encoding)
        config = self.config
        key = (headers, flags, config.normalize_inbound_headers, config.validate_inbound_headers)
        hit = cache.get(key)
        if hit is not None:
            return list(hit)
        out = process(self, headers, flags, header_encoding)
        if sum(len(n) + len(v) for n, v in headers) <= FIELD_CACHE_MAX_BYTES * 4:
            if len(cache) >= PROCESSED_CACHE_ENTRIES:
                cache.clear()
            cache[key] = tuple(out)
        return out

    _process_received_headers.cache = cache  # type: ignore[attr-defined]
    return _process_received_headers


# -- the server side's response frames: built here, h2's stream state moved as its send_* would --------

_FRAME_HEAD = struct.Struct(">HBBBL")  # RFC 9113 section 4.1: length (24 bits), type, flags, stream id
_HEADERS, _DATA = 0x1, 0x0
_END_STREAM, _END_HEADERS = 0x1, 0x4
_SENDING_STATES = (StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE)


class ResponseSender:
    """``send_headers``/``send_data`` for a server ``H2Connection``: frame bytes by ``struct``, no frame objects.

    h2 builds a ``HeadersFrame`` or ``DataFrame`` (with its ``Flags`` set),
    serialises it and runs its stream's state machine for every response
    header block, DATA frame and trailer block: about a quarter of a proxied
    unary gRPC call (docs/benchmarks.md).  The common case -- a stream that is
    open or half-closed (remote), a final response or trailers whose block
    fits one frame, a DATA frame within both windows and the frame size, on an
    open connection -- is written here, making the same state-machine
    transitions h2 makes (``SEND_HEADERS`` and ``SEND_END_STREAM`` by h2's own
    ``process_input``; ``SEND_DATA`` changes no state in these two states)
    and taking the same flow-control windows.  Anything else (an
    informational response, a block needing CONTINUATION frames, a pending
    HPACK table size update, a closed stream or connection, a window too
    small) goes to h2's method, which sends or raises as before.  Headers are
    not validated on the way out (the connection is configured so already).
    """

    __slots__ = ("conn",)

    def __init__(self, conn: H2Connection) -> None:
        self.conn = conn

    @property
    def max_outbound_frame_size(self) -> int:
        return self.conn.max_outbound_frame_size

    def local_flow_control_window(self, stream_id: int) -> int:
        return self.conn.local_flow_control_window(stream_id)

    def end_stream(self, stream_id: int) -> None:
        self.conn.end_stream(stream_id)

    def send_headers(self, stream_id: int, headers: Any, end_stream: bool = False) -> None:
        conn = self.conn
        stream = conn.streams.get(stream_id)
        if (
            stream is None
            or conn.state_machine.state is not ConnectionState.SERVER_OPEN
            or conn.encoder.header_table.resized
        ):
            return conn.send_headers(stream_id, headers, end_stream=end_stream)
        sm = stream.state_machine
        if sm.state not in _SENDING_STATES or (sm.headers_sent and not end_stream):
            return conn.send_headers(stream_id, headers, end_stream=end_stream)
        for name, value in headers:  # an informational response? (h2's is_informational_response)
            if name[:1] != b":":
                break
            if name == b":status":
                if value[:1] == b"1":
                    return conn.send_headers(stream_id, headers, end_stream=end_stream)
                break
        block = conn.encoder.encode(headers)  # a pure function of the fields (StaticEncoder)
        n = len(block)
        if n > conn.max_outbound_frame_size:
            return conn.send_headers(stream_id, headers, end_stream=end_stream)
        sm.process_input(StreamInputs.SEND_HEADERS)
        flags = _END_HEADERS
        if end_stream:
            sm.process_input(StreamInputs.SEND_END_STREAM)
            flags |= _END_STREAM
        stream.request_method = None  # what h2 records from a block without :method
        conn._data_to_send += _FRAME_HEAD.pack(n >> 8, n & 0xFF, _HEADERS, flags, stream_id) + block
        return None

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        conn = self.conn
        stream = conn.streams.get(stream_id)
        n = len(data)
        if (
            stream is None
            or conn.state_machine.state is not ConnectionState.SERVER_OPEN
            or stream.state_machine.state not in _SENDING_STATES
            or n > conn.outbound_flow_control_window
            or n > stream.outbound_flow_control_window
            or n > conn.max_outbound_frame_size
            or type(data) is not bytes
        ):
            return conn.send_data(stream_id, data, end_stream=end_stream)
        flags = 0
        if end_stream:
            stream.state_machine.process_input(StreamInputs.SEND_END_STREAM)
            flags = _END_STREAM
        stream.outbound_flow_control_window -= n
        conn.outbound_flow_control_window -= n
        conn._data_to_send += _FRAME_HEAD.pack(n >> 8, n & 0xFF, _DATA, flags, stream_id) + data
        return None
