"""gRPC semantics on top of HTTP/2: a call's outcome, its deadline.

A gRPC call always answers HTTP 200; how it went is the ``grpc-status``
trailer (or the header block of a trailers-only response).  The codes are
those of grpc/doc/statuscodes.md.  The router records a call like an
HTTP/1.1 request of the same meaning, so one judge serves both:

- 0 OK counts as 2xx;
- UNKNOWN, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL,
  UNAVAILABLE and DATA_LOSS are the variant's errors: 5xx (an UNIMPLEMENTED
  method the mainline has is a regression of the variant);
- CANCELLED is the client going away: aborted;
- the rest (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED,
  FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE, UNAUTHENTICATED) are caused by
  the request: 4xx.
"""

from __future__ import annotations

OK = 0
CANCELLED = 1
DEADLINE_EXCEEDED = 4
UNAVAILABLE = 14
INTERNAL = 13
VARIANT_ERRORS = frozenset((2, 4, 8, 12, 13, 14, 15))

# grpc-timeout units (PROTOCOL-HTTP2.md): hours, minutes, seconds, milli-, micro-, nanoseconds.
_UNITS = {ord("H"): 3600.0, ord("M"): 60.0, ord("S"): 1.0, ord("m"): 1e-3, ord("u"): 1e-6, ord("n"): 1e-9}


def is_grpc(content_type: bytes | None) -> bool:
    return content_type is not None and content_type.startswith(b"application/grpc")


def parse_timeout(value: bytes) -> float | None:
    """Seconds of a ``grpc-timeout`` value (``100m``, ``5S``); None if it is malformed."""
    if not 2 <= len(value) <= 9 or not value[:-1].isdigit():
        return None
    unit = _UNITS.get(value[-1])
    return None if unit is None else int(value[:-1]) * unit


def http_equivalent(code: int) -> int:
    """The HTTP status a gRPC status code is counted as (see the module docstring); 0 for CANCELLED."""
    if code == OK:
        return 200
    if code == CANCELLED:
        return 0
    return 500 if code in VARIANT_ERRORS or not 0 <= code <= 16 else 400


def status_of(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"grpc-status":
            return int(value) if value.isdigit() else INTERNAL
    return None


def error_trailers(code: int, message: str) -> list[tuple[bytes, bytes]]:
    """A trailers-only response of the router's own (a deadline, an unreachable variant)."""
    return [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-status", str(code).encode()),
        (b"grpc-message", message.encode("ascii", "replace").replace(b"%", b"%25")),
    ]
