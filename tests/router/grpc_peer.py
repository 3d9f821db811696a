"""A real grpcio server with hand-written generic handlers (raw bytes, no generated code), for the HTTP/2 tests."""

from __future__ import annotations

import threading
import time
from concurrent import futures

import grpc

SERVICE = "test.Echo"


def _unary(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.set_trailing_metadata((("bakeoff-metric-score", str(len(request))),))
    return b"echo:" + request


def _server_stream(request: bytes, context: grpc.ServicerContext):
    for i in range(int(request or b"3")):
        yield b"part-%d" % i


BIG_SENT = [0]  # bytes the Big method has handed to grpcio so far


def _big(request: bytes, context: grpc.ServicerContext):
    """Stream 1 MiB messages, as many as asked, as fast as the reader takes them."""
    chunk = b"z" * (1 << 20)
    for _ in range(int(request or b"100")):
        BIG_SENT[0] += len(chunk)
        yield chunk


def _client_stream(requests, context: grpc.ServicerContext) -> bytes:
    return b"+".join(requests)


def _bidi(requests, context: grpc.ServicerContext):
    for r in requests:
        yield r.upper()


def _unavailable(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.abort(grpc.StatusCode.UNAVAILABLE, "down for this method")


def _bad_argument(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad request")


def _slow(request: bytes, context: grpc.ServicerContext) -> bytes:
    cancelled = threading.Event()
    context.add_callback(cancelled.set)
    SLOW_STARTED.set()
    cancelled.wait(30)
    SLOW_CANCELLED.set() if cancelled.is_set() else None
    return b"late"


def _traceparent(request: bytes, context: grpc.ServicerContext) -> bytes:
    """Answer with the traceparent the call arrived with ("" without one)."""
    return dict(context.invocation_metadata()).get("traceparent", "").encode()


SLOW_STARTED = threading.Event()
SLOW_CANCELLED = threading.Event()


def start(port: int = 0, name: str = "a", host: str = "127.0.0.1") -> tuple[grpc.Server, int]:
    def tag(fn):
        def wrapped(req, ctx):
            ctx.send_initial_metadata((("x-served-by", name),))
            return fn(req, ctx)

        return wrapped

    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(tag(_unary)),
        "ServerStream": grpc.unary_stream_rpc_method_handler(_server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(_client_stream),
        "Big": grpc.unary_stream_rpc_method_handler(_big),
        "Bidi": grpc.stream_stream_rpc_method_handler(_bidi),
        "Unavailable": grpc.unary_unary_rpc_method_handler(_unavailable),
        "BadArgument": grpc.unary_unary_rpc_method_handler(_bad_argument),
        "Slow": grpc.unary_unary_rpc_method_handler(_slow),
        "Traceparent": grpc.unary_unary_rpc_method_handler(_traceparent),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    return server, bound


def method(channel: grpc.Channel, kind: str, name: str):
    path = f"/{SERVICE}/{name}"
    return getattr(channel, kind)(path, request_serializer=None, response_deserializer=None)


if __name__ == "__main__":
    import sys

    srv, p = start(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(p, flush=True)
    while True:
        time.sleep(3600)
