"""The Bakeoff and Variant CRDs (charts/bakeoff/crds/) against a real kube-apiserver."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from bakeoff.controller.resources import parse_documents

from .conftest import GROUP, ROOT, VERSION

kclient = pytest.importorskip("kubernetes.client")

SHOP = ROOT / "examples" / "shop" / "bakeoff.yaml"
NS = "crd-test"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


@pytest.fixture(scope="module")
def custom(kube, crds):
    core = kclient.CoreV1Api(kube.api)
    core.create_namespace({"metadata": {"name": NS}})
    return kclient.CustomObjectsApi(kube.api)


def shop_documents() -> list[dict]:
    return [d for d in yaml.safe_load_all(SHOP.read_text()) if d]


def plural(doc: dict) -> str:
    return {"Bakeoff": "bakeoffs", "Variant": "variants"}[doc["kind"]]


def create(custom, doc: dict) -> dict:
    return custom.create_namespaced_custom_object(GROUP, VERSION, NS, plural(doc), doc)


def get(custom, kind_plural: str, name: str) -> dict:
    return custom.get_namespaced_custom_object(GROUP, VERSION, NS, kind_plural, name)


def minimal_bakeoff(name: str) -> dict:
    """The smallest cluster Bakeoff: a mainline Deployment and an objective."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Bakeoff",
        "metadata": {"name": name},
        "spec": {
            "mainline": {"deployment": "shop"},
            "judge": {"objective": {"metric": "conversion", "kind": "proportion", "direction": "higher"}},
        },
    }


def minimal_variant(name: str, bakeoff: str = "shop") -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Variant",
        "metadata": {"name": name},
        "spec": {"bakeoff": bakeoff, "image": "registry.example/shop:3f2a9c1"},
    }


def raw_get(kube, path: str, accept: str = "application/json") -> dict:
    """GET PATH with an explicit Accept header (the typed client cannot ask for a Table)."""
    resp = kube.api.call_api(
        "GET", kube.url + path, header_params={"Accept": accept, "Authorization": f"Bearer {kube.token}"}
    )
    assert resp.status == 200, resp.read()
    return json.loads(resp.read())


def test_crds_are_established(kube, crds):
    ext = kclient.ApiextensionsV1Api(kube.api)
    assert sorted(crds) == ["bakeoffs.bakeoff.dev", "variants.bakeoff.dev"]
    for name in crds:
        crd = ext.read_custom_resource_definition(name)
        conds = {c.type: c.status for c in crd.status.conditions}
        assert conds["Established"] == "True" and conds["NamesAccepted"] == "True"
        assert crd.spec.scope == "Namespaced"
        assert [v.name for v in crd.spec.versions] == [VERSION]
        assert crd.spec.versions[0].subresources.status == {}


def test_shop_example_is_accepted_with_defaults(custom):
    docs = shop_documents()
    parse_documents(copy.deepcopy(docs), SHOP.name)  # the same documents are valid locally
    for doc in docs:
        create(custom, doc)
    b = get(custom, "bakeoffs", "shop")["spec"]
    assert b["mainline"]["command"] == ["python", "mainline.py", "--port", "{port}"]
    assert b["routing"]["steps"] == [0.1, 0.2]
    assert b["routing"]["maxCandidateShare"] == 0.8
    assert b["routing"]["stickiness"] == {"header": "X-User-Id"}
    assert b["judge"]["guardrails"][1] == {"metric": "latency_p50", "maxIncreaseRatio": 0.25}
    assert b["judge"]["maxDuration"] == "170s"
    assert b["judge"]["interval"] == "1s"  # defaulted
    assert b["promotion"] == {"mode": "auto"}
    assert b["router"] == {"listen": "127.0.0.1:0", "admin": "127.0.0.1:0"}
    v = get(custom, "variants", "better-checkout")["spec"]
    assert v["bakeoff"] == "shop" and v["healthPath"] == "/healthz"  # defaulted
    assert v["change"]["commit"] == "example-better-checkout"
    # What comes back from the API server still parses locally.
    back = [get(custom, plural(d), d["metadata"]["name"]) for d in docs]
    for d in back:
        d["metadata"] = {"name": d["metadata"]["name"]}
    res = parse_documents(back, "from-cluster")
    assert res.bakeoff.routing.steps == (0.1, 0.2) and len(res.variants) == 5


