"""The quotes service as it runs today: a list, searched from the start on every request."""

from __future__ import annotations

import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).parent))
from common import add_routes, error, healthz, parse_new_quote, seed, serve  # noqa: E402

QUOTES = web.AppKey("quotes", list)


async def list_quotes(request: web.Request) -> web.Response:
    author = request.query.get("author")
    found = [q for q in request.app[QUOTES] if author is None or q["author"] == author]
    return web.json_response({"count": len(found), "quotes": found[:20]})


async def get_quote(request: web.Request) -> web.Response:
    try:
        qid = int(request.match_info["id"])
    except ValueError:
        return error(400, "id must be an integer")
    for q in request.app[QUOTES]:
        if q["id"] == qid:
            return web.json_response(q)
    return error(404, f"no quote {qid}")


async def add_quote(request: web.Request) -> web.Response:
    new = await parse_new_quote(request)
    if isinstance(new, web.Response):
        return new
    q = {"id": len(request.app[QUOTES]) + 1, **new}  # quotes are never deleted
    request.app[QUOTES].append(q)
    return web.json_response(q, status=201)


def make_app() -> web.Application:
    app = web.Application()
    app[QUOTES] = seed()
    return add_routes(app, healthz=healthz, list_quotes=list_quotes, get_quote=get_quote, add_quote=add_quote)


if __name__ == "__main__":
    serve(make_app(), __doc__ or "")
