"""The runner's check that the load fits the service: a stop only when every variant mostly fails."""

from __future__ import annotations

from bakeoff.controller.runner import bad_traffic


def snap(**variants):
    return {
        "variants": {
            n: {"requests": sum(o.values()), "outcomes": {k: v for k, v in o.items()}} for n, o in variants.items()
        }
    }


def test_mostly_failing_on_every_variant_stops_with_the_shares_named():
    why = bad_traffic(snap(main={"2xx": 10, "4xx": 190}, a={"4xx": 60, "5xx": 30, "2xx": 10}))
    assert why is not None and "main 95% (4xx 95%)" in why and "a 90% (4xx 60%)" in why and "spec.load" in why


def test_one_bad_candidate_too_little_traffic_or_half_good_is_the_judges_business():
    assert bad_traffic(snap(main={"2xx": 300}, a={"5xx": 100})) is None  # only one variant fails
    assert bad_traffic(snap(main={"4xx": 100}, a={"4xx": 60})) is None  # fewer than 200 requests in all
    assert bad_traffic(snap(main={"2xx": 120, "4xx": 130}, a={"2xx": 100, "4xx": 60})) is None
    # a variant with too few requests to say does not veto, nor count
    assert bad_traffic(snap(main={"4xx": 250}, a={"2xx": 10})) is not None


def test_latency_guardrails_at_very_unequal_shares_are_warned_about(tmp_path):
    from bakeoff.controller.resources import load_resources
    from bakeoff.controller.runner import unequal_share_warning
    from tests.controller.conftest import bakeoff_doc, variant_doc, write_docs

    docs = [bakeoff_doc(), variant_doc("a", "good"), variant_doc("b", "good")]
    # steps [0.1, 0.2] with two candidates: each at 20%, the mainline at 60%
    assert "mainline at 60% with each candidate at 20%" in unequal_share_warning(
        load_resources(write_docs(tmp_path / "a.yaml", docs))
    )
    docs[0]["spec"]["routing"].update(steps=[0.33], maxCandidateShare=0.67)
    assert unequal_share_warning(load_resources(write_docs(tmp_path / "b.yaml", docs))) is None
