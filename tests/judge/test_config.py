"""Judge configuration: the documented example, and errors that name file and field."""

from __future__ import annotations

import textwrap

import pytest

from bakeoff.judge.config import JudgeConfigError, load_config, parse_duration

EXAMPLE = """\
alpha: 0.05
control: mainline            # name of the control variant
minSamples: 500              # per variant before any decision
maxSamples: 200000           # per variant; or maxDuration: 30m
guardrails:
  - metric: error_rate
    maxIncrease: 0.005       # absolute (percentage points as fraction)
  - metric: latency_p99
    maxIncreaseRatio: 0.05   # relative
  - metric: latency_p50
    maxIncreaseRatio: 0.05
objective:
  metric: conversion         # business metric name from the router; proportion per request
  kind: proportion           # or mean
  direction: higher          # or lower
"""


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_example_config_parses(tmp_path):
    cfg = load_config(write(tmp_path, "judge.yaml", EXAMPLE))
    assert cfg.alpha == 0.05 and cfg.control == "mainline" and cfg.min_samples == 500
    assert cfg.max_samples == 200000 and cfg.max_duration is None
    err, p99, p50 = cfg.guardrails
    assert (err.kind, err.tolerance, err.relative, err.harm) == ("error_rate", 0.005, False, 1)
    assert (p99.kind, p99.quantile, p99.tolerance, p99.relative) == ("latency", 0.99, 0.05, True)
    assert p50.quantile == 0.5
    assert cfg.objective.name == "conversion" and cfg.objective.kind == "proportion" and cfg.objective.harm == -1


def test_whole_bakeoff_document_is_accepted(tmp_path):
    body = "\n".join("      " + line for line in EXAMPLE.splitlines())
    doc = f"apiVersion: bakeoff.dev/v1alpha1\nkind: Bakeoff\nmetadata:\n  name: shop\nspec:\n  mainline: {{url: http://x}}\n  judge:\n{body}\n"
    cfg = load_config(write(tmp_path, "bakeoff.yaml", doc))
    assert len(cfg.guardrails) == 3 and cfg.objective.name == "conversion"


@pytest.mark.parametrize(
    "patch,message",
    [
        (
            ("    maxIncreaseRatio: 0.05   # relative", "    maxIncreaseRatio: -0.05"),
            "judge.yaml: guardrails[1].maxIncreaseRatio must be a non-negative number",
        ),
        (("alpha: 0.05", "alpha: 2"), "judge.yaml: alpha must be a number between 0 and 1"),
        (("minSamples: 500 ", "minSamples: ten "), "judge.yaml: minSamples must be a positive integer"),
        (("  direction: higher", "  direction: up"), "judge.yaml: objective.direction must be 'higher' or 'lower'"),
        (("  kind: proportion ", "  kind: median "), "judge.yaml: objective.kind must be 'proportion' or 'mean'"),
        (("  - metric: latency_p99", "  - metric: latency_high"), "judge.yaml: guardrails[1].metric 'latency_high'"),
        (
            ("    maxIncrease: 0.005", "    maxIncrease: 0.005\n    maxIncreaseRatio: 0.1"),
            "judge.yaml: guardrails[0] needs exactly one of",
        ),
        (("maxSamples: 200000", "maxSamples: 10"), "judge.yaml: maxSamples must be an integer >= minSamples"),
        (("maxSamples: 200000", "maxSamples: 200000\nmaxDuration: soon"), "judge.yaml: maxDuration must be a duration"),
        (("alpha: 0.05", "alpha: 0.05\nalhpa: 0.1"), "judge.yaml: alhpa is not a judge field"),
    ],
)
def test_errors_name_file_and_field(tmp_path, patch, message):
    old, new = patch
    assert old in EXAMPLE
    with pytest.raises(JudgeConfigError) as e:
        load_config(write(tmp_path, "judge.yaml", EXAMPLE.replace(old, new)))
    assert message in str(e.value)


def test_bakeoff_document_errors_carry_the_spec_path(tmp_path):
    doc = """\
    apiVersion: bakeoff.dev/v1alpha1
    kind: Bakeoff
    spec:
      judge:
        guardrails:
          - metric: latency_p99
            maxIncrease: 0.1
    """
    with pytest.raises(
        JudgeConfigError, match=r"bakeoff.yaml: spec.judge.guardrails\[0\].maxIncrease: latency tolerances are relative"
    ):
        load_config(write(tmp_path, "bakeoff.yaml", doc))
    with pytest.raises(JudgeConfigError, match="apiVersion must be"):
        load_config(write(tmp_path, "b2.yaml", doc.replace("bakeoff.dev/v1alpha1", "v0")))


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(JudgeConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(JudgeConfigError, match="bad.yaml: not valid YAML"):
        load_config(write(tmp_path, "bad.yaml", "alpha: [1,"))


@pytest.mark.parametrize("text,seconds", [("30m", 1800), ("2h", 7200), ("90s", 90), ("1h30m", 5400), (45, 45)])
def test_durations(text, seconds):
    assert parse_duration(text, "x") == seconds


def test_bad_duration():
    with pytest.raises(JudgeConfigError, match="maxDuration must be a duration"):
        parse_duration("-5m", "judge.yaml: maxDuration")
