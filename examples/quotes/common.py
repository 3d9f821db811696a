"""What every implementation of the quotes service shares: the seed data, the API table and the server start-up."""

from __future__ import annotations

import argparse
import random
from collections.abc import Awaitable, Callable

from aiohttp import web

AUTHORS = ("ada", "alan", "grace", "edsger", "barbara", "donald", "margaret", "ken")
SEED_QUOTES = 400
MAX_TEXT = 500

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def seed() -> list[dict]:
    """The same 400 quotes for every implementation (deterministic)."""
    rng = random.Random(7)
    words = "simple code data test proof loop state type cache queue graph tree".split()
    return [
        {
            "id": i + 1,
            "author": AUTHORS[i % len(AUTHORS)],
            "text": " ".join(rng.choice(words) for _ in range(8 + i % 5)),
        }
        for i in range(SEED_QUOTES)
    ]


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def parse_new_quote(request: web.Request) -> dict | web.Response:
    """A POST /quotes body, checked; a 400 response when it is not a quote."""
    try:
        body = await request.json()
    except ValueError:
        return error(400, "body must be JSON")
    if not isinstance(body, dict):
        return error(400, "body must be a JSON object")
    author, text = body.get("author"), body.get("text")
    if not isinstance(author, str) or not author or not isinstance(text, str) or not 0 < len(text) <= MAX_TEXT:
        return error(400, f"author (a string) and text (1 to {MAX_TEXT} characters) are required")
    return {"author": author, "text": text}


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def add_routes(
    app: web.Application, *, healthz: Handler, list_quotes: Handler, get_quote: Handler, add_quote: Handler
) -> web.Application:
    """The quotes API every implementation serves: the contract the bake-off compares them on."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/quotes", list_quotes)
    app.router.add_get("/quotes/{id}", get_quote)
    app.router.add_post("/quotes", add_quote)
    return app


def serve(app: web.Application, description: str) -> None:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    args = p.parse_args()
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)
