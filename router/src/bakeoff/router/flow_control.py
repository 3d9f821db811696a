"""Back-pressure between a client connection and the upstream connection serving it.

A proxy must never read faster than it can write: bytes read from one side
and not yet written to the other sit in memory.  One ``FlowControl`` belongs
to each client connection and knows both transports, so the two protocol
classes never reach into each other's transports to pause or resume them.

Reading the client stops while the upstream's write buffer is full, or while
the downstream holds it for reasons of its own (pipelined requests queued
behind the one in flight, an error answer pending, too much body parked
while no upstream is ready).  Reading the upstream stops while the client's
write buffer is full.  An upstream connection goes back to its pool reading,
so the pool notices when the upstream closes it.
"""

from __future__ import annotations

import asyncio


class FlowControl:
    __slots__ = ("client", "upstream", "client_full", "upstream_full", "hold", "client_reading", "upstream_reading")

    def __init__(self, client: asyncio.Transport) -> None:
        self.client = client
        self.upstream: asyncio.Transport | None = None
        self.client_full = False  # the client's transport asked us to stop writing to it
        self.upstream_full = False  # the upstream's transport asked the same
        self.hold = False  # the downstream's own reasons not to read requests
        self.client_reading = True
        self.upstream_reading = True

    # -- the two transports' pause_writing/resume_writing --------------------
    def client_write_full(self, full: bool) -> None:
        self.client_full = full
        self._apply_upstream()

    def upstream_write_full(self, full: bool) -> None:
        self.upstream_full = full
        self._apply_client()

    # -- the downstream's own reasons ---------------------------------------
    def hold_client(self, hold: bool) -> None:
        if hold != self.hold:
            self.hold = hold
            self._apply_client()

    def read_client_regardless(self) -> None:
        """After the final answer (lingering close): drain whatever the client still sends."""
        self.hold = False
        self.upstream_full = False
        self._apply_client()

    # -- an upstream connection joins or leaves -----------------------------
    def attach(self, upstream: asyncio.Transport) -> None:
        self.upstream = upstream
        self.upstream_reading = True
        self.upstream_full = False
        self._apply_upstream()

    def detach(self) -> None:
        up = self.upstream
        if up is not None and not self.upstream_reading and not up.is_closing():
            up.resume_reading()
        self.upstream = None
        self.upstream_reading = True
        if self.upstream_full:
            self.upstream_full = False
            self._apply_client()

    # -- applying the decision ----------------------------------------------
    def _apply_client(self) -> None:
        want = not (self.hold or self.upstream_full)
        if want == self.client_reading or self.client.is_closing():
            return
        self.client_reading = want
        if want:
            self.client.resume_reading()
        else:
            self.client.pause_reading()

    def _apply_upstream(self) -> None:
        up = self.upstream
        want = not self.client_full
        if up is None or want == self.upstream_reading or up.is_closing():
            return
        self.upstream_reading = want
        if want:
            up.resume_reading()
        else:
            up.pause_reading()
