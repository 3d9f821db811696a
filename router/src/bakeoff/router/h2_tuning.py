"""Cheaper HPACK for the router's HTTP/2 side: what the ``hpack`` library spends per call for nothing.

The sans-IO ``hpack`` library (used by ``h2``) is pure Python.  A profile of
the router under h2load (docs/benchmarks.md) found two costs that buy the
router nothing; ``tune_hpack()`` (called once, on import of the HTTP/2
modules) removes them without changing what is encoded or decoded:

- **debug logging**: ``hpack`` calls ``logging.Logger.debug`` about 90 times
  per proxied call (per integer, per header, per block), each a disabled
  logger's level check; its module logger is replaced by one whose ``debug``
  does nothing (its other levels are the real logger's).
- **Huffman decoding**: a peer Huffman-codes each literal header value, and
  ``hpack`` decodes it bit by bit in Python; a server that does not index its
  response headers (nginx, for one) sends the same literals on every call
  (``server``, ``content-type``, ``grpc-status``...).  Decoding is a pure
  function of the bytes, so results are remembered in a bounded dict
  (``HUFFMAN_CACHE_ENTRIES`` values of at most ``HUFFMAN_CACHE_MAX_BYTES``
  bytes, cleared when full): a repeated value costs one dict lookup.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

HUFFMAN_CACHE_ENTRIES = 4096
HUFFMAN_CACHE_MAX_BYTES = 256

_tuned = False


class _QuietLogger:
    """A logger whose debug() does nothing; everything else is the wrapped logger's."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def debug(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)


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
