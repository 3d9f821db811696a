"""One definition of each resource: the CRDs in the chart are generated from bakeoff.contracts.schema,
and the readers (bakeoff run, the judge's config) know exactly the fields the CRDs declare."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
import yaml

from bakeoff.controller.resources import ResourceError, parse_documents
from bakeoff.judge.config import JudgeConfigError, config_from_dict
from tests.controller.conftest import ROOT

GEN = ROOT / "scripts" / "gen-crds.py"
CRDS = ROOT / "charts" / "bakeoff" / "crds"
EXAMPLES = sorted(ROOT.glob("examples/*/bakeoff.yaml"))


def spec_schema(plural: str) -> dict:
    crd = yaml.safe_load((CRDS / f"{plural}.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def at(schema: dict, path: str) -> dict:
    """The schema of a dotted path below spec ("routing.routes[]" is an item of routes)."""
    for part in filter(None, path.split(".")):
        schema = schema["properties"][part.removesuffix("[]")]
        if part.endswith("[]"):
            schema = schema["items"]
    return schema


def test_the_chart_crds_are_what_the_models_generate():
    out = subprocess.run([sys.executable, str(GEN), "--check"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_hand_edit_of_a_chart_crd_is_caught(tmp_path):
    shutil.copytree(CRDS, tmp_path / "crds")
    path = tmp_path / "crds" / "bakeoffs.yaml"
    text = path.read_text()
    assert "maxItems: 16" in text
    path.write_text(text.replace("maxItems: 16", "maxItems: 17", 1))
    out = subprocess.run(
        [sys.executable, str(GEN), "--check", "--out", str(tmp_path / "crds")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "bakeoffs.yaml" in out.stderr and "run scripts/gen-crds.py" in out.stderr, out.stderr
    assert "-" in out.stdout and "maxItems: 17" in out.stdout, out.stdout  # the diff shows the edit
    assert "variants.yaml" not in out.stderr  # the untouched CRD is not reported


def _walk(doc: dict, schema: dict, where: str, missing: list[str]) -> None:
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key in schema.get("properties", {}):
                _walk(value, schema["properties"][key], f"{where}.{key}", missing)
            elif isinstance(schema.get("additionalProperties"), dict):
                _walk(value, schema["additionalProperties"], f"{where}.{key}", missing)
            else:
                missing.append(f"{where}.{key}")
    elif isinstance(doc, list) and "items" in schema:
        for i, item in enumerate(doc):
            _walk(item, schema["items"], f"{where}[{i}]", missing)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.parent.name)
def test_every_field_of_an_example_is_declared_by_the_crds(example):
    # docs/crds.md: a local file is a valid cluster resource too (kubectl's strict validation
    # refuses a field the CRD does not declare).
    docs = [d for d in yaml.safe_load_all(example.read_text()) if d]
    assert docs, example
    missing: list[str] = []
    for d in docs:
        _walk(d["spec"], spec_schema({"Bakeoff": "bakeoffs", "Variant": "variants"}[d["kind"]]), "spec", missing)
    assert not missing, f"{example.relative_to(ROOT)}: not in the CRD: {missing}"


def _known(make_doc, where: str) -> set[str]:
    """The fields bakeoff run's reader lists when one at ``where`` is unknown."""
    with pytest.raises(ResourceError) as err:
        parse_documents(make_doc(), "x.yaml")
    message = str(err.value)
    assert f"{where}.zzz is not a known field" in message, message
    return set(re.search(r"\(known: ([^)]*)\)", message).group(1).split(", "))


def _bakeoff(**spec_patch):
    spec = {
        "mainline": {"command": ["python", "m.py"]},
        "judge": {"objective": {"metric": "conversion", "kind": "proportion", "direction": "higher"}},
    }
    for path, value in spec_patch.items():
        node = spec
        *head, last = path.split("__")
        for p in head:
            node = node.setdefault(p, {})
        node[last] = value
    return {"apiVersion": "bakeoff.dev/v1alpha1", "kind": "Bakeoff", "metadata": {"name": "b"}, "spec": spec}


