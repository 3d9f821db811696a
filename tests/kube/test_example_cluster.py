"""examples/cluster: every document is accepted by a real API server with the CRDs installed
(server-side dry-run, strict field validation) and by the controller's own reader."""

from __future__ import annotations

import copy

import yaml

from bakeoff.controller.resources import parse_documents

from .conftest import ROOT
from .test_chart import _raw, helm, render, resource_path  # noqa: F401 - helm is a fixture

EXAMPLE = ROOT / "examples" / "cluster"
NS = "example-cluster"


def example_documents() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(EXAMPLE.glob("*.yaml")):
        out.extend((path.name, d) for d in yaml.safe_load_all(path.read_text()) if d)
    return out


def test_the_example_has_a_mainline_a_bakeoff_and_two_variants():
    kinds = sorted((d["kind"], d["metadata"]["name"]) for _, d in example_documents())
    assert kinds == [
        ("Bakeoff", "shop"),
        ("Deployment", "shop"),
        ("Service", "shop"),
        ("Variant", "cached-catalog"),
        ("Variant", "one-page-checkout"),
    ]
    assert (EXAMPLE / "README.md").is_file()


def test_the_controller_reads_the_bakeoff():
    docs = [copy.deepcopy(d) for _, d in example_documents() if d["apiVersion"].startswith("bakeoff.dev/")]
    res = parse_documents(docs, str(EXAMPLE / "bakeoff.yaml"), platform="kubernetes")
    assert res.bakeoff.name == "shop"
    assert sorted(v.name for v in res.variants) == ["cached-catalog", "one-page-checkout"]
    assert [r.name for r in res.bakeoff.routing.routes] and res.bakeoff.routing.no_data_timeout > 0


def test_server_side_dry_run_accepts_every_document(kube, crds, helm, tmp_path):  # noqa: F811
    from kubernetes import client

    client.CoreV1Api(kube.api).create_namespace({"metadata": {"name": NS}})
    # The chart as the README installs it, then the example, all dry-run: nothing is stored.
    chart = render(helm, tmp_path, {"router": {"bakeoff": "shop", "mainlineService": "shop"}}, "bakeoff", NS)
    docs = [(f"chart {d['kind']}", d) for d in chart] + example_documents()
    errors = []
    for origin, doc in docs:
        path = resource_path(kube, doc, NS) + "?dryRun=All&fieldValidation=Strict"
        status, body = _raw(kube, "POST", path, body=doc)
        if status != 201:
            errors.append(f"{origin}: {doc['kind']}/{doc['metadata']['name']}: HTTP {status}: {body.get('message')}")
        elif doc["kind"] == "Bakeoff":
            # defaults applied by the CRD's schema, the routes and timeout kept (nothing pruned)
            assert body["spec"]["routing"]["routes"] == doc["spec"]["routing"]["routes"]
            assert body["spec"]["routing"]["noDataTimeout"] == "10m"
    assert not errors, "\n".join(errors)
    assert client.AppsV1Api(kube.api).list_namespaced_deployment(NS).items == []  # dry-run stored nothing


def test_a_broken_example_would_be_refused(kube, crds):
    """The dry-run above can fail: a misspelt field in the Bakeoff is an error, not a warning."""
    from kubernetes import client

    try:
        client.CoreV1Api(kube.api).create_namespace({"metadata": {"name": NS}})
    except client.ApiException as e:
        if e.status != 409:
            raise
    bad = copy.deepcopy(next(d for _, d in example_documents() if d["kind"] == "Bakeoff"))
    bad["spec"]["routing"]["noDataTimout"] = "10m"
    status, body = _raw(kube, "POST", resource_path(kube, bad, NS) + "?dryRun=All&fieldValidation=Strict", body=bad)
    assert status == 400 and "noDataTimout" in body["message"], body
