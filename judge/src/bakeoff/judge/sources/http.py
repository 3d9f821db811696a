"""A small HTTP client on the standard library, run in a thread.

The judge must not depend on the router's or controller's HTTP stack
(import-linter forbids aiohttp in bakeoff.judge), and a source makes a
handful of requests per look, so blocking ``urllib`` calls in
``asyncio.to_thread`` are enough.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from bakeoff.judge.sources import SourceError


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: a source is the URL it names, nothing else.

    Whoever checked the URL (the cluster controller's allow-list of ``spec.judge.source``,
    controller/kube/sources_policy.py) checked that URL only; following a 3xx would let an
    allowed address send the judge anywhere. A 3xx is reported as an error naming both URLs.
    """

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError with the 3xx code


_OPENER = urllib.request.build_opener(_NoRedirects())


def _request(url: str, form: dict[str, str] | None, timeout: float) -> Any:
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as e:
        if 300 <= e.code < 400:
            location = e.headers.get("Location") if e.headers is not None else None
            raise SourceError(
                f"{url}: HTTP {e.code} redirect to {location!r} not followed (a source is read only at the URL "
                f"given: give the final URL)"
            ) from None
        # Prometheus answers a bad query with 400 and a JSON body saying why: keep the why.
        try:
            payload = json.loads(e.read())
        except ValueError:
            payload = None
        if isinstance(payload, dict) and payload.get("status") == "error":
            return payload
        raise SourceError(f"{url}: HTTP {e.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise SourceError(f"{url}: {type(e).__name__}: {reason}") from None
    try:
        return json.loads(body)
    except ValueError as e:
        raise SourceError(f"{url}: not JSON: {e}") from None


async def get_json(url: str, timeout: float) -> Any:
    """GET ``url`` and decode JSON; any failure is a SourceError naming the URL."""
    if not url.startswith(("http://", "https://")):
        raise SourceError(f"{url}: only http:// and https:// URLs")
    return await asyncio.to_thread(_request, url, None, timeout)


async def post_form_json(url: str, form: dict[str, str], timeout: float) -> Any:
    """POST a form to ``url`` and decode JSON (a Prometheus error body is returned, not raised)."""
    if not url.startswith(("http://", "https://")):
        raise SourceError(f"{url}: only http:// and https:// URLs")
    return await asyncio.to_thread(_request, url, form, timeout)
