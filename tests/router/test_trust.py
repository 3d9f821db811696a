"""What the router tells clients and the statistics when a side leaves early (issue 16, router).

All against `python -m bakeoff router` in a child process, with real sockets
on 127.0.0.1 and curl as the client where a real client's behaviour matters:

- an upstream that resets in the middle of a body delimited by its close is
  an incomplete response for the client and an upstream failure in the
  statistics, while an orderly close still ends such a body;
- a client that gives up (curl --max-time) is counted aborted and its
  upstream request cancelled, or finished when `onClientAbort: finish`;
  a client that really half-closes and still reads gets its response;
- a second Cookie line (or a repeated sticky header) does not lose the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import struct

import pytest

from tests.conftest import eventually_async, require_tool
from tests.router.conftest import free_port, get_json

CURL = shutil.which("curl")
NGINX = shutil.which("nginx") or (os.path.exists("/usr/sbin/nginx") and "/usr/sbin/nginx") or None


@pytest.fixture
def needs_curl():
    require_tool(CURL, "curl", "apt-get install curl")


@pytest.fixture
def needs_nginx():
    require_tool(NGINX, "nginx", "apt-get install nginx-light")


async def _outcomes(router, variant: str) -> dict:
    _, snap = await get_json(f"http://127.0.0.1:{router.admin_port}/-/snapshot")
    v = snap["variants"][variant]
    return {"requests": v["requests"], **v["outcomes"]}


async def _curl(*args: str) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        CURL, "-sS", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out, err


async def _read_all(reader: asyncio.StreamReader, timeout: float = 30.0) -> bytes:
    chunks = []
    with contextlib.suppress(ConnectionError):
        while data := await asyncio.wait_for(reader.read(65536), timeout):
            chunks.append(data)
    return b"".join(chunks)


# -- 1. an upstream reset is not the end of a read-until-close body ------------------


async def _until_close_upstream(reset: bool) -> tuple[asyncio.AbstractServer, int]:
    """Answers without Content-Length or chunked (the body runs to the close), then resets or closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"x" * 1000)
        await writer.drain()
        if reset:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.usefixtures("needs_curl")
@pytest.mark.parametrize("reset", [True, False], ids=["reset", "orderly-close"])
async def test_upstream_reset_mid_body_is_incomplete_for_client_and_a_failure(router_process, reset):
    server, port = await _until_close_upstream(reset)
    try:
        router = router_process({"variants": [{"name": "eof", "upstreams": [f"127.0.0.1:{port}"]}]}).start()
        url = f"http://127.0.0.1:{router.port}/"
        rc, body, err = await _curl("-o", "-", url)

        # The raw bytes: the router re-frames such a body as chunked for HTTP/1.1.
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        raw = await _read_all(reader)
        writer.close()

        async def both_counted():
            o = await _outcomes(router, "eof")
            return o if o["requests"] == 2 else None

        outcomes = await eventually_async(both_counted, what="two requests counted")
        assert raw.startswith(b"HTTP/1.1 200 ")
        assert b"Transfer-Encoding: chunked" in raw
        if reset:
            # As nginx: the head and what came of the body, no terminal chunk, closed.
            assert rc == 18, (rc, err)  # curl: "transfer closed with outstanding read data remaining"
            assert not raw.endswith(b"0\r\n\r\n")
            assert raw.endswith(b"x" * 1000 + b"\r\n")
            assert outcomes["connect_error"] == 2 and outcomes["2xx"] == 0, outcomes
        else:
            assert rc == 0, (rc, err)
            assert body == b"x" * 1000
            assert raw.endswith(b"x" * 1000 + b"\r\n0\r\n\r\n")
            assert outcomes["2xx"] == 2 and outcomes["connect_error"] == 0, outcomes
    finally:
        server.close()