def test_shop_example_is_accepted_under_strict_field_validation(custom):
    """kubectl apply's default (--validate=strict) refuses a field the CRD does not declare: every field
    bakeoff run reads (spec.load too) is declared, since both come from bakeoff.contracts.schema."""
    for doc in shop_documents():
        doc["metadata"]["name"] += "-strict"
        if doc["kind"] == "Variant":
            doc["spec"]["bakeoff"] += "-strict"
        custom.create_namespaced_custom_object(GROUP, VERSION, NS, plural(doc), doc, field_validation="Strict")
    b = get(custom, "bakeoffs", "shop-strict")["spec"]
    assert b["load"] == {"users": 32, "think": "100ms", "shoppers": True}  # kept, not pruned
    assert b["router"] == {"listen": "127.0.0.1:0", "admin": "127.0.0.1:0"}


def test_cluster_bakeoff_gets_defaults(custom):
    create(custom, minimal_bakeoff("defaults"))
    create(custom, minimal_variant("defaults-a", "defaults"))
    spec = get(custom, "bakeoffs", "defaults")["spec"]
    assert spec["mainline"] == {"deployment": "shop", "name": "mainline", "healthPath": "/healthz"}
    assert spec["routing"] == {
        "stickiness": {"header": "X-User-Id"},
        "maxCandidateShare": 0.5,
        "steps": [0.05, 0.1, 0.2],
        "stepInterval": "60s",
        "allocation": "fixed",
    }
    assert spec["promotion"] == {"mode": "auto"}
    assert spec["judge"]["alpha"] == 0.05 and spec["judge"]["minSamples"] == 500
    v = get(custom, "variants", "defaults-a")["spec"]
    assert v["image"] == "registry.example/shop:3f2a9c1" and v["healthPath"] == "/healthz"


def test_stickiness_null_means_none(custom):
    doc = minimal_bakeoff("no-sticky")
    doc["spec"]["routing"] = {"stickiness": None, "stepInterval": 30, "allocation": "fixed"}
    create(custom, doc)
    routing = get(custom, "bakeoffs", "no-sticky")["spec"]["routing"]
    assert routing["stickiness"] is None and routing["stepInterval"] == 30 and routing["allocation"] == "fixed"


def _set(doc: dict, path: str, value) -> dict:
    *head, last = path.split(".")
    node = doc
    for key in head:
        node = node.setdefault(key, {}) if not key.isdigit() else node[int(key)]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


_DELETE = object()
GUARDRAILS = [{"metric": "error_rate", "maxIncrease": 0.005}, {"metric": "latency_p99", "maxIncreaseRatio": 0.1}]

BAD_BAKEOFFS = [
    # (path, value, field the message names, words in the message)
    ("spec.routing.steps", [0.05, 0.2, 0.1], "spec.routing.steps", "strictly increasing"),
    ("spec.routing.steps", [0.1, 0.1], "spec.routing.steps", "strictly increasing"),
    ("spec.routing.steps", [0, 0.1], "spec.routing.steps[0]", "greater than 0"),
    ("spec.routing.steps", [0.1, 1.5], "spec.routing.steps[1]", "less than or equal to 1"),
    ("spec.routing.maxCandidateShare", 1.5, "spec.routing.maxCandidateShare", "less than or equal to 1"),
    ("spec.routing.maxCandidateShare", 0, "spec.routing.maxCandidateShare", "above 0"),
    ("spec.routing.allocation", "greedy", "spec.routing.allocation", "Unsupported value"),
    ("spec.routing.allocation", "bandit", "spec.routing.allocation", "bandit is now called adaptive"),
    ("spec.routing.maxStep", 0.2, "spec.routing", "apply only to allocation: adaptive"),
    ("spec.routing.mainlineFloor", 1, "spec.routing.mainlineFloor", "less than 1"),
    ("spec.promotion.tieBreak", "latency_p50", "spec.promotion.tieBreak", "must name a metric the judge measures"),
    ("spec.routing.stepInterval", "soon", "spec.routing.stepInterval", "duration"),
    ("spec.routing.stickiness", {"header": "X-User-Id", "cookie": "uid"}, "spec.routing.stickiness", "most 1"),
    ("spec.promotion.mode", "sometimes", "spec.promotion.mode", "Unsupported value"),
    (
        "spec.judge.guardrails",
        [{"metric": "error_rate", "maxIncrease": 0.01, "maxIncreaseRatio": 0.1}],
        "spec.judge.guardrails[0]",
        "exactly one of maxIncrease",
    ),
    ("spec.judge.guardrails", [{"metric": "error_rate"}], "spec.judge.guardrails[0]", "exactly one of maxIncrease"),
    (
        "spec.judge.guardrails",
        [{"metric": "latency_p99", "maxIncrease": 0.1}],
        "spec.judge.guardrails[0].maxIncrease",
        "relative",
    ),
    (
        "spec.judge.guardrails",
        [{"metric": "error_rate", "maxIncrease": -0.1}],
        "spec.judge.guardrails[0].maxIncrease",
        "greater than or equal to 0",
    ),
    ("spec.judge.guardrails", GUARDRAILS + [GUARDRAILS[0]], "spec.judge.guardrails", "twice"),
    ("spec.judge.objective", _DELETE, "spec.judge.objective", "Required value"),
    ("spec.judge.objective.kind", "median", "spec.judge.objective.kind", "Unsupported value"),
    ("spec.judge.objective.direction", _DELETE, "spec.judge.objective.direction", "required"),
    ("spec.judge.alpha", 1.5, "spec.judge.alpha", "less than 1"),
    ("spec.judge.maxSamples", 10, "spec.judge.maxSamples", "at least minSamples"),
    ("spec.mainline.command", ["python", "main.py"], "spec.mainline", "exactly one of deployment, command or url"),
    ("spec.mainline.deployment", _DELETE, "spec.mainline", "exactly one of deployment, command or url"),
    ("spec.mainline.name", "Main Line", "spec.mainline.name", "should match"),
    ("spec.mainline", _DELETE, "spec.mainline", "Required value"),
]


