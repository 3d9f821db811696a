"""VariantStats.record_wire_metric (a metric header's name as sent) records what record_metric records."""

from __future__ import annotations

import random

from bakeoff.router.stats import VariantStats


def test_wire_names_in_any_case_record_as_the_lower_cased_name_does() -> None:
    rng = random.Random(3)
    names = [b"revenue", b"Revenue", b"REVENUE", b"cost", b"Cost", b"\xe9t\xe9", b""]
    values = [b"1.5", b"-2", b"0", b"1e3", b"nan", b"inf", b"-inf", b"x", b"", b" 7 ", b"1_0"]
    wire, ref = VariantStats([]), VariantStats([])
    for _ in range(3_000):
        name, value = rng.choice(names), rng.choice(values)
        wire.record_wire_metric(name, value)
        ref.record_metric(name.lower().decode("latin-1"), value)
    assert wire.to_json() == ref.to_json()
    assert wire.invalid_metrics > 0 and set(wire.metrics) == {"revenue", "cost", "\xe9t\xe9", ""}


def test_the_wire_names_kept_are_bounded() -> None:
    stats = VariantStats([])
    for i in range(1_000):
        stats.record_wire_metric(b"m%d" % i, b"1")
    assert len(stats.metrics) == 1_000 and len(stats._wire_names) <= 64
