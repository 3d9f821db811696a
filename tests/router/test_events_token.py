"""POST /-/events needs the events token or the admin token (issue 10 item 5)."""

from __future__ import annotations

import aiohttp

from bakeoff.router.config import RouterConfig

EVENT = {"variant": "main", "metric": "purchase", "value": 1}


async def _post(port: int, authorization: str | None) -> tuple[int, dict]:
    headers = {"Authorization": authorization} if authorization is not None else {}
    async with aiohttp.ClientSession() as s:
        async with s.post(f"http://127.0.0.1:{port}/-/events", json=EVENT, headers=headers) as r:
            return r.status, await r.json()


async def test_events_need_the_events_token_or_the_admin_token(upstreams, make_router):
    (a,) = await upstreams("main")
    router = await make_router([a], eventsToken="ev-secret")  # admin token: test-token
    assert (await _post(router.admin_port, None))[0] == 401
    assert (await _post(router.admin_port, "Bearer wrong"))[0] == 401
    assert (await _post(router.admin_port, "ev-secret"))[0] == 401  # the scheme is part of it
    assert (await _post(router.admin_port, "Bearer ev-secret"))[0] == 202
    assert (await _post(router.admin_port, "Bearer test-token"))[0] == 202
    # Only the two accepted events were recorded.
    assert router.snapshot()["variants"]["main"]["metrics"]["purchase"]["count"] == 2


async def test_without_any_token_only_a_loopback_admin_accepts_events(upstreams, make_router):
    (a,) = await upstreams("main")
    local = await make_router([a], token=None)
    status, _ = await _post(local.admin_port, None)
    assert status == 202
    exposed = await make_router([a], token=None, admin="0.0.0.0:0")
    status, body = await _post(exposed.admin_port, None)
    assert status == 403
    assert "eventsToken" in body["error"] and "BAKEOFF_EVENTS_TOKEN" in body["error"]
    assert exposed.snapshot()["variants"]["main"]["metrics"] == {}


async def test_events_token_from_the_command_line_flag(upstreams, router_process):
    (a,) = await upstreams("main")
    proc = router_process({"admin": "0.0.0.0:0", "variants": [{"name": "main", "upstreams": [a.address], "weight": 1}]})
    proc.config_path.write_text(proc.config_path.read_text().replace("0.0.0.0:0", f"0.0.0.0:{proc.admin_port}"))
    proc.start("--events-token", "from-flag")
    assert (await _post(proc.admin_port, None))[0] == 401
    assert (await _post(proc.admin_port, "Bearer from-flag"))[0] == 202


def test_events_token_from_the_environment_and_a_file(monkeypatch, tmp_path):
    monkeypatch.setenv("BAKEOFF_EVENTS_TOKEN", "from-env")
    assert RouterConfig.from_dict({}).events_token == "from-env"
    assert RouterConfig.from_dict({"eventsToken": "in-file"}).events_token == "in-file"
    token_file = tmp_path / "events-token"
    token_file.write_text("from-file\n")
    assert RouterConfig.from_dict({"eventsTokenFile": str(token_file)}).events_token == "from-file"
