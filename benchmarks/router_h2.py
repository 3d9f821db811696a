#!/usr/bin/env python3
"""bakeoff's router against nginx for HTTP/2 and unary gRPC-shaped calls, in one run.

    .venv/bin/python benchmarks/router_h2.py [--requests 20000] [--rounds 3] [--quick]
        [--baseline-python /other/checkout/.venv/bin/python]

Needs ``nginx`` (with its http2 and grpc modules; Debian's nginx-light has
both) and ``h2load`` (Debian ``nghttp2-client``); neither is installed by
.ci/run because no test needs them (docs/benchmarks.md says how).

What runs, all on 127.0.0.1, every process a child of this script:

* **Upstreams**: one nginx (``worker_processes 1``) listening with cleartext
  HTTP/2 on two ports, answering every call with a fixed gRPC reply (a
  5-byte-prefixed message from a file, ``content-type: application/grpc``,
  trailer ``grpc-status: 0``): the fastest h2c peer at hand, so the upstream is
  not what is measured.
* **nginx under test**: ``worker_processes 1``, ``listen ... http2``, and
  ``grpc_pass`` to an ``upstream`` block of the two ports with ``keepalive``.
* **bakeoff's router**: ``bakeoff router`` with one worker, two variants of
  ``protocol: h2c`` (one per upstream port).
* with ``--baseline-python``, a second router (``router_baseline``, the same
  config) run by another checkout's interpreter, e.g. main's, for a
  before/after in the same run.
* **h2load** ``-c 16 -m 8 -t 1``: POST-less unary calls (headers
  ``content-type: application/grpc`` and ``te: trailers``) on ``/bench.Echo/Unary``.

Per round, each proxy is driven in turn (the order turns by one each round);
requests per second come from h2load, CPU per request from the proxy
process's utime+stime (/proc).  The last line of output is one JSON object
with the medians and the ratios router / nginx.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def nginx_conf(tmp: Path, name: str, body: str) -> Path:
    d = tmp / name
    for sub in ("logs", "tmp"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    conf = d / "nginx.conf"
    conf.write_text(
        f"worker_processes 1; daemon off; pid {d}/nginx.pid; error_log {d}/logs/error.log warn;\n"
        "events { worker_connections 4096; }\n"
        f"http {{ access_log off; client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp;\n"
        f"  fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n"
        f"  keepalive_requests 1000000; http2_max_concurrent_streams 256;\n{body}\n}}\n"
    )
    return conf


def start_nginx(conf: Path) -> tuple[subprocess.Popen, int]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(conf.parent)], stderr=subprocess.DEVNULL)
    pid_file = conf.parent / "nginx.pid"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        if pid_file.exists() and kids.exists() and kids.read_text().split():
            return proc, int(kids.read_text().split()[0])  # the worker does the work
        time.sleep(0.05)
    raise RuntimeError(f"nginx {conf} did not start")


def h2load(port: int, requests: int) -> dict:
    r = subprocess.run(
        ["h2load", "-n", str(requests), "-c", "16", "-m", "8", "-t", "1",
         "-H", "content-type: application/grpc", "-H", "te: trailers",
         f"http://127.0.0.1:{port}/bench.Echo/Unary"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", r.stdout)
    ok = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", r.stdout)
    if os.environ.get("BENCH_DEBUG"):
        print(r.stdout, file=sys.stderr)
    if rps is None or ok is None:
        raise RuntimeError(f"h2load said:\n{r.stdout}\n{r.stderr}")
    return {"rps": float(rps.group(1)), "succeeded": int(ok.group(1)), "failed": int(ok.group(2))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one round of 2000 calls (a smoke run)")
    ap.add_argument("--baseline-python", help="also run another checkout's router with this interpreter")
    args = ap.parse_args()
    if args.quick:
        args.requests, args.rounds = 2000, 1
    for tool in ("h2load",):
        if shutil.which(tool) is None:
            print(f"{tool} is missing: apt-get install nghttp2-client", file=sys.stderr)
            return 2
    procs: list[subprocess.Popen] = []
    tmp = Path(tempfile.mkdtemp(prefix="bakeoff-bench-h2-"))
    tmp.chmod(0o755)  # nginx's workers (nobody when started as root) read the reply file
    try:
        (tmp / "www").mkdir()
        (tmp / "www" / "reply").write_bytes(b"\x00\x00\x00\x00\x02hi")
        ups = [free_port(), free_port()]
        servers = "\n".join(
            f"  server {{ listen 127.0.0.1:{p} http2; root {tmp}/www; default_type application/grpc;\n"
            "    location / { try_files /reply =404; add_trailer grpc-status 0; } }"
            for p in ups
        )
        up_proc, _ = start_nginx(nginx_conf(tmp, "upstreams", servers))
        procs.append(up_proc)
        nginx_port = free_port()
        pool = " ".join(f"server 127.0.0.1:{p};" for p in ups)
        body = (
            f"  upstream variants {{ {pool} keepalive 64; }}\n"
            f"  server {{ listen 127.0.0.1:{nginx_port} http2; location / {{ grpc_pass grpc://variants; }} }}"
        )
        ngx_proc, ngx_worker = start_nginx(nginx_conf(tmp, "proxy", body))
        procs.append(ngx_proc)
        router_port, admin_port = free_port(), free_port()
        cfg = tmp / "router.yaml"
        cfg.write_text(
            json.dumps(
                {
                    "listen": f"127.0.0.1:{router_port}",
                    "admin": f"127.0.0.1:{admin_port}",
                    "variants": [
                        {"name": f"v{i}", "upstreams": [f"127.0.0.1:{p}"], "protocol": "h2c"} for i, p in enumerate(ups)
                    ],
                }
            )
        )
        router = subprocess.Popen(
            [sys.executable, "-m", "bakeoff", "router", "--config", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(router)
        targets = {"nginx": (nginx_port, ngx_worker), "router": (router_port, router.pid)}
        if args.baseline_python:
            base_port, base_admin = free_port(), free_port()
            base_cfg = tmp / "router-baseline.yaml"
            cfg_obj = json.loads(cfg.read_text())
            cfg_obj.update(listen=f"127.0.0.1:{base_port}", admin=f"127.0.0.1:{base_admin}")
            base_cfg.write_text(json.dumps(cfg_obj))
            base = subprocess.Popen(
                [args.baseline_python, "-m", "bakeoff", "router", "--config", str(base_cfg)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=tmp,
            )
            procs.append(base)
            targets["router_baseline"] = (base_port, base.pid)
        for port, _ in (*targets.values(), *((p, 0) for p in ups)):
            wait_port(port)
        for port, _ in targets.values():
            h2load(port, min(2000, args.requests))  # warm-up: connections, caches
        rows: dict[str, list[dict]] = {k: [] for k in targets}
        names = list(targets)
        for rnd in range(args.rounds):
            for name in names[rnd % len(names) :] + names[: rnd % len(names)]:
                port, pid = targets[name]
                before = cpu_seconds(pid)
                res = h2load(port, args.requests)
                res["cpu_us_per_request"] = (cpu_seconds(pid) - before) / max(res["succeeded"], 1) * 1e6
                rows[name].append(res)
                print(f"round {rnd + 1} {name:15s} {res['rps']:9.0f} req/s  "
                      f"{res['cpu_us_per_request']:6.1f} us CPU/request  failed={res['failed']}")  # fmt: skip
        med = {
            name: {
                "rps": statistics.median(r["rps"] for r in rs),
                "cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in rs),
                "failed": sum(r["failed"] for r in rs),
            }
            for name, rs in rows.items()
        }
        out = {
            "benchmark": "router_h2",
            "requests_per_round": args.requests,
            "rounds": args.rounds,
            "router": med["router"],
            "nginx": med["nginx"],
            "throughput_ratio": med["router"]["rps"] / med["nginx"]["rps"],
            "cpu_per_request_ratio": med["router"]["cpu_us_per_request"] / med["nginx"]["cpu_us_per_request"],
            "goal_throughput_ratio": 0.5,
        }
        if "router_baseline" in med:
            out["router_baseline"] = med["router_baseline"]
            out["baseline_throughput_ratio"] = med["router_baseline"]["rps"] / med["nginx"]["rps"]
            out["baseline_cpu_per_request_ratio"] = (
                med["router_baseline"]["cpu_us_per_request"] / med["nginx"]["cpu_us_per_request"]
            )
        print(json.dumps(out))
        return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
