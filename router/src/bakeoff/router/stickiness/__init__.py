"""Where a request's sticky key comes from: one small seam, one file per way.

The data plane sees headers one at a time as the parser reads them, so a
strategy names the one header it needs (lower-case bytes) and turns that
header's value into a key.  No dict of headers is built per request.
"""

from __future__ import annotations

from typing import Protocol

from bakeoff.router.config import RouterConfig


class StickyKeySource(Protocol):
    header: bytes  # lower-case name of the header the key is read from

    def key_from(self, value: bytes) -> bytes | None:
        """The sticky key in this header's value, or None."""
        ...


def sticky_key_source(config: RouterConfig) -> StickyKeySource | None:
    """The strategy the configuration asks for, or None for no stickiness."""
    if config.sticky_header:
        from bakeoff.router.stickiness.header import HeaderKey

        return HeaderKey(config.sticky_header)
    if config.sticky_cookie:
        from bakeoff.router.stickiness.cookie import CookieKey

        return CookieKey(config.sticky_cookie)
    return None
