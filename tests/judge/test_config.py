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


# -- the control of a Bakeoff file is its mainline (issue 12 item 6) --------------------

BAKEOFF_STABLE = """\
apiVersion: bakeoff.dev/v1alpha1
kind: Bakeoff
metadata: {name: shop}
spec:
  mainline: {name: stable, url: "http://127.0.0.1:1"}
  judge:
    minSamples: 200
    guardrails:
      - {metric: latency_p50, maxIncreaseRatio: 0.05}
    objective: {metric: conversion, kind: proportion, direction: higher}
"""


def test_bakeoff_file_control_is_the_mainline_name(tmp_path):
    cfg = load_config(write(tmp_path, "bakeoff.yaml", BAKEOFF_STABLE))
    assert cfg.control == "stable"
    with pytest.raises(JudgeConfigError, match=r"b.yaml: spec.judge.control must be the mainline's name 'stable'"):
        load_config(
            write(tmp_path, "b.yaml", BAKEOFF_STABLE.replace("minSamples: 200", "minSamples: 200\n    control: x"))
        )
    default = BAKEOFF_STABLE.replace("name: stable, ", "")
    assert load_config(write(tmp_path, "c.yaml", default)).control == "mainline"


def test_bakeoff_judge_cli_judges_against_the_mainline_of_a_bakeoff_file(tmp_path):
    """The real entry point, as a user runs it: `python -m bakeoff judge --config <Bakeoff file>`."""
    import json
    import subprocess
    import sys

    import numpy as np

    from bakeoff.judge.simulate import Arm, Stream

    stream = Stream({"stable": Arm(), "slow": Arm(median=0.14)}, np.random.default_rng(1))
    stream.advance(2000)
    (tmp_path / "snap.json").write_text(json.dumps(stream.snapshot()))
    cfg = write(tmp_path, "bakeoff.yaml", BAKEOFF_STABLE)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bakeoff",
            "judge",
            "--config",
            str(cfg),
            "--snapshot",
            str(tmp_path / "snap.json"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    verdict = json.loads(proc.stdout.strip().splitlines()[-1])
    assert verdict["control"] == "stable"
    assert verdict["decision"]["rollback"] == ["slow"]


# -- alphaWeight: weighted Bonferroni (issue 12 item 7) ------------------------------------


def test_alpha_weight_is_validated_and_normalised(tmp_path):
    from bakeoff.judge.core import metric_level

    text = EXAMPLE.replace("    maxIncrease: 0.005", "    maxIncrease: 0.005\n    alphaWeight: 3")
    cfg = load_config(write(tmp_path, "judge.yaml", text))
    err, p99, p50 = cfg.guardrails
    assert err.alpha_weight == 3 and p99.alpha_weight == 1
    # weights 3, 1, 1 and the objective's 1: shares 3/6, 1/6, 1/6, 1/6 of alpha per candidate
    assert metric_level(cfg, err, 2) == pytest.approx(0.05 / 2 * 3 / 6)
    assert metric_level(cfg, p50, 2) == pytest.approx(0.05 / 2 * 1 / 6)
    total = sum(metric_level(cfg, s, 2) for s in cfg.metrics) * 2
    assert total == pytest.approx(0.05)  # the levels add up to alpha: family-wise error kept
    for bad in ("0", "-1", "many", "true"):
        with pytest.raises(
            JudgeConfigError, match=r"judge.yaml: guardrails\[0\].alphaWeight must be a positive number"
        ):
            load_config(
                write(
                    tmp_path,
                    "judge.yaml",
                    EXAMPLE.replace("    maxIncrease: 0.005", f"    maxIncrease: 0.005\n    alphaWeight: {bad}"),
                )
            )


def test_alpha_weight_buys_power_for_the_weighted_guardrail():
    """A larger weight on error_rate finds the same error regression with fewer requests."""
    import numpy as np

    from bakeoff.judge.simulate import Arm

    from .conftest import make_config, run_stream

    def median_n(weight):
        cfg = make_config(
            maxSamples=30000,
            guardrails=[
                {"metric": "error_rate", "maxIncrease": 0.0, "alphaWeight": weight},
                {"metric": "latency_p99", "maxIncreaseRatio": 0.05},
                {"metric": "latency_p50", "maxIncreaseRatio": 0.02},
            ],
            candidates=4,
        )
        ns = []
        for r in range(12):
            d, n, _ = run_stream(cfg, {"mainline": Arm(), "v": Arm(error_rate=0.02)}, 7000 + r, batch=500)
            ns.append(n if d.rollback == ["v"] else np.inf)
        return float(np.median(ns))

    assert median_n(4.0) < median_n(1.0)


# -- unknown metric names are errors (issue 13 item 5) --------------------------------------


@pytest.mark.parametrize(
    "name,hint",
    [
        ("p95_latency", "latency_p95"),
        ("latency95", None),
        ("error-rate", "error_rate"),
        ("errors", "error_rate"),
        ("convertion", None),
    ],
)
def test_a_misspelt_metric_is_an_error_naming_field_and_file(tmp_path, name, hint):
    text = EXAMPLE.replace("  - metric: latency_p99", f"  - metric: {name}")
    with pytest.raises(JudgeConfigError) as e:
        load_config(write(tmp_path, "judge.yaml", text))
    msg = str(e.value)
    assert msg.startswith(f"judge.yaml: guardrails[1].metric {name!r}"), msg
    if hint:
        assert f"did you mean {hint!r}" in msg
    if not name.startswith("latency"):
        assert "guardrails[1].kind: proportion or mean" in msg


def test_objective_typo_is_an_error_and_declared_business_metrics_are_fine(tmp_path):
    with pytest.raises(JudgeConfigError, match=r"judge.yaml: objective.metric 'conversoin' is not a built-in metric"):
        load_config(
            write(
                tmp_path,
                "judge.yaml",
                EXAMPLE.replace("  kind: proportion ", "  # no kind ").replace(
                    "metric: conversion ", "metric: conversoin "
                ),
            )
        )
    text = EXAMPLE
    cfg = load_config(
        write(
            tmp_path,
            "ok.yaml",
            text.replace(
                "  - metric: latency_p50\n    maxIncreaseRatio: 0.05\n",
                "  - metric: basket_value\n    kind: mean\n    maxDecreaseRatio: 0.05\n",
            ),
        )
    )
    assert [g.name for g in cfg.guardrails][-1] == "basket_value"


def test_every_shipped_example_still_parses():
    from bakeoff.common.paths import examples_dir

    files = [p for p in examples_dir().rglob("*.yaml") if "kind: Bakeoff" in p.read_text()]
    assert files
    for p in files:
        assert load_config(p).guardrails or load_config(p).objective
