"""The operator's status.history records (bakeoff.controller.kube.status): what a record keeps of a
plan event, so that the cluster dashboard can chart shares over time from them."""

from __future__ import annotations

from bakeoff.controller.kube.status import history_entry, routing_for
from bakeoff.controller.reconcile import ControllerState


def test_an_allocated_record_keeps_its_shares_and_other_records_only_scalars():
    alloc = history_entry(
        {"type": "allocated", "variant": None, "reason": "r", "shares": {"a": 0.2, "b": 0.1}, "at": 0.0}
    )
    assert alloc == {"type": "allocated", "reason": "r", "shares": {"a": 0.2, "b": 0.1}, "at": "1970-01-01T00:00:00Z"}
    other = history_entry({"type": "ramped", "variant": "a", "share": 0.2, "targets": {"a": 0.3}, "at": 0.0})
    assert "targets" not in other and other["share"] == 0.2


def test_routing_entries_carry_each_variants_commit():
    st = ControllerState.new("shop", "mainline", ["fast", "slow"])
    st.weights = {"mainline": 0.8, "fast": 0.1, "slow": 0.1}
    r = routing_for("shop", "mainline", st, 8080, False, None, {"fast": "f4st", "slow": None})
    assert {e["name"]: e.get("commit") for e in r["variants"]} == {"fast": "f4st", "mainline": None, "slow": None}
    # the same split and commits again: no new version
    assert routing_for("shop", "mainline", st, 8080, False, r, {"fast": "f4st"}) is r