VARIANT = {
    "apiVersion": "bakeoff.dev/v1alpha1",
    "kind": "Variant",
    "metadata": {"name": "v"},
    "spec": {"bakeoff": "b", "command": ["python", "v.py"]},
}

READER_PATHS = [
    # (path below spec, the documents with an unknown field "zzz" there, CRD)
    ("", lambda: [_bakeoff(zzz=1), VARIANT], "bakeoffs"),
    ("mainline", lambda: [_bakeoff(mainline__zzz=1), VARIANT], "bakeoffs"),
    ("routing", lambda: [_bakeoff(routing__zzz=1), VARIANT], "bakeoffs"),
    (
        "routing.routes[]",
        lambda: [_bakeoff(routing__routes=[{"name": "a", "match": "/", "zzz": 1}]), VARIANT],
        "bakeoffs",
    ),
    ("promotion", lambda: [_bakeoff(promotion__zzz=1), VARIANT], "bakeoffs"),
    ("router", lambda: [_bakeoff(router__zzz=1), VARIANT], "bakeoffs"),
    ("load", lambda: [_bakeoff(load__zzz=1), VARIANT], "bakeoffs"),
    ("load.requests[]", lambda: [_bakeoff(load__requests=[{"path": "/", "zzz": 1}]), VARIANT], "bakeoffs"),
    ("", lambda: [_bakeoff(), {**VARIANT, "spec": {**VARIANT["spec"], "zzz": 1}}], "variants"),
    ("change", lambda: [_bakeoff(), {**VARIANT, "spec": {**VARIANT["spec"], "change": {"zzz": 1}}}], "variants"),
    (
        "gate",
        lambda: [_bakeoff(), {**VARIANT, "spec": {**VARIANT["spec"], "gate": {"sarif": "r", "zzz": 1}}}],
        "variants",
    ),
]


@pytest.mark.parametrize("path,make_doc,plural", READER_PATHS, ids=[f"{p[2]}:spec.{p[0]}" for p in READER_PATHS])
def test_bakeoff_run_knows_the_fields_the_crd_declares(path, make_doc, plural):
    where = ("spec." + path).rstrip(".").replace("[]", "[0]")
    assert _known(make_doc, where) == set(at(spec_schema(plural), path)["properties"])


@pytest.mark.parametrize("path", ["judge", "judge.guardrails[]", "judge.objective"])
def test_the_judge_knows_the_fields_the_crd_declares(path):
    judge = {"objective": {"metric": "conversion", "kind": "proportion", "direction": "higher"}}
    if path == "judge":
        judge["zzz"] = 1
    elif path == "judge.objective":
        judge["objective"]["zzz"] = 1
    else:
        judge["guardrails"] = [{"metric": "error_rate", "maxIncrease": 0.01, "zzz": 1}]
    with pytest.raises(JudgeConfigError) as err:
        config_from_dict(judge, "j.yaml")
    allowed = set(re.search(r"\(allowed: ([^)]*)\)", str(err.value)).group(1).split(", "))
    declared = set(at(spec_schema("bakeoffs"), path)["properties"])
    if path == "judge.guardrails[]":  # the reader names direction to say it belongs to the objective
        declared.add("direction")
    assert allowed == declared, str(err.value)


def test_shared_constants_are_defined_once():
    from bakeoff.contracts import resources as contracts
    from bakeoff.contracts.snapshot import MAX_ROUTES
    from bakeoff.controller import resources as controller
    from bakeoff.router import config as router

    assert controller.NAME_RE is contracts.NAME_RE and router.NAME_RE is contracts.NAME_RE
    assert controller.HEADER_RE is contracts.HEADER_RE and router.HEADER_RE is contracts.HEADER_RE
    assert router.RouteSpec is contracts.Route and controller.Route is contracts.Route
    assert controller.Routing().sticky_header == contracts.DEFAULT_STICKY_HEADER
    spec = spec_schema("bakeoffs")
    assert at(spec, "mainline.name")["pattern"] == contracts.NAME_PATTERN
    assert at(spec, "routing.routes[].name")["pattern"] == contracts.NAME_PATTERN
    assert at(spec, "routing.stickiness.header")["pattern"] == contracts.HEADER_PATTERN
    assert at(spec, "routing.stickiness")["default"] == {"header": contracts.DEFAULT_STICKY_HEADER}
    assert at(spec, "routing.routes")["maxItems"] == MAX_ROUTES


