"""Sticky key from a request header, such as X-User-Id set by an auth proxy."""

from __future__ import annotations


class HeaderKey:
    def __init__(self, name: str) -> None:
        self.header = name.lower().encode("latin-1")

    def key_from(self, value: bytes) -> bytes | None:
        value = value.strip()
        return value or None
