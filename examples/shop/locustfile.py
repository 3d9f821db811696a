"""Simulated shoppers for the shop, as a locust user.

    locust -f examples/shop/locustfile.py --host http://127.0.0.1:8080 \
        --events-url http://127.0.0.1:8081/-/events --headless -u 32 -r 8 -t 60s

Each locust task is one shopping session under a fresh user id (sent in
X-User-Id, the router's sticky key).  The session itself -- which pages,
which products, whether to buy -- is bakeoff.load.shoppers.shopper_session, the
same plan the built-in load generator runs, so both produce the same
traffic and conversions.  Purchases are posted to the router's
``POST /-/events`` as one JSON list every half second (--events-url, or the
BAKEOFF_EVENTS_URL environment variable; without either nothing is posted).
"""

from __future__ import annotations

import itertools
import os
import random

import gevent
import requests
from locust import FastHttpUser, constant, events, task

from bakeoff.load.sessions import Reply, new_user_id
from bakeoff.load.shoppers import USER_HEADER, shopper_session

EVENT_INTERVAL = 0.5
THINK_TIME = float(os.environ.get("BAKEOFF_THINK_TIME", "0"))  # mean pause between a shopper's requests

# Totals for this process, reported by bakeoff.load.locustload when it runs locust as a library.
COUNTS = {"errors": 0, "sessions": 0, "purchases": 0, "events_sent": 0, "events_failed": 0}


class EventPoster:
    """Batches conversion events and posts them from one greenlet, outside locust's statistics."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.pending: list[dict] = []
        self.greenlet: gevent.Greenlet | None = None
        # A plain requests session: event posts are not shop traffic and must
        # not appear in locust's request statistics.
        self.http = requests.Session()

    def add(self, user: str) -> None:
        if self.url:
            self.pending.append({"key": user, "metric": "conversion", "value": 1})

    def flush(self) -> None:
        if not self.pending or not self.url:
            return
        batch, self.pending = self.pending, []
        try:
            r = self.http.post(self.url, json=batch, timeout=5)
            results = r.json().get("results", [])
            accepted = sum(1 for x in results if isinstance(x, dict) and "error" not in x)
        except (requests.RequestException, ValueError, AttributeError):
            accepted = 0
        except BaseException:
            # Killed mid-post (GreenletExit at test stop): keep the batch for stop()'s final flush.
            self.pending = batch + self.pending
            raise
        COUNTS["events_sent"] += accepted
        COUNTS["events_failed"] += len(batch) - accepted

    def _loop(self) -> None:
        while True:
            gevent.sleep(EVENT_INTERVAL)
            self.flush()

    def start(self, url: str | None) -> None:
        self.url = url
        if url and self.greenlet is None:
            self.greenlet = gevent.spawn(self._loop)

    def stop(self) -> None:
        if self.greenlet is not None:
            self.greenlet.kill()
            self.greenlet = None
        self.flush()


POSTER = EventPoster()


@events.init_command_line_parser.add_listener
def _add_arguments(parser) -> None:
    parser.add_argument("--events-url", default="", help="the router's POST /-/events URL for conversion events")


@events.test_start.add_listener
def _start_events(environment, **_kw) -> None:
    options = environment.parsed_options
    url = (getattr(options, "events_url", "") if options is not None else "") or os.environ.get("BAKEOFF_EVENTS_URL")
    POSTER.start(url or None)


@events.test_stop.add_listener
def _stop_events(environment, **_kw) -> None:
    POSTER.stop()


_seat_numbers = itertools.count()


class ShopperUser(FastHttpUser):
    wait_time = constant(0)  # the session plan has its own rhythm; a new visitor arrives at once

    def on_start(self) -> None:
        self.seat = next(_seat_numbers)
        self.rng = random.Random()

    def _send(self, user: str, step) -> Reply:
        with self.client.request(
            step.method, step.path, name=step.name, json=step.body, headers={USER_HEADER: user}, catch_response=True
        ) as resp:
            status = resp.status_code or 0
            # The shop's 4xx answers (e.g. 409 out of stock) are part of
            # shopping; only 5xx and no answer at all count as failures.
            if status == 0 or status >= 500:
                COUNTS["errors"] += 1
                resp.failure(f"status {status}")
                return Reply(status)
            resp.success()
            if step.want_json and status == 200:
                try:
                    return Reply(status, resp.json())
                except ValueError:
                    return Reply(status)
            return Reply(status)

    @staticmethod
    def _think(rng: random.Random) -> None:
        if THINK_TIME > 0:
            gevent.sleep(rng.expovariate(1 / THINK_TIME))

    @task
    def shopping_session(self) -> None:
        user = new_user_id(self.seat, self.rng)
        plan = shopper_session(user, self.rng)
        step = next(plan)
        while True:
            reply = self._send(user, step)
            if reply.status == 0:
                return  # no answer: this visitor gives up
            if step.purchase and 200 <= reply.status < 300:
                COUNTS["purchases"] += 1
                POSTER.add(user)
            self._think(self.rng)
            try:
                step = plan.send(reply)
            except StopIteration:
                COUNTS["sessions"] += 1
                return
