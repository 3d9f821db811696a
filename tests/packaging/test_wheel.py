"""The wheel as the Docker image installs it (`pip install .`), run from a directory that could shadow it.

Everything else in the suite runs against the editable install; this builds
the real wheel, installs it (without dependencies: they are the test venv's)
into a directory of its own, and runs the console entry point the way the
image does, from a working directory holding folders named ``router`` and
``judge`` whose modules would break the command if they were imported.
"""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
import urllib.request
import zipfile
from pathlib import Path

import pytest

from bakeoff.common.version import VERSION as __version__
from bakeoff.controller.platforms.local import free_port
from tests.conftest import eventually

# Builds and installs a wheel into a fresh environment: the slow tier.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel path, site dir with the wheel installed, bin dir with its console script)."""
    work = tmp_path_factory.mktemp("wheel")
    dist = work / "dist"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = dist.glob("bakeoff-*.whl")
    site = work / "site"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return wheel, site, site / "bin"


@pytest.fixture
def shadowing_cwd(tmp_path):
    """A working directory with top-level `router` and `judge` packages that fail on import."""
    for name in ("router", "judge", "controller"):
        pkg = tmp_path / name
        pkg.mkdir()
        (pkg / "__init__.py").write_text(
            f"raise ImportError('the {name}/ folder in the working directory was imported')\n"
        )
    (tmp_path / "router" / "worker_main.py").write_text("raise SystemExit('wrong worker_main')\n")
    return tmp_path


def _env(site: Path) -> dict[str, str]:
    # The wheel's directory first: ahead of the editable install's finder, which sits on sys.meta_path after the path finder.
    env = dict(os.environ, PYTHONPATH=str(site), PYTHONDONTWRITEBYTECODE="1")
    env.pop("BAKEOFF_EXAMPLES", None)
    return env


def test_wheel_holds_the_parts_under_one_root_and_the_example(installed):
    wheel, _, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for must in (
        "bakeoff/router/downstream.py",
        "bakeoff/judge/core.py",
        "bakeoff/controller/kube/main.py",
        "bakeoff/contracts/snapshot.py",
        "bakeoff/examples/shop/bakeoff.yaml",
        "bakeoff/examples/shop/mainline.py",
    ):
        assert must in names, f"{must} missing from {wheel.name}"
    top = {n.split("/", 1)[0] for n in names}
    assert top <= {"bakeoff", f"bakeoff-{__version__}.dist-info"}, f"unexpected top-level entries {top}"
    assert not any("__pycache__" in n for n in names)


def test_installed_cli_runs_from_a_directory_that_shadows_its_parts(installed, shadowing_cwd):
    _, site, _ = installed
    env = _env(site)
    r = subprocess.run(
        [sys.executable, "-m", "bakeoff", "--version"], cwd=shadowing_cwd, env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert __version__ in r.stdout
    probe = (
        "import bakeoff.router, bakeoff.router.worker_main, bakeoff.judge.core;"
        "from bakeoff.common.paths import examples_dir;"
        "print(bakeoff.router.__file__); print(examples_dir() / 'shop' / 'bakeoff.yaml')"
    )
    r = subprocess.run([sys.executable, "-c", probe], cwd=shadowing_cwd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    pkg_file, shop = r.stdout.split()
    assert Path(pkg_file).is_relative_to(site), f"bakeoff imported from {pkg_file}, not the installed wheel"
    assert Path(shop).is_file() and Path(shop).is_relative_to(site)


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the stdlib's name)
        body = b"hello from the upstream\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_installed_router_with_workers_proxies_from_a_shadowing_directory(installed, shadowing_cwd):
    """`bakeoff router --workers 2` spawns `python -m bakeoff.router.worker_main`: it must resolve to the wheel."""
    _, site, _ = installed
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port, admin = free_port(), free_port()
    config = shadowing_cwd / "router.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\nadmin: 127.0.0.1:{admin}\n"
        f"variants:\n  - {{name: mainline, upstreams: ['127.0.0.1:{upstream.server_address[1]}'], weight: 1}}\n"
    )
    log = (shadowing_cwd / "router.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bakeoff", "router", "--config", str(config), "--workers", "2"],
        cwd=shadowing_cwd,
        env=_env(site),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def answer() -> bytes:
            assert proc.poll() is None, (shadowing_cwd / "router.log").read_text()[-3000:]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                return resp.read()

        body = eventually(answer, retry=(OSError,), interval=0.2, what="the installed router to proxy a request")
        assert body == b"hello from the upstream\n", (shadowing_cwd / "router.log").read_text()[-3000:]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        upstream.shutdown()
        log.close()
    assert "wrong worker_main" not in (shadowing_cwd / "router.log").read_text()
