"""A rewrite on bare asyncio streams: its own small HTTP/1.1 reader and writer, no framework."""

from __future__ import annotations

import asyncio
import json
import random
from urllib.parse import parse_qs, urlsplit

from common import args, catalogue, checkout, page_of, parse_order

ITEMS = catalogue()
BY_ID = {it["id"]: it for it in ITEMS}
RNG = random.Random()
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


def route(method: str, target: str, body: bytes) -> tuple[int, object, dict[str, str]]:
    url = urlsplit(target)
    if method == "GET" and url.path == "/healthz":
        return 200, {"status": "ok"}, {}
    if method == "GET" and url.path == "/items":
        return 200, page_of(ITEMS, parse_qs(url.query).get("category", [None])[0]), {}
    if method == "GET" and url.path.startswith("/items/"):
        tail = url.path[len("/items/") :]
        if not tail.isdigit():
            return 400, {"error": "id must be an integer"}, {}
        it = BY_ID.get(int(tail))
        return (200, it, {}) if it else (404, {"error": "no such item"}, {})
    if method == "POST" and url.path == "/checkout":
        order = parse_order(body)
        if isinstance(order, str):
            return 400, {"error": order}, {}
        answer, headers = checkout(BY_ID, *order, "standard", RNG)
        return 200, answer, headers
    return 404, {"error": "not found"}, {}


async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length") or 0))
            status, answer, extra = route(method, target, body)
            data = json.dumps(answer).encode()
            close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
            out = [f"HTTP/1.1 {status} {REASONS.get(status, 'OK')}", "Content-Type: application/json"]
            out += [f"Content-Length: {len(data)}", *(f"{k}: {v}" for k, v in extra.items())]
            if close:
                out.append("Connection: close")
            writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + data)
            await writer.drain()
            if close:
                return
    finally:
        writer.close()


async def main() -> None:
    a = args(__doc__ or "")
    server = await asyncio.start_server(connection, a.host, a.port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
