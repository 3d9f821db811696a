"""A Service port's appProtocol chooses how the router speaks to a variant (bakeoff.router.cluster)."""

from __future__ import annotations

import pytest

from bakeoff.router.cluster import build_table, slice_views


def _slice(service: str, app_protocol: str | None, port: int = 9000) -> dict:
    p = {"name": "http", "port": port, "protocol": "TCP"}
    if app_protocol is not None:
        p["appProtocol"] = app_protocol
    return {
        "metadata": {"name": f"{service}-x", "labels": {"kubernetes.io/service-name": service}},
        "ports": [p],
        "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}}],
    }


@pytest.mark.parametrize(
    ("app_protocol", "expected"),
    [("grpc", "h2c"), ("h2c", "h2c"), ("kubernetes.io/h2c", "h2c"), (None, "http1"), ("http", "http1")],
)
def test_app_protocol_chooses_the_upstream_protocol(app_protocol, expected):
    bakeoff = {"status": {"routing": {"version": 3, "variants": [{"name": "v", "service": "svc", "weight": 1}]}}}
    table, why = build_table(bakeoff, slice_views([_slice("svc", app_protocol)]))
    assert table is not None, why
    (variant,) = table.variants
    assert variant.protocol == expected and variant.upstreams == (("10.0.0.1", 9000),)