def test_the_readers_defaults_are_the_defaults_the_api_server_fills_in():
    from bakeoff.common.durations import parse_duration

    gated = {**VARIANT, "spec": {**VARIANT["spec"], "gate": {"sarif": "r.sarif"}}}
    res = parse_documents([_bakeoff(), gated], "x.yaml")
    b, v = res.bakeoff, res.variants[0]
    spec, vspec = spec_schema("bakeoffs"), spec_schema("variants")
    assert b.mainline_name == at(spec, "mainline.name")["default"]
    assert b.mainline.health_path == at(spec, "mainline.healthPath")["default"] == at(vspec, "healthPath")["default"]
    assert v.workload.health_path == at(vspec, "healthPath")["default"]
    assert {"header": b.routing.sticky_header} == at(spec, "routing.stickiness")["default"]
    assert b.routing.max_candidate_share == at(spec, "routing.maxCandidateShare")["default"]
    assert list(b.routing.steps) == at(spec, "routing.steps")["default"]
    assert b.routing.step_interval == parse_duration(at(spec, "routing.stepInterval")["default"], "x")
    assert b.routing.allocation == at(spec, "routing.allocation")["default"]
    assert b.judge.alpha == at(spec, "judge.alpha")["default"]
    assert b.judge.min_samples == at(spec, "judge.minSamples")["default"]
    assert b.look_interval == parse_duration(at(spec, "judge.interval")["default"], "x")
    assert b.promotion == at(spec, "promotion.mode")["default"]
    assert v.gate is not None and v.gate.max_severity == at(vspec, "gate.maxSeverity")["default"]


@pytest.mark.parametrize("field,crd_key", [("effectSize", "maximum"), ("alphaWeight", "maximum")])
def test_the_judge_takes_a_metrics_limits_from_the_crd(field, crd_key):
    """Issue 17 item 2: effectSize and alphaWeight end where the CRD says, by one definition."""
    limit = at(spec_schema("bakeoffs"), "judge.guardrails[]")["properties"][field][crd_key]

    def judge(value):
        return {"guardrails": [{"metric": "error_rate", "maxIncrease": 0.01, field: value}]}

    assert getattr(config_from_dict(judge(limit), "j.yaml").guardrails[0], re.sub("([A-Z])", r"_\1", field).lower())
    with pytest.raises(JudgeConfigError, match=rf"guardrails\[0\]\.{field} must be at most {limit}"):
        config_from_dict(judge(limit * 1.01), "j.yaml")


def test_the_readers_take_patterns_from_the_crd():
    """The metric name and host:port: the CRD's pattern is the readers' (the judge's, bakeoff run's)."""
    from bakeoff.judge import config as judge_config

    spec = spec_schema("bakeoffs")
    assert judge_config._METRIC_NAME_RE.pattern == at(spec, "judge.guardrails[].metric")["pattern"]
    rule = at(spec, "router.listen")["x-kubernetes-validations"][0]["rule"]
    from bakeoff.contracts.schema import HOST_PORT_PATTERN

    assert HOST_PORT_PATTERN.replace("\\", "\\\\") in rule
    for bad in ("h:1:2", "h:123456", "h:99999", "a b:80"):
        with pytest.raises(ResourceError, match="spec.router.listen must be host:port"):
            parse_documents([_bakeoff(router={"listen": bad}), VARIANT], "x.yaml")
