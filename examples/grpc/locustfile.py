"""gRPC load for the grpc bake-off: `bakeoff run examples/grpc/bakeoff.yaml --locustfile examples/grpc/locustfile.py`.

A locust User with a grpcio channel to the router; each call is reported to
locust like an HTTP request (name: the method).
"""

from __future__ import annotations

import random
import time
import uuid

import grpc
import grpc.experimental.gevent
from locust import User, between, task

# locust's users are gevent greenlets: grpcio must yield to them instead of blocking the process.
grpc.experimental.gevent.init_gevent()


class QuoteReader(User):
    wait_time = between(0.005, 0.02)

    def on_start(self) -> None:
        self.channel = grpc.insecure_channel(str(self.host).split("://", 1)[-1].rstrip("/"))
        # the router keeps a user on one variant by this metadata key (spec.routing.stickiness)
        self.metadata = (("x-user-id", uuid.uuid4().hex),)
        self.get = self.channel.unary_unary("/quotes.Quotes/Get")
        self.search = self.channel.unary_stream("/quotes.Quotes/Search")

    def on_stop(self) -> None:
        self.channel.close()

    def _call(self, name: str, fn) -> None:
        start = time.perf_counter()
        exc = None
        size = 0
        try:
            size = fn()
        except grpc.RpcError as e:
            exc = e
        self.environment.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=(time.perf_counter() - start) * 1000,
            response_length=size,
            exception=exc,
            context={},
        )

    @task(3)
    def get_one(self) -> None:
        self._call("Get", lambda: len(self.get(str(random.randrange(200)).encode(), metadata=self.metadata, timeout=5)))

    @task(1)
    def search_word(self) -> None:
        self._call("Search", lambda: sum(map(len, self.search(b"number 1", metadata=self.metadata, timeout=5))))
