"""The bakeoff command line through the real entry point (python -m bakeoff)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import pytest

from bakeoff.cli import command_index, commands
from tests.controller.conftest import ROOT, bakeoff_doc, variant_doc, write_docs


def cli(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bakeoff", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_version_comes_from_pyproject():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    r = cli("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().split(";")[0] == f"bakeoff {declared}", r.stdout


@pytest.mark.parametrize("name", [c.name for c in commands()])
def test_every_command_has_help(name):
    r = cli(name, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: bakeoff") and len(r.stdout.splitlines()) > 3


def test_top_level_help_lists_the_commands_and_the_exit_codes():
    r = cli("--help")
    for c in commands():
        assert f"    {c.name} " in r.stdout
    assert "3 stopped without a winner" in r.stdout and "4 stopped" in r.stdout


def test_the_judge_is_found_by_position_not_by_the_word():
    assert command_index(["--log-level", "debug", "submit", "--bakeoff", "judge"]) == 2
    assert command_index(["--log-json", "judge", "--help"]) == 1
    # `bakeoff submit --bakeoff judge` is a submit (it complains about submit's own arguments)
    r = cli("submit", "--bakeoff", "judge")
    assert r.returncode == 2 and "--image" in r.stderr and "--config" not in r.stderr, r.stderr
    j = cli("judge", "--help")
    assert j.returncode == 0 and "--snapshot" in j.stdout


def test_errors_have_one_prefix_and_config_errors_exit_2(tmp_path):
    r = cli("run", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and r.stderr.startswith("bakeoff: error: ") and "missing.yaml: cannot read" in r.stderr, (
        r.stderr
    )
    r = cli("run", "--nope")
    assert r.returncode == 2 and "bakeoff: error: run: " in r.stderr
    r = cli("status", str(tmp_path), "--kubeconfig", str(tmp_path / "none"))  # cluster status, no cluster
    assert r.returncode == 2
    r = cli("report", str(tmp_path))
    assert r.returncode == 2 and r.stderr.startswith("bakeoff: error: ") and "not the state directory" in r.stderr
    spec = write_docs(tmp_path / "t.yaml", [bakeoff_doc(), variant_doc("a", "good")])
    r = cli("run", str(spec), "--load", "users=4")
    assert r.returncode == 2 and "has no spec.load" in r.stderr


def test_local_status_approve_and_abort_address_a_state_directory(tmp_path):
    st = {
        "format": "bakeoff.status/v1",
        "bakeoff": "t",
        "phase": "AwaitingApproval",
        "running": True,
        "mainline": "mainline",
        "decision": None,
        "weights": {"mainline": 0.9, "a": 0.1},
        "variants": {"a": {"phase": "Winner", "reason": "a is better"}, "b": {"phase": "RolledBack", "reason": "x"}},
    }
    (tmp_path / "status.json").write_text(json.dumps(st))
    r = cli("status", str(tmp_path))
    assert r.returncode == 0 and "phase AwaitingApproval" in r.stdout and "Winner" in r.stdout, r.stdout + r.stderr
    assert cli("approve", str(tmp_path), "nobody").returncode == 2
    r = cli("approve", str(tmp_path))
    # one JSON object: the variant (or, for abort, the reason), the OS user and the time
    assert r.returncode == 0 and json.loads((tmp_path / "approve").read_text())["variant"] == "a"
    r = cli("abort", str(tmp_path), "--reason", "release freeze")
    assert r.returncode == 0 and json.loads((tmp_path / "abort").read_text())["reason"] == "release freeze"
    r = cli("list", str(tmp_path.parent))
    assert r.returncode == 0 and str(tmp_path) in r.stdout and "AwaitingApproval" in r.stdout, r.stdout
