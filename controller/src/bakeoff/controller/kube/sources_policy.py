"""Which ``spec.judge.source`` locations the cluster controller may fetch.

A Bakeoff author is not the operator of the controller: left open, ``spec.judge.source`` would let
anyone who can create a Bakeoff make the controller read its own files (a path is a snapshot file
for ``bakeoff judge``) or send requests to any address it can reach, and show what came back in the
Bakeoff's status (server-side request forgery). In cluster mode a location must be

* an in-cluster Service of the Bakeoff's own namespace:
  ``http[s]://<service>.<namespace>.svc[.cluster.local][:port][/path]`` (also behind
  ``prometheus+``); a Service of another namespace (a shared Prometheus in ``monitoring``) only
  through the operator's prefixes below, or
* a URL starting with one of the prefixes the operator allowed (chart value
  ``controller.judgeSources.allowedPrefixes`` -> env ``BAKEOFF_JUDGE_SOURCE_PREFIXES``, separated by
  spaces or commas).

Anything else is refused with an error naming the field; nothing is fetched. Redirects are never
followed (judge/sources/http.py), so an allowed location cannot hand the judge on to another.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

ENV = "BAKEOFF_JUDGE_SOURCE_PREFIXES"
FIELD = "spec.judge.source"

_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_SERVICE_HOST = re.compile(rf"^{_LABEL}\.{_LABEL}\.svc(\.cluster\.local)?$")
_SCHEMES = ("http", "https")


class SourceRefused(ValueError):
    """A location of spec.judge.source the policy does not allow; the message names the field."""


def prefixes_from_env(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """The operator's allowed URL prefixes, matched as strings. A prefix that ends with the host gets '/',
    so that it cannot be extended into another host (``https://metrics.example`` must not admit
    ``https://metrics.example.evil``); one ending with ':' admits any port of that host."""
    raw = (os.environ if environ is None else environ).get(ENV, "")
    out = []
    for p in re.split(r"[\s,]+", raw):
        if not p:
            continue
        parts = urlsplit(p)
        if parts.scheme and parts.netloc and not parts.path and not p.endswith(":"):
            p += "/"
        out.append(p)
    return tuple(out)


def _in_cluster_service(location: str, namespace: str | None) -> bool:
    url = location.removeprefix("prometheus+")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        return False
    if parts.scheme not in _SCHEMES or parts.username is not None or parts.password is not None:
        return False
    if port is not None and not 0 < port < 65536:
        return False
    if not (parts.hostname and _SERVICE_HOST.match(parts.hostname)) or "@" in parts.netloc:
        return False
    return namespace is None or parts.hostname.split(".")[1] == namespace


def allowed_locations(
    source: str, where: str, prefixes: tuple[str, ...] | None = None, *, namespace: str | None
) -> list[str]:
    """The locations of ``source`` (split on spaces/commas) if every one is allowed; else SourceRefused.

    ``where`` names the resource (``Bakeoff ns/name``) for the message; ``namespace`` is the
    Bakeoff's: in-cluster Services are allowed only there (None: any namespace).
    """
    if prefixes is None:
        prefixes = prefixes_from_env()
    locations = [s for s in re.split(r"[\s,]+", source) if s]
    for loc in locations:
        # user@host would let an allowed prefix ("http://10.0.0.1:") name another host
        has_userinfo = "@" in urlsplit(loc.removeprefix("prometheus+")).netloc
        if not has_userinfo and (
            _in_cluster_service(loc, namespace) or any(loc.startswith(p) or loc + "/" == p for p in prefixes)
        ):
            continue
        ns = namespace or "<namespace>"
        allowed = f"http://<service>.{ns}.svc[.cluster.local][:port]/... (the Bakeoff's own namespace)"
        if prefixes:
            allowed += " or a URL starting with " + ", ".join(repr(p) for p in prefixes)
        raise SourceRefused(
            f"{where}: {FIELD}: {loc!r} refused: in a cluster the judge reads only {allowed} "
            f"(the operator allows more prefixes with the chart value controller.judgeSources.allowedPrefixes)"
        )
    return locations