@pytest.mark.parametrize(
    "path,value,fieldname,words",
    BAD_BAKEOFFS,
    ids=[f"{p}={'<deleted>' if v is _DELETE else v}"[:60] for p, v, *_ in BAD_BAKEOFFS],
)
def test_invalid_bakeoff_is_rejected(custom, path, value, fieldname, words):
    doc = minimal_bakeoff("bad")
    doc["spec"]["judge"]["guardrails"] = copy.deepcopy(GUARDRAILS)
    doc["spec"]["judge"]["minSamples"] = 100
    _set(doc, path, value if value is _DELETE else copy.deepcopy(value))
    with pytest.raises(kclient.ApiException) as err:
        create(custom, doc)
    assert err.value.status == 422, err.value.body
    message = json.loads(err.value.body)["message"]
    assert f"{fieldname}:" in message and words in message, message


BAD_VARIANTS = [
    ("spec.bakeoff", _DELETE, "spec.bakeoff", "Required value"),
    ("spec.image", _DELETE, "spec", "needs one of image (cluster), command or url (local)"),
    ("spec.command", ["python", "x.py"], None, None),  # image + command is fine (cluster + local)
    ("spec.url", "https://127.0.0.1:9000", "spec.url", "should match"),
    ("spec.gate", {"sarif": "r.sarif", "maxSeverity": "fatal"}, "spec.gate.maxSeverity", "Unsupported value"),
    ("spec.gate", {"maxSeverity": "error"}, "spec.gate.sarif", "Required value"),
    ("spec.startTimeout", "-5s", "spec.startTimeout", "duration"),
]


@pytest.mark.parametrize(
    "path,value,fieldname,words",
    BAD_VARIANTS,
    ids=[f"{p}={'<deleted>' if v is _DELETE else v}"[:60] for p, v, *_ in BAD_VARIANTS],
)
def test_invalid_variant_is_rejected(custom, path, value, fieldname, words):
    doc = _set(minimal_variant("bad-variant"), path, value if value is _DELETE else copy.deepcopy(value))
    if fieldname is None:
        create(custom, doc)
        custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "variants", "bad-variant")
        return
    with pytest.raises(kclient.ApiException) as err:
        create(custom, doc)
    assert err.value.status == 422, err.value.body
    message = json.loads(err.value.body)["message"]
    assert f"{fieldname}:" in message and words in message, message


def test_command_and_url_exclude_each_other(custom):
    doc = minimal_variant("both")
    doc["spec"].update(command=["python", "x.py"], url="http://127.0.0.1:9000")
    with pytest.raises(kclient.ApiException) as err:
        create(custom, doc)
    assert "command and url exclude each other" in json.loads(err.value.body)["message"]


