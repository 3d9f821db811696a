"""The example shop's simulated shoppers (examples/shop): their session plan, for the built-in generator and locust.

The shopper's behaviour is written once, as a session plan
(:func:`shopper_session`, see :mod:`bakeoff.load.sessions`).  Two drivers
execute it -- the built-in generator (:func:`shoppers`) and the locust user
in examples/shop/locustfile.py -- so both produce the same traffic and the
same conversions.

Conversions are decided here, by the shopper, from what the cart response
says (the services never decide them): a shopper who sees free shipping buys
more often than one who sees a shipping fee, and a shopper shown a product
that would bring the cart to free shipping often adds it.  A purchase is
reported to the router's admin ``POST /-/events``.

    stop = asyncio.Event()
    task = asyncio.create_task(shoppers(users=32).run(Target("http://127.0.0.1:8080",
                                                             "http://127.0.0.1:8081/-/events"), stop))
    ...; stop.set(); stats = await task
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from collections.abc import Generator
from typing import Any

from bakeoff.contracts.resources import DEFAULT_STICKY_HEADER
from bakeoff.load import LoadStats, Target
from bakeoff.load.sessions import Reply, SessionLoad, Step

USER_HEADER = DEFAULT_STICKY_HEADER
CATALOGUE_PAGES = 10  # the shop's 200 products, 20 per page

# The shopper model.  Tuned so that a mainline shop converts about 6% of
# sessions (about 4.5 requests each; 1.35% of requests) and a shop whose cart
# leads shoppers to free shipping about 16% (3% of requests): a difference the
# judge's anytime-valid test, with 4 candidates sharing alpha, finds in 30-70 s
# at 50-120 requests/s per variant.  A smaller lift (e.g. 6% -> 10%) takes it
# several minutes, too long for a demo.
P_SECOND_PAGE = 0.25  # looks at another catalogue page
P_MORE_DETAILS = (0.5, 0.25)  # a second, then a third, product detail
P_ADD_AFTER_VIEW = 0.45  # puts a viewed product in the cart
P_TWO_OF_A_KIND = 0.2  # ... two of them
P_TAKE_RECOMMENDATION = 0.8  # adds a product the cart suggests for free shipping
P_BUY_FREE_SHIPPING = 0.30  # checks out when the cart shows no shipping fee
P_BUY_WITH_SHIPPING_FEE = 0.035  # ... when it shows a fee (or says nothing about shipping)


def purchase_probability(cart: Any) -> float:
    """How likely a shopper looking at this cart response is to check out."""
    if not isinstance(cart, dict) or not cart.get("items"):
        return 0.0
    if cart.get("shipping_cents") == 0:
        return P_BUY_FREE_SHIPPING
    return P_BUY_WITH_SHIPPING_FEE


def recommendation_taken(cart: Any, rng: random.Random) -> int | None:
    """The product id a shopper adds because the cart suggested it, or None."""
    if not isinstance(cart, dict) or not cart.get("shipping_cents"):
        return None  # nothing to gain: shipping is already free (or unknown)
    rec = cart.get("recommendation")
    if not isinstance(rec, dict) or type(rec.get("id")) is not int:
        return None
    return rec["id"] if rng.random() < P_TAKE_RECOMMENDATION else None


def _product_ids(reply: Reply) -> list[int]:
    if reply.status != 200 or not isinstance(reply.data, dict):
        return []
    return [p["id"] for p in reply.data.get("products", []) if isinstance(p, dict) and type(p.get("id")) is int]


def shopper_session(user: str, rng: random.Random) -> Generator[Step, Reply, None]:
    """One visit: browse, look at products, maybe fill a cart, maybe buy."""
    page = rng.randint(1, CATALOGUE_PAGES)
    seen = _product_ids((yield Step("GET", f"/products?page={page}", "/products?page=[n]", want_json=True)))
    if rng.random() < P_SECOND_PAGE:
        other = rng.randint(1, CATALOGUE_PAGES)
        seen += _product_ids((yield Step("GET", f"/products?page={other}", "/products?page=[n]", want_json=True)))
    seen = sorted(set(seen))
    if not seen:
        return
    looks = 1 + sum(rng.random() < p for p in P_MORE_DETAILS)
    added = False
    for pid in rng.sample(seen, min(looks, len(seen))):
        detail = yield Step("GET", f"/products/{pid}", "/products/[id]")
        if detail.status == 200 and rng.random() < P_ADD_AFTER_VIEW:
            qty = 2 if rng.random() < P_TWO_OF_A_KIND else 1
            put = yield Step("POST", f"/cart/{user}/items", "/cart/[user]/items", {"product": pid, "qty": qty})
            added = added or put.status == 200
    if not added:
        return
    cart = (yield Step("GET", f"/cart/{user}", "/cart/[user]", want_json=True)).data
    extra = recommendation_taken(cart, rng)
    if extra is not None:
        put = yield Step("POST", f"/cart/{user}/items", "/cart/[user]/items", {"product": extra, "qty": 1})
        if put.status == 200:
            cart = (yield Step("GET", f"/cart/{user}", "/cart/[user]", want_json=True)).data
    if rng.random() < purchase_probability(cart):
        yield Step("POST", f"/checkout/{user}", "/checkout/[user]", purchase=True)


def shoppers(users: int, think: float = 0.0, seed: int = 0) -> SessionLoad:
    """``users`` concurrent shoppers, one visit after another; ``think``: mean pause between pages (exponential)."""
    return SessionLoad(shopper_session, users, think, f"{users} simulated shoppers (think {think:g}s)", seed)


async def run_shoppers(
    target_url: str,
    events_url: str | None,
    users: int,
    stop: asyncio.Event,
    rng_seed: int = 0,
    stats: LoadStats | None = None,
    *,
    think_time: float = 0.0,
) -> LoadStats:
    """Run ``users`` shoppers against target_url until ``stop`` is set; purchases go to ``events_url`` when given."""
    return await shoppers(users, think_time, rng_seed).run(Target(target_url, events_url, USER_HEADER), stop, stats)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bakeoff.load", description="Simulated shoppers for examples/shop.")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("shoppers", help="built-in asyncio shoppers; one JSON line of counts at the end")
    a.add_argument("--target", required=True, help="base URL, e.g. http://127.0.0.1:8080")
    a.add_argument("--events", help="the router's events URL, e.g. http://127.0.0.1:8081/-/events")
    a.add_argument("--users", type=int, default=16)
    a.add_argument("--seconds", type=float, default=10)
    a.add_argument("--think-time", type=float, default=0.0)
    a.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    async def go() -> LoadStats:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(args.seconds, stop.set)
        return await run_shoppers(args.target, args.events, args.users, stop, args.seed, think_time=args.think_time)

    print(json.dumps(asyncio.run(go()).to_dict()))
    return 0
