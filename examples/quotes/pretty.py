"""A rewrite that pretty-prints every answer by re-encoding it with sorted keys and
indentation, and checks every stored quote's text again on each request: the same
answers, but every request pays for work nobody asked for (slower on the median)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).parent))
from common import MAX_TEXT, add_routes, error, parse_new_quote, seed, serve  # noqa: E402

QUOTES = web.AppKey("quotes", list)
# the "validation" pass below costs about this much per request, on any machine
VALIDATION_SECONDS = 0.008


def pretty(data: object, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, indent=2, sort_keys=True), status=status, content_type="application/json")


def revalidate(quotes: list[dict]) -> None:
    # every stored quote checked again on each request; a busy wait so that the cost is
    # the same whatever the machine's speed (the point of the example is the slowdown)
    deadline = time.perf_counter() + VALIDATION_SECONDS
    i = 0
    while time.perf_counter() < deadline:
        assert len(quotes[i % len(quotes)]["text"]) <= MAX_TEXT
        i += 1


async def healthz(request: web.Request) -> web.Response:
    return pretty({"status": "ok"})


async def list_quotes(request: web.Request) -> web.Response:
    revalidate(request.app[QUOTES])
    author = request.query.get("author")
    found = [q for q in request.app[QUOTES] if author is None or q["author"] == author]
    return pretty({"count": len(found), "quotes": found[:20]})


async def get_quote(request: web.Request) -> web.Response:
    revalidate(request.app[QUOTES])
    try:
        qid = int(request.match_info["id"])
    except ValueError:
        return error(400, "id must be an integer")
    for q in request.app[QUOTES]:
        if q["id"] == qid:
            return pretty(q)
    return error(404, f"no quote {qid}")


async def add_quote(request: web.Request) -> web.Response:
    new = await parse_new_quote(request)
    if isinstance(new, web.Response):
        return new
    q = {"id": len(request.app[QUOTES]) + 1, **new}  # quotes are never deleted
    request.app[QUOTES].append(q)
    return pretty(q, status=201)


def make_app() -> web.Application:
    app = web.Application()
    app[QUOTES] = seed()
    return add_routes(app, healthz=healthz, list_quotes=list_quotes, get_quote=get_quote, add_quote=add_quote)


if __name__ == "__main__":
    serve(make_app(), __doc__ or "")