def test_status_subresource(custom):
    create(custom, minimal_variant("status-a", "defaults"))
    obj = get(custom, "variants", "status-a")
    assert "status" not in obj  # create ignores status
    gen = obj["metadata"]["generation"]
    obj["status"] = {
        "phase": "Serving",
        "share": 0.1,
        "verdict": "latency_p99 non-inferior",
        "observedGeneration": gen,
        "verdicts": [{"metric": "latency_p99", "state": "non-inferior", "estimate": 0.01, "ci": [-0.02, 0.04]}],
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Healthy",
                "message": "health check passed",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": gen,
            }
        ],
    }
    obj = custom.replace_namespaced_custom_object_status(GROUP, VERSION, NS, "variants", "status-a", obj)
    assert obj["status"]["phase"] == "Serving" and obj["status"]["share"] == 0.1
    assert obj["metadata"]["generation"] == gen  # status writes do not bump the generation

    # A spec update through the main resource leaves status alone (even if the body carries one).
    obj["spec"]["change"] = {"commit": "abc123"}
    obj["status"] = {"phase": "Lost"}
    obj = custom.replace_namespaced_custom_object(GROUP, VERSION, NS, "variants", "status-a", obj)
    assert obj["spec"]["change"] == {"commit": "abc123"}
    assert obj["status"]["phase"] == "Serving" and obj["status"]["conditions"][0]["type"] == "Ready"
    assert obj["metadata"]["generation"] == gen + 1

    # ...and a status update cannot change the spec.
    obj["spec"]["image"] = "registry.example/other:1"
    obj["status"]["phase"] = "Winner"
    obj = custom.replace_namespaced_custom_object_status(GROUP, VERSION, NS, "variants", "status-a", obj)
    assert obj["spec"]["image"] == "registry.example/shop:3f2a9c1" and obj["status"]["phase"] == "Winner"

    # The status has a schema too.
    obj["status"]["phase"] = "Sleeping"
    with pytest.raises(kclient.ApiException) as err:
        custom.replace_namespaced_custom_object_status(GROUP, VERSION, NS, "variants", "status-a", obj)
    assert "status.phase" in json.loads(err.value.body)["message"]


def test_bakeoff_status_subresource(custom):
    create(custom, minimal_bakeoff("status-b"))
    obj = get(custom, "bakeoffs", "status-b")
    obj["status"] = {
        "phase": "Promoted",
        "mainline": "better-checkout",
        "winner": "better-checkout",
        "shares": {"mainline": 1.0},
        "decision": {"action": "promote", "winner": "better-checkout"},
        "observedGeneration": 1,
    }
    obj = custom.replace_namespaced_custom_object_status(GROUP, VERSION, NS, "bakeoffs", "status-b", obj)
    assert obj["status"]["decision"] == {"action": "promote", "winner": "better-checkout"}