@pytest.mark.usefixtures("needs_curl", "needs_nginx")
@pytest.mark.parametrize("reset", [True, False], ids=["reset", "orderly-close"])
async def test_until_close_body_ends_for_curl_as_it_does_through_nginx(router_process, tmp_path, reset):
    """The reference: curl's verdict through nginx and through the router on the same upstream agree."""
    server, port = await _until_close_upstream(reset)
    nginx_port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"""daemon off; master_process off; pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log warn;
{"user root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/cb; proxy_temp_path {tmp_path}/px; fastcgi_temp_path {tmp_path}/fc;
    uwsgi_temp_path {tmp_path}/uw; scgi_temp_path {tmp_path}/sc;
    server {{
        listen 127.0.0.1:{nginx_port};
        location / {{ proxy_pass http://127.0.0.1:{port}; proxy_http_version 1.1; proxy_buffering off; }}
    }}
}}
"""
    )
    nginx = await asyncio.create_subprocess_exec(
        NGINX, "-p", str(tmp_path), "-c", str(conf), stderr=asyncio.subprocess.DEVNULL
    )
    try:

        async def listening():
            with contextlib.suppress(OSError):
                _, w = await asyncio.open_connection("127.0.0.1", nginx_port)
                w.close()
                return True
            assert nginx.returncode is None, (tmp_path / "error.log").read_text()
            return False

        await eventually_async(listening, what="nginx to listen")
        router = router_process({"variants": [{"name": "eof", "upstreams": [f"127.0.0.1:{port}"]}]}).start()
        via_nginx, _, _ = await _curl("-o", "/dev/null", f"http://127.0.0.1:{nginx_port}/")
        via_router, _, _ = await _curl("-o", "/dev/null", f"http://127.0.0.1:{router.port}/")
        assert via_router == via_nginx == (18 if reset else 0), (via_router, via_nginx)
    finally:
        server.close()
        if nginx.returncode is None:
            nginx.terminate()
            await nginx.wait()


# -- 2. a client that gives up with a FIN --------------------------------------------


class SlowUpstream:
    """Answers /slow after `delay` seconds unless the router closes the connection first.

    Keep-alive; counts connections, requests, cancelled and answered requests.
    """

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.connections = 0
        self.requests = 0
        self.cancelled = 0
        self.answered = 0
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> SlowUpstream:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            self.requests += 1
            if head.split(b" ", 2)[1] == b"/slow":
                try:
                    # Working on it; an EOF from the router is a cancellation.
                    await asyncio.wait_for(reader.read(1), self.delay)
                    self.cancelled += 1
                    writer.close()
                    return
                except TimeoutError:
                    pass
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            await writer.drain()
            self.answered += 1

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def _router_for(router_process, up: SlowUpstream, *args: str, **extra):
    config = {"variants": [{"name": "slow", "upstreams": [f"127.0.0.1:{up.port}"]}], **extra}
    return router_process(config).start(*args)


@pytest.mark.usefixtures("needs_curl")
async def test_client_giving_up_is_aborted_and_its_upstream_request_cancelled(router_process):
    up = await SlowUpstream(delay=8).start()
    try:
        router = _router_for(router_process, up)
        rc, _, _ = await _curl("--max-time", "1", f"http://127.0.0.1:{router.port}/slow")
        assert rc == 28  # curl: operation timed out; it closed its socket

        async def counted():
            o = await _outcomes(router, "slow")
            return o if o["requests"] == 1 else None

        outcomes = await eventually_async(counted, what="the request to be counted")
        assert outcomes["aborted"] == 1 and outcomes["2xx"] == 0, outcomes
        _, snap = await get_json(f"http://127.0.0.1:{router.admin_port}/-/snapshot")
        latency = snap["variants"]["slow"]["latency"]
        assert latency["sum"] < up.delay  # the time to the abort, not the upstream's full latency
        await eventually_async(lambda: up.cancelled == 1, what="the upstream request to be cancelled")
        assert up.answered == 0
        log = router.log_path.read_text()
        assert "client closed the connection before its response was complete" in log
    finally:
        up.close()


@pytest.mark.usefixtures("needs_curl")
@pytest.mark.parametrize("workers", [1, 2])
async def test_client_giving_up_with_on_client_abort_finish_lets_upstream_finish(router_process, workers):
    up = await SlowUpstream(delay=2).start()
    try:
        router = _router_for(router_process, up, "--workers", str(workers), onClientAbort="finish")
        rc, _, _ = await _curl("--max-time", "0.5", f"http://127.0.0.1:{router.port}/slow")
        assert rc == 28

        async def counted():
            o = await _outcomes(router, "slow")
            return o if o["requests"] == 1 else None

        outcomes = await eventually_async(counted, what="the request to be counted")
        assert outcomes["aborted"] == 1 and outcomes["2xx"] == 0, outcomes
        await eventually_async(lambda: up.answered == 1, what="the upstream to finish the request")
        assert up.cancelled == 0
        # The finished connection went back to the pool and serves the next request.
        rc, body, err = await _curl(f"http://127.0.0.1:{router.port}/fast")
        assert (rc, body) == (0, b"hello"), err
        if workers == 1:  # with two, the next request may land on the other worker's pool
            assert up.connections == 1 and up.requests == 2

        async def both():
            o = await _outcomes(router, "slow")
            return o if o["requests"] == 2 else None

        outcomes = await eventually_async(both, what="both requests counted")
        assert outcomes["aborted"] == 1 and outcomes["2xx"] == 1, outcomes  # counted once each
    finally:
        up.close()


