"""Sticky key from one cookie of the Cookie header."""

from __future__ import annotations


class CookieKey:
    header = b"cookie"

    def __init__(self, name: str) -> None:
        self.name = name.encode("latin-1")
        self._prefix = self.name + b"="

    def key_from(self, value: bytes) -> bytes | None:
        # Cookie: a=1; uid=abc; b=2 -- scanned without building a dict.
        for part in value.split(b";"):
            part = part.strip()
            if part.startswith(self._prefix):
                key = part[len(self._prefix) :].strip(b'"')
                return key or None
        return None
