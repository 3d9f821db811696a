"""A small gRPC service in three implementations (hand-written generic handlers: no generated code).

quotes.Quotes/Get (unary: a quote by number) and quotes.Quotes/Search
(server streaming: the quotes whose text holds a word).  Messages are UTF-8
text; the service is about the router, not about protobuf.

    python server.py --impl mainline|memo|flaky --port PORT

- mainline: looks the quotes up in a list;
- memo: the same answers, from a dictionary built at start;
- flaky: Search answers UNAVAILABLE one call in two (a rewrite that lost a
  connection-pool fix), Get is fine.
"""

from __future__ import annotations

import argparse
import itertools
import signal
import threading
from concurrent import futures

import grpc

QUOTES = [f"quote {i}: the analytical engine weaves algebraic patterns number {i}" for i in range(200)]


def serve(impl: str, port: int) -> None:
    memo = {str(i): q for i, q in enumerate(QUOTES)}
    calls = itertools.count()

    def get(request: bytes, context: grpc.ServicerContext) -> bytes:
        key = request.decode()
        quote = memo.get(key) if impl == "memo" else next((q for i, q in enumerate(QUOTES) if str(i) == key), None)
        if quote is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no quote {key}")
            return b""
        context.set_trailing_metadata((("bakeoff-metric-quote_length", str(len(quote))),))
        return quote.encode()

    def search(request: bytes, context: grpc.ServicerContext):
        if impl == "flaky" and next(calls) % 2 == 0:
            context.abort(grpc.StatusCode.UNAVAILABLE, "search backend unavailable")
        word = request.decode()
        for q in QUOTES:
            if word in q:
                yield q.encode()

    handlers = {
        "Get": grpc.unary_unary_rpc_method_handler(get),
        "Search": grpc.unary_stream_rpc_method_handler(search),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("quotes.Quotes", handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(2).wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--impl", choices=("mainline", "memo", "flaky"), required=True)
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args()
    serve(a.impl, a.port)