@pytest.mark.parametrize("version", [b"1.1", b"1.0"])
async def test_client_that_half_closes_and_reads_gets_its_response(router_process, version):
    up = await SlowUpstream(delay=1).start()
    try:
        router = _router_for(router_process, up)
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        writer.write(b"GET /slow HTTP/" + version + b"\r\nHost: h\r\n\r\n")
        await writer.drain()
        writer.write_eof()  # half-close: no more requests, still reading
        raw = await _read_all(reader)
        writer.close()
        # An HTTP/1.1 client may first see a 100 (Continue): the router's probe of the half-close.
        if version == b"1.1" and raw.startswith(b"HTTP/1.1 100 "):
            raw = raw[raw.index(b"\r\n\r\n") + 4 :]
        assert raw.startswith(b"HTTP/1.1 200 "), raw
        assert raw.endswith(b"\r\n\r\nhello")

        async def counted():
            o = await _outcomes(router, "slow")
            return o if o["requests"] == 1 else None

        outcomes = await eventually_async(counted, what="the request to be counted")
        assert outcomes["2xx"] == 1 and outcomes["aborted"] == 0, outcomes
        assert up.answered == 1 and up.cancelled == 0
    finally:
        up.close()


# -- 3. the sticky key on any of several lines ----------------------------------------


async def _variant_of(port: int, head_lines: list[bytes], http10: bool = False) -> str:
    version = b"HTTP/1.0" if http10 else b"HTTP/1.1"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / " + version + b"\r\nHost: h\r\nConnection: close\r\n" + b"".join(head_lines) + b"\r\n")
    raw = await _read_all(reader)
    writer.close()
    for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"x-bakeoff-variant":
            return value.strip().decode()
    raise AssertionError(f"no X-Bakeoff-Variant in {raw[:300]!r}")


@pytest.mark.parametrize("http10", [False, True], ids=["fast-path", "general-path"])
async def test_sticky_cookie_survives_a_second_cookie_line(router_process, upstreams, http10):
    ups = await upstreams("main", "b")
    variants = [{"name": u.name, "upstreams": [u.address], "weight": 50} for u in ups]
    router = router_process({"variants": variants, "stickiness": {"cookie": "uid"}}).start()
    moved = []
    for i in range(40):
        alone = await _variant_of(router.port, [b"Cookie: uid=u%d\r\n" % i], http10)
        forms = [
            [b"Cookie: uid=u%d\r\n" % i, b"Cookie: theme=dark\r\n"],
            [b"Cookie: theme=dark\r\n", b"Cookie: uid=u%d; lang=en\r\n" % i, b"Cookie: cart=7\r\n"],
        ]
        for lines in forms:
            got = await _variant_of(router.port, lines, http10)
            if got != alone:
                moved.append((i, lines, alone, got))
    assert moved == [], f"{len(moved)} of 80 requests left their user's variant: {moved[:3]}"


async def test_repeated_sticky_header_keeps_the_first_key(router_process, upstreams):
    ups = await upstreams("main", "b")
    variants = [{"name": u.name, "upstreams": [u.address], "weight": 50} for u in ups]
    router = router_process({"variants": variants, "stickiness": {"header": "X-User-Id"}}).start()
    moved = []
    for i in range(40):
        alone = await _variant_of(router.port, [b"X-User-Id: u%d\r\n" % i])
        got = await _variant_of(router.port, [b"X-User-Id: u%d\r\n" % i, b"X-User-Id: other%d\r\n" % i])
        if got != alone:
            moved.append(i)
    assert moved == [], f"{len(moved)} of 40 users moved by a repeated X-User-Id"


def test_on_client_abort_with_a_bad_value_is_refused_naming_file_and_field(tmp_path):
    import subprocess
    import sys

    from tests.router.conftest import ROOT

    config = tmp_path / "router.yaml"
    config.write_text("onClientAbort: ignore\nvariants: [{name: a, upstreams: [127.0.0.1:1]}]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "bakeoff", "router", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode != 0
    assert f"{config}: onClientAbort must be one of cancel, finish, got 'ignore'" in proc.stderr + proc.stdout
