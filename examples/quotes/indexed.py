"""A rewrite with an index by id and by author: the same answers, found without scanning."""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).parent))
from common import add_routes, error, healthz, parse_new_quote, seed, serve  # noqa: E402


class Store:
    def __init__(self) -> None:
        self.by_id: dict[int, dict] = {}
        self.by_author: dict[str, list[dict]] = defaultdict(list)
        self.all: list[dict] = []
        for q in seed():
            self.add(q)

    def add(self, q: dict) -> None:
        self.by_id[q["id"]] = q
        self.by_author[q["author"]].append(q)
        self.all.append(q)


STORE = web.AppKey("store", Store)


async def list_quotes(request: web.Request) -> web.Response:
    store = request.app[STORE]
    author = request.query.get("author")
    found = store.all if author is None else store.by_author.get(author, [])
    return web.json_response({"count": len(found), "quotes": found[:20]})


async def get_quote(request: web.Request) -> web.Response:
    try:
        qid = int(request.match_info["id"])
    except ValueError:
        return error(400, "id must be an integer")
    q = request.app[STORE].by_id.get(qid)
    return web.json_response(q) if q is not None else error(404, f"no quote {qid}")


async def add_quote(request: web.Request) -> web.Response:
    new = await parse_new_quote(request)
    if isinstance(new, web.Response):
        return new
    store = request.app[STORE]
    q = {"id": len(store.all) + 1, **new}
    store.add(q)
    return web.json_response(q, status=201)


def make_app() -> web.Application:
    app = web.Application()
    app[STORE] = Store()
    return add_routes(app, healthz=healthz, list_quotes=list_quotes, get_quote=get_quote, add_quote=add_quote)


if __name__ == "__main__":
    serve(make_app(), __doc__ or "")
