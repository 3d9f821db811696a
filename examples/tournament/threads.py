"""A rewrite on the standard library alone: http.server with a thread per connection (no aiohttp)."""

from __future__ import annotations

import json
import random
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from common import args, catalogue, checkout, page_of, parse_order

ITEMS = catalogue()
BY_ID = {it["id"]: it for it in ITEMS}
RNG = random.Random()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the router reuses its connections
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK wait

    def answer(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/healthz":
            self.answer(200, {"status": "ok"})
        elif url.path == "/items":
            self.answer(200, page_of(ITEMS, parse_qs(url.query).get("category", [None])[0]))
        elif url.path.startswith("/items/"):
            try:
                it = BY_ID.get(int(url.path[len("/items/") :]))
            except ValueError:
                self.answer(400, {"error": "id must be an integer"})
                return
            self.answer(200, it) if it else self.answer(404, {"error": "no such item"})
        else:
            self.answer(404, {"error": "not found"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if urlsplit(self.path).path != "/checkout":
            self.answer(404, {"error": "not found"})
            return
        order = parse_order(body)
        if isinstance(order, str):
            self.answer(400, {"error": order})
            return
        self.answer(200, *checkout(BY_ID, *order, "standard", RNG))

    def log_message(self, format: str, *a: object) -> None:  # no access log
        pass


if __name__ == "__main__":
    a = args(__doc__ or "")
    server = ThreadingHTTPServer((a.host, a.port), Handler)
    server.daemon_threads = True
    server.serve_forever()
