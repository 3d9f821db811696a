"""A candidate that memoises products: the same answers, less work."""

import functools
import json
import random
import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).parent))
from common import PRODUCTS, base_price, product_name, serve  # noqa: E402


@functools.lru_cache(maxsize=None)
def rendered(pid: int) -> str:
    tags = sorted({f"tag{(pid * k) % 17}" for k in range(1, 40)})
    return json.dumps({"id": pid, "name": product_name(pid), "price": round(base_price(pid), 2), "tags": tags})


async def product(request: web.Request) -> web.Response:
    pid = int(request.match_info["pid"])
    if not 0 <= pid < PRODUCTS:
        return web.json_response({"error": "no such product"}, status=404)
    # Conversion is a proportion metric: reported only when it happens.
    headers = {"Bakeoff-Metric-conversion": "1"} if random.random() < 0.05 else {}
    return web.Response(
        text=rendered(pid), content_type="application/json", headers=headers
    )


app = web.Application()
app.router.add_get("/products/{pid:\\d+}", product)

if __name__ == "__main__":
    serve(app)
