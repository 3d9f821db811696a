"""Load for the quotes bake-off as a locust file (the same mix as spec.load in bakeoff.yaml):
`bakeoff run examples/quotes/bakeoff.yaml --locustfile examples/quotes/locustfile.py`."""

from __future__ import annotations

import uuid

from locust import HttpUser, between, task


class Reader(HttpUser):
    wait_time = between(0.01, 0.03)

    def on_start(self) -> None:
        # the router keeps a user on one variant by this header (spec.routing.stickiness)
        self.client.headers["X-User-Id"] = uuid.uuid4().hex

    @task(4)
    def all_quotes(self) -> None:
        self.client.get("/quotes")

    @task(3)
    def by_author(self) -> None:
        self.client.get("/quotes?author=grace", name="/quotes?author")

    @task(4)
    def one_quote(self) -> None:
        self.client.get("/quotes/17", name="/quotes/{id}")

    @task(1)
    def add(self) -> None:
        self.client.post("/quotes", json={"author": "ada", "text": "the analytical engine weaves"})
