"""The resource schema: valid files parse; invalid ones name the document and the field; nothing starts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bakeoff.controller.gate import evaluate
from bakeoff.controller.journal import Journal
from bakeoff.controller.resources import Gate, ResourceError, load_resources, parse_documents
from tests.controller.conftest import ROOT, bakeoff_doc, variant_doc, write_docs


def docs():
    return [
        bakeoff_doc("shop"),
        variant_doc("cached", "good", bakeoff="shop"),
        variant_doc("fast", "better", bakeoff="shop"),
    ]


def test_a_valid_file_parses_with_the_bonferroni_family_fixed_to_the_candidates(tmp_path):
    res = load_resources(write_docs(tmp_path / "shop.yaml", docs()))
    b = res.bakeoff
    assert b.name == "shop" and b.mainline_name == "mainline"
    assert b.judge.control == "mainline" and b.judge.candidates == 2
    assert b.routing.steps == (0.1, 0.2) and b.routing.step_interval == 2.0
    assert [v.name for v in res.variants] == ["cached", "fast"]
    assert res.variants[0].commit == "c0ffee-cached"


def _bad(mutate):
    d = docs()
    mutate(d)
    return d


BAD = [
    ("missing apiVersion", lambda d: d[1].pop("apiVersion"), "document 1 (Variant 'cached'): apiVersion must be"),
    (
        "unknown kind",
        lambda d: d[2].update(kind="Candidate"),
        "document 2 (Candidate 'fast'): kind must be Bakeoff or Variant",
    ),
    (
        "bad name",
        lambda d: d[1]["metadata"].update(name="Cached!"),
        "document 1 (Variant 'Cached!'): metadata.name must be",
    ),
    (
        "command not a list",
        lambda d: d[2]["spec"].update(command="python app.py"),
        "document 2 (Variant 'fast'): spec.command must be a non-empty list of strings",
    ),
    (
        "command and url",
        lambda d: d[2]["spec"].update(url="http://127.0.0.1:9000"),
        "document 2 (Variant 'fast'): spec needs exactly one of command (a list) or url",
    ),
    (
        "wrong bakeoff",
        lambda d: d[1]["spec"].update(bakeoff="other"),
        "document 1 (Variant 'cached'): spec.bakeoff names 'other', but the file's Bakeoff is 'shop'",
    ),
    (
        "duplicate variant",
        lambda d: d[2]["metadata"].update(name="cached"),
        "document 2 (Variant 'cached'): metadata.name 'cached' is already used by document 1",
    ),
    (
        "variant named like the mainline",
        lambda d: d[2]["metadata"].update(name="mainline"),
        "document 2 (Variant 'mainline'): metadata.name 'mainline' is the mainline's name",
    ),
    (
        "steps not increasing",
        lambda d: d[0]["spec"]["routing"].update(steps=[0.2, 0.1]),
        "document 0 (Bakeoff 'shop'): spec.routing.steps[1] must be larger than the step before",
    ),
    (
        "share above 1",
        lambda d: d[0]["spec"]["routing"].update(maxCandidateShare=1.5),
        "document 0 (Bakeoff 'shop'): spec.routing.maxCandidateShare must be a number above 0 up to 1",
    ),
    (
        "bad stepInterval",
        lambda d: d[0]["spec"]["routing"].update(stepInterval="soon"),
        "document 0 (Bakeoff 'shop'): spec.routing.stepInterval must be a duration",
    ),
    (
        "judge field",
        lambda d: d[0]["spec"]["judge"]["guardrails"][1].update(maxIncreaseRatio=-1),
        "document 0 (Bakeoff 'shop'): spec.judge.guardrails[1].maxIncreaseRatio must be a non-negative number",
    ),
    (
        "judge control mismatch",
        lambda d: d[0]["spec"]["judge"].update(control="other"),
        "document 0 (Bakeoff 'shop'): spec.judge.control must be the mainline's name 'mainline'",
    ),
    (
        "no objective",
        lambda d: d[0]["spec"]["judge"].pop("objective"),
        "document 0 (Bakeoff 'shop'): spec.judge.objective is required",
    ),
    (
        "promotion mode",
        lambda d: d[0]["spec"].update(promotion={"mode": "yolo"}),
        "document 0 (Bakeoff 'shop'): spec.promotion.mode must be one of auto, manual, whenNoRegression, got 'yolo'",
    ),
    (
        "unknown spec field",
        lambda d: d[0]["spec"].update(mainlin={}),
        "document 0 (Bakeoff 'shop'): spec.mainlin is not a known field",
    ),
    (
        "gate severity",
        lambda d: d[1]["spec"].update(gate={"sarif": "x.sarif", "maxSeverity": "critical"}),
        "document 1 (Variant 'cached'): spec.gate.maxSeverity must be one of",
    ),
    (
        "router address",
        lambda d: d[0]["spec"].update(router={"listen": "nowhere"}),
        "document 0 (Bakeoff 'shop'): spec.router.listen must be host:port",
    ),
    ("no bakeoff", lambda d: d.pop(0), "no Bakeoff document"),
    ("no variants", lambda d: (d.pop(2), d.pop(1)), "no Variant documents"),
]


@pytest.mark.parametrize("name,mutate,message", BAD, ids=[b[0] for b in BAD])
def test_invalid_documents_name_the_document_and_field(name, mutate, message):
    with pytest.raises(ResourceError) as e:
        parse_documents(_bad(mutate), "shop.yaml")
    assert str(e.value).startswith("shop.yaml: ")
    assert message.replace("'", '"') in str(e.value).replace("'", '"'), str(e.value)


def test_bakeoff_run_on_an_invalid_file_starts_nothing_and_exits_2(tmp_path):
    marker = tmp_path / "started"
    d = docs()
    d[0]["spec"]["mainline"]["command"] = ["sh", "-c", f"touch {marker}; sleep 30"]
    d[2]["spec"]["gate"] = {"sarif": "r.sarif", "maxSeverity": "fatal"}
    spec = write_docs(tmp_path / "shop.yaml", d)
    r = subprocess.run(
        [sys.executable, "-m", "bakeoff", "run", str(spec), "--state-dir", str(tmp_path / "st")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2
    assert "error: shop.yaml: document 2 (Variant 'fast'): spec.gate.maxSeverity must be one of" in r.stderr
    assert not marker.exists() and not (tmp_path / "st").exists()
    r = subprocess.run(
        [sys.executable, "-m", "bakeoff", "run", str(tmp_path / "missing.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and "missing.yaml: cannot read" in r.stderr


@pytest.mark.parametrize("allocation", ["bandit", "greedy"])
def test_bakeoff_run_refuses_an_allocation_other_than_fixed_or_adaptive(tmp_path, allocation):
    # Issue 19: 'bandit' used to be accepted and silently run the fixed ramp; it is now called adaptive.
    marker = tmp_path / "started"
    d = docs()
    d[0]["spec"]["mainline"]["command"] = ["sh", "-c", f"touch {marker}; sleep 30"]
    d[0]["spec"]["routing"]["allocation"] = allocation
    spec = write_docs(tmp_path / "shop.yaml", d)
    r = subprocess.run(
        [sys.executable, "-m", "bakeoff", "run", str(spec), "--headless", "--state-dir", str(tmp_path / "st")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    where = "error: shop.yaml: document 0 (Bakeoff 'shop'): spec.routing.allocation"
    assert where in r.stderr, r.stderr
    if allocation == "bandit":
        assert "'bandit' is now called 'adaptive': use allocation: adaptive" in r.stderr, r.stderr
    else:
        assert "must be 'fixed' or 'adaptive', got 'greedy'" in r.stderr, r.stderr
    assert not marker.exists() and not (tmp_path / "st").exists()


def test_allocation_adaptive_and_its_fields_are_read(tmp_path):
    d = docs()
    d[0]["spec"]["routing"].update(allocation="adaptive", mainlineFloor=0.3, maxStep=0.05)
    d[0]["spec"]["promotion"] = {"mode": "whenNoRegression", "tieBreak": "error_rate"}
    res = load_resources(write_docs(tmp_path / "shop.yaml", d))
    r = res.bakeoff.routing
    assert (r.allocation, r.mainline_floor, r.max_step, res.bakeoff.tie_break) == ("adaptive", 0.3, 0.05, "error_rate")


@pytest.mark.parametrize(
    ("routing", "promotion", "field", "words"),
    [
        ({"maxStep": 0.05}, None, "spec.routing.maxStep", "applies only to allocation: adaptive"),
        ({"allocation": "adaptive", "mainlineFloor": 1}, None, "spec.routing.mainlineFloor", "must be below 1"),
        ({"allocation": "adaptive", "mainlineFloor": -0.1}, None, "spec.routing.mainlineFloor", "from 0 to 1"),
        ({"allocation": "adaptive", "maxStep": 0}, None, "spec.routing.maxStep", "above 0"),
        ({}, {"tieBreak": "latency_p42"}, "spec.promotion.tieBreak", "must name a metric the judge measures"),
    ],
)
def test_bad_adaptive_fields_name_the_field_and_the_document(tmp_path, routing, promotion, field, words):
    d = docs()
    d[0]["spec"]["routing"].update(routing)
    if promotion is not None:
        d[0]["spec"]["promotion"] = promotion
    with pytest.raises(ResourceError) as e:
        load_resources(write_docs(tmp_path / "shop.yaml", d))
    msg = str(e.value)
    assert f"shop.yaml: document 0 (Bakeoff 'shop'): {field}" in msg and words in msg, msg


def test_allocation_fixed_is_still_accepted(tmp_path):
    d = docs()
    d[0]["spec"]["routing"]["allocation"] = "fixed"
    assert load_resources(write_docs(tmp_path / "shop.yaml", d)).bakeoff.routing.allocation == "fixed"


def _sarif(tmp_path, *levels):
    path = tmp_path / "r.sarif"
    results = [{"ruleId": f"rule{i}", "level": lvl, "message": {"text": "x"}} for i, lvl in enumerate(levels)]
    path.write_text(json.dumps({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "t"}}, "results": results}]}))
    return path


def test_gate_blocks_findings_above_the_ceiling_and_unreadable_reports(tmp_path):
    _sarif(tmp_path, "note", "warning")
    assert evaluate(Gate("r.sarif", "warning"), tmp_path) is None
    why = evaluate(Gate("r.sarif", "note"), tmp_path)
    assert why and "1 warning finding(s) above maxSeverity=note" in why
    _sarif(tmp_path, "error", "error", "note")
    assert "2 error finding(s)" in evaluate(Gate("r.sarif", "warning"), tmp_path)
    assert evaluate(Gate("r.sarif", "error"), tmp_path) is None
    assert "cannot read SARIF" in evaluate(Gate("nope.sarif", "error"), tmp_path)
    assert evaluate(None, tmp_path) is None


def test_journal_survives_a_torn_last_line(tmp_path):
    j = Journal(tmp_path)
    j.append({"type": "admitted", "variant": "a"})
    j.append({"type": "promoted", "variant": "a"})
    with open(j.path, "a") as f:
        f.write('{"type": "promo')  # crash mid-write
    again = Journal(tmp_path)
    assert [r["type"] for r in again.read()] == ["admitted", "promoted"]
    assert again.append({"type": "x"})["seq"] == 3
    assert [r["type"] for r in Journal(tmp_path).read()] == ["admitted", "promoted", "x"]


def test_load_routes_and_promotion_mode_parse(tmp_path):
    from bakeoff.controller.platforms.local import LocalPlatform

    d = docs()
    d[0]["spec"]["load"] = {
        "users": 8,
        "think": "20ms",
        "requests": [
            {"path": "/notes", "weight": 3},
            {"method": "post", "path": "/notes", "json": {"text": "hi"}, "headers": {"X-Tenant": "a"}},
        ],
    }
    d[0]["spec"]["routing"]["routes"] = [{"name": "notes", "match": "/notes*"}]
    d[0]["spec"]["promotion"] = "whenNoRegression"
    del d[0]["spec"]["judge"]["objective"]  # a canary needs no objective
    b = load_resources(write_docs(tmp_path / "shop.yaml", d)).bakeoff
    assert b.promotion == "whenNoRegression" and b.judge.objective is None
    assert b.load.users == 8 and b.load.think == 0.02
    post = b.load.requests[1]
    assert post.method == "POST" and json.loads(post.body) == {"text": "hi"}
    assert dict(post.headers) == {"X-Tenant": "a", "Content-Type": "application/json"}
    # the routes reach the router configuration the local platform writes
    cfg = LocalPlatform(routes=b.routing.routes).router_config()
    assert cfg["routes"] == [{"name": "notes", "match": "/notes*"}]
    assert "routes" not in LocalPlatform().router_config()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s: s.update(load={"users": 4}), "spec.load needs exactly one of requests"),
        (lambda s: s.update(load={"requests": [{"path": "notes"}]}), "spec.load.requests[0].path must be a path"),
        (lambda s: s.update(load={"requests": [{"path": "/", "weight": 0}]}), "spec.load.requests[0].weight must be"),
        (
            lambda s: s.update(load={"requests": [{"path": "/", "method": "FETCH"}]}),
            "requests[0].method must be one of",
        ),
        (lambda s: s.update(load={"requests": [{"path": "/", "body": "x", "json": {}}]}), "has both body and json"),
        (
            lambda s: s["routing"].update(routes=[{"name": "other", "match": "/x"}]),
            "routes[0].name 'other' is reserved",
        ),
        (lambda s: s["routing"].update(routes=[{"name": "a", "match": "x*"}]), "routes[0].match must be a path glob"),
        (
            lambda s: s["routing"].update(routes=[{"name": "a", "match": "/a"}, {"name": "a", "match": "/b"}]),
            "routes[1].name 'a' is already used",
        ),
        (
            lambda s: s["routing"].update(routes=[{"name": f"r{i}", "match": "/x"} for i in range(65)]),
            "spec.routing.routes has 65 routes; at most 64",
        ),
        (lambda s: s["judge"].pop("objective"), "spec.judge.objective is required"),
    ],
)
def test_bad_load_and_routes_name_the_file_and_field(tmp_path, mutate, message):
    d = docs()
    mutate(d[0]["spec"])
    with pytest.raises(ResourceError) as e:
        load_resources(write_docs(tmp_path / "shop.yaml", d))
    assert str(e.value).startswith("shop.yaml: document 0 (Bakeoff 'shop'): ") and message in str(e.value), str(e.value)
