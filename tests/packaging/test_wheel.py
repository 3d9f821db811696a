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
import shutil
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
        timeout=1200,  # mypyc compiles the router's hot path: minutes on a busy 2-core machine
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
        "bakeoff/controller/report/templates/components.html.j2",  # the report's and the dashboard's templates
        "bakeoff/controller/dashboard/static/dashboard.js",
    ):
        assert must in names, f"{must} missing from {wheel.name}"
    top = {n.split("/", 1)[0] for n in names}
    assert top <= {"bakeoff", f"bakeoff-{__version__}.dist-info"}, f"unexpected top-level entries {top}"
    assert not any("__pycache__" in n for n in names)


def test_wheel_carries_the_compiled_hot_path_and_says_so(installed, shadowing_cwd):
    """Issue 18 item 2: the wheel holds the mypyc-compiled router modules, and the installed CLI uses them."""
    wheel, site, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    compiled = sorted(n for n in names if n.startswith("bakeoff/router/") and n.endswith(".so"))
    if not compiled and shutil.which("cc") is None and os.environ.get("CI") != "true":
        pytest.skip("no C compiler here: the wheel is pure Python (the fallback test covers that)")
    for m in ("http11", "downstream", "upstream", "flow_control", "routing", "stats", "_hot_path__mypyc"):
        assert any(n.startswith(f"bakeoff/router/{m}.") for n in compiled), f"{m} not compiled in {wheel.name}"
        if m != "_hot_path__mypyc":
            assert f"bakeoff/router/{m}.py" in names, f"the fallback {m}.py is missing"
    r = subprocess.run(
        [sys.executable, "-m", "bakeoff", "--version"],
        cwd=shadowing_cwd,
        env=_env(site),
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"bakeoff {__version__}; router hot path: compiled (mypyc)", r.stdout


@pytest.mark.slow
def test_without_a_c_compiler_the_wheel_is_pure_python_and_says_so(tmp_path, shadowing_cwd):
    """A machine whose C compiler fails: the build says so and goes on; the CLI names the fallback."""
    # A clean copy of the sources: a checkout's build/ folder would hand setuptools objects compiled before.
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info", "build")
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE", "constraints.txt"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("core", "router", "judge", "controller", "examples"):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=skip)
    dist = tmp_path / "dist"
    env = dict(os.environ, CC="false", LDSHARED="false")  # every compile and link exits 1
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(dist), str(src)],
        capture_output=True, text=True, timeout=1200, env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "installing it as pure Python" in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]
    (wheel,) = dist.glob("bakeoff-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert not any(n.endswith(".so") for n in names), sorted(n for n in names if n.endswith(".so"))
    assert "bakeoff/router/downstream.py" in names
    site = tmp_path / "site"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run(
        [sys.executable, "-m", "bakeoff", "--version"],
        cwd=shadowing_cwd,
        env=_env(site),
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "router hot path: pure Python (no compiled extension" in r.stdout, r.stdout


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