def _table(kube, plural_name: str) -> dict:
    return raw_get(kube, f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{plural_name}", TABLE)


def test_printer_columns(kube, custom):
    create(custom, minimal_bakeoff("table"))
    v = create(custom, minimal_variant("table-a", "table"))
    v["status"] = {"phase": "RolledBack", "share": 0, "verdict": "worse on error_rate"}
    custom.replace_namespaced_custom_object_status(GROUP, VERSION, NS, "variants", "table-a", v)
    b = get(custom, "bakeoffs", "table")
    b["status"] = {"phase": "Stopped", "mainline": "mainline"}
    custom.replace_namespaced_custom_object_status(GROUP, VERSION, NS, "bakeoffs", "table", b)
    # issue 16 item 15: after a promotion the column shows the winner, now the mainline
    create(custom, minimal_bakeoff("promoted"))
    b = get(custom, "bakeoffs", "promoted")
    b["status"] = {"phase": "Promoted", "mainline": "fast", "winner": "fast"}
    custom.replace_namespaced_custom_object_status(GROUP, VERSION, NS, "bakeoffs", "promoted", b)

    t = _table(kube, "variants")
    assert t["kind"] == "Table"
    cols = [c["name"] for c in t["columnDefinitions"]]
    assert cols == ["Name", "Bake-off", "Phase", "Share", "Verdict", "Age"]
    row = next(r["cells"] for r in t["rows"] if r["cells"][0] == "table-a")
    assert row[1:5] == ["table", "RolledBack", 0, "worse on error_rate"]

    t = _table(kube, "bakeoffs")
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Phase", "Mainline", "Winner", "Age"]
    row = next(r["cells"] for r in t["rows"] if r["cells"][0] == "table")
    assert row[1:4] == ["Stopped", "mainline", None]
    row = next(r["cells"] for r in t["rows"] if r["cells"][0] == "promoted")
    assert row[1:4] == ["Promoted", "fast", "fast"]


def test_short_names_in_discovery(kube, crds):
    doc = raw_get(kube, f"/apis/{GROUP}/{VERSION}")
    res = {r["name"]: r for r in doc["resources"]}
    assert res["bakeoffs"]["shortNames"] == ["bo"] and res["bakeoffs"]["kind"] == "Bakeoff"
    assert res["variants"]["shortNames"] == ["va"] and res["variants"]["kind"] == "Variant"
    assert res["bakeoffs"]["namespaced"] and res["variants"]["namespaced"]
    # issue 16 item 14: a category named "bakeoff" would shadow the kind in kubectl
    assert res["variants"]["categories"] == res["bakeoffs"]["categories"] == ["bakeoffs-all"]
    assert {"bakeoffs/status", "variants/status"} <= res.keys()
    groups = raw_get(kube, "/apis")
    assert any(g["name"] == GROUP for g in groups["groups"])


def test_crd_files_parse_as_plain_yaml():
    # kubectl and helm read these files; keep them single-document, valid YAML.
    paths = sorted((ROOT / "charts" / "bakeoff" / "crds").glob("*.yaml"))
    assert [p.name for p in paths] == ["bakeoffs.yaml", "variants.yaml"], paths  # never a vacuous pass
    for path in paths:
        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
        assert len(docs) == 1 and docs[0]["kind"] == "CustomResourceDefinition", path


def test_unknown_fields_strict_and_pruned(custom):
    doc = minimal_bakeoff("unknown")
    doc["spec"]["routing"] = {"stepz": [0.1]}
    with pytest.raises(kclient.ApiException) as err:  # kubectl's default (--validate=strict)
        custom.create_namespaced_custom_object(GROUP, VERSION, NS, "bakeoffs", doc, field_validation="Strict")
    assert 'unknown field "spec.routing.stepz"' in json.loads(err.value.body)["message"]
    obj = custom.create_namespaced_custom_object(GROUP, VERSION, NS, "bakeoffs", doc)  # otherwise pruned
    assert "stepz" not in obj["spec"]["routing"]


# ---------------------------------------------------------------- durations and per-route statistics

GOOD_DURATIONS = ["500ms", "90s", "1m30s", "2h", "1.5s", "90", 30, "1h2m3s4ms"]
BAD_DURATIONS = ["0s", "0", "", "5x", "-5s", "s", "1s30m", "ms", "1.s"]


@pytest.mark.parametrize("value", GOOD_DURATIONS, ids=str)
def test_common_duration_grammar_is_accepted(custom, value):
    """The one grammar of bakeoff.common.durations, on every duration field of both CRDs."""
    from bakeoff.common.durations import parse_duration

    assert parse_duration(value, "x") > 0  # the CRD and the Python reader agree
    name = f"dur-{GOOD_DURATIONS.index(value)}"
    doc = minimal_bakeoff(name)
    doc["spec"]["routing"] = {"stepInterval": value, "noDataTimeout": value}
    doc["spec"]["judge"]["interval"] = value
    obj = create(custom, doc)
    assert obj["spec"]["routing"]["noDataTimeout"] == value and obj["spec"]["judge"]["interval"] == value
    v = minimal_variant(f"durv-{GOOD_DURATIONS.index(value)}", name)
    v["spec"]["startTimeout"] = value
    assert create(custom, v)["spec"]["startTimeout"] == value


@pytest.mark.parametrize("value", BAD_DURATIONS, ids=repr)
def test_bad_durations_are_refused_naming_the_field(custom, value):
    for field in ("noDataTimeout", "stepInterval"):
        doc = minimal_bakeoff("bad-duration")
        doc["spec"]["routing"] = {field: value}
        with pytest.raises(kclient.ApiException) as err:
            create(custom, doc)
        message = json.loads(err.value.body)["message"]
        assert f"spec.routing.{field}" in message and "duration" in message, message
        # issue 16 item 15: not `Invalid value: ""` (the schema type of an int-or-string), but the value
        assert 'Invalid value: ""' not in message and f"got '{value}'" in message, message


def test_routes_are_declared(custom):
    doc = minimal_bakeoff("routes")
    routes = [{"name": "checkout", "match": "/checkout*"}, {"name": "api.v2", "match": "/api/v2/*"}]
    doc["spec"]["routing"] = {"routes": routes, "noDataTimeout": "5m"}
    obj = custom.create_namespaced_custom_object(GROUP, VERSION, NS, "bakeoffs", doc, field_validation="Strict")
    assert obj["spec"]["routing"]["routes"] == routes and obj["spec"]["routing"]["noDataTimeout"] == "5m"


BAD_ROUTES = [
    ([{"name": "other", "match": "/x"}], "reserved"),
    ([{"name": "Checkout", "match": "/x"}], "should match"),
    ([{"name": "a", "match": "/x"}, {"name": "a", "match": "/y"}], "Duplicate value"),
    ([{"name": "a"}], "Required value"),
    ([{"name": f"r{i}", "match": f"/{i}"} for i in range(65)], "must have at most 64 items"),
]


@pytest.mark.parametrize("routes,words", BAD_ROUTES, ids=[w for _, w in BAD_ROUTES])
def test_bad_routes_are_refused(custom, routes, words):
    doc = minimal_bakeoff("bad-routes")
    doc["spec"]["routing"] = {"routes": routes}
    with pytest.raises(kclient.ApiException) as err:
        create(custom, doc)
    message = json.loads(err.value.body)["message"]
    assert "spec.routing.routes" in message and words in message, message


# ---------------------------------------------------------------- one rule for the CRD and bakeoff run's reader

GOOD_ADDRESSES = ["127.0.0.1:0", "localhost:65535", "[::1]:8080", 8080, 0]
BAD_ADDRESSES = ["nope", "127.0.0.1", "h:99999", ":8080", "a b:80", 70000, ""]


def _reader_error(doc: dict) -> str | None:
    """What ``bakeoff run``'s reader says of the same document (None: it accepts it)."""
    from bakeoff.controller.resources import ResourceError

    try:
        parse_documents([copy.deepcopy(doc)], "x.yaml", platform="kubernetes", need_variants=False)
    except ResourceError as e:
        return str(e)
    return None


@pytest.mark.parametrize("value", GOOD_ADDRESSES, ids=repr)
def test_router_addresses_accepted_by_both(custom, value):
    doc = minimal_bakeoff(f"addr-{GOOD_ADDRESSES.index(value)}")
    doc["spec"]["router"] = {"listen": value, "admin": value}
    assert create(custom, doc)["spec"]["router"]["listen"] == value
    assert _reader_error(doc) is None


@pytest.mark.parametrize("value", BAD_ADDRESSES, ids=repr)
def test_bad_router_address_names_the_field_and_the_form(custom, value):
    """Issue 17: a bad host:port said `spec.router.listen: Invalid value: "": must be host:port`;
    now the field, the form expected and the value, as bakeoff run's reader says it."""
    for key in ("listen", "admin"):
        doc = minimal_bakeoff("bad-address")
        doc["spec"]["router"] = {key: value}
        with pytest.raises(kclient.ApiException) as err:
            create(custom, doc)
        assert err.value.status == 422, err.value.body
        message = json.loads(err.value.body)["message"]
        shown = str(value) if isinstance(value, int) else f"'{value}'"
        assert f"spec.router.{key}: " in message and "host:port such as 127.0.0.1:8080" in message, message
        assert 'Invalid value: ""' not in message and f"got {shown}" in message, message
        said = _reader_error(doc)
        assert said is not None and f"spec.router.{key} must be host:port such as 127.0.0.1:8080" in said, said
        assert said.endswith(f"got {value!r}"), said


def _with_load(name: str, method: str) -> dict:
    doc = minimal_bakeoff(name)
    doc["spec"]["load"] = {"requests": [{"path": "/", "method": method}]}
    return doc


@pytest.mark.parametrize("method", ["GET", "get", "Post", "delete", "OPTIONS"])
def test_load_method_in_any_case_is_accepted_by_both(custom, method):
    """Issue 17: bakeoff run took `method: get` while the CRD refused it; one rule now (any case)."""
    doc = _with_load(f"method-{method.lower()}-{sum(c.isupper() for c in method)}", method)
    assert create(custom, doc)["spec"]["load"]["requests"][0]["method"] == method
    assert _reader_error(doc) is None


@pytest.mark.parametrize("method", ["FETCH", "gett", "", "CONNECT"])
def test_bad_load_method_is_refused_by_both_naming_the_field(custom, method):
    doc = _with_load("bad-method", method)
    with pytest.raises(kclient.ApiException) as err:
        create(custom, doc)
    assert err.value.status == 422, err.value.body
    message = json.loads(err.value.body)["message"]
    assert "spec.load.requests[0].method: " in message and "must be one of GET, HEAD" in message, message
    assert f"got '{method}'" in message, message
    said = _reader_error(doc)
    assert said is not None and "spec.load.requests[0].method must be one of GET, HEAD" in said, said
