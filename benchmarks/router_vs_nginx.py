#!/usr/bin/env python3
"""bakeoff's router against nginx, on the same machine, in the same run.

Run it as ``.venv/bin/python benchmarks/router_vs_nginx.py`` (``make
bench-router``).  ``--quick`` (or ``QUICK=1``) is a smoke mode: one round of
1-second runs.  ``--soak-requests 1000000`` (or ``SOAK_REQUESTS``) keeps
driving the router after the rounds until it has served that many requests in
total, printing its RSS at intervals.  See docs/benchmarks.md.

What runs (all on 127.0.0.1, ports picked free at run time, every process a
child of this script, all stopped at the end, on Ctrl-C, SIGTERM or an error):

* **Upstreams** — one separate nginx process (``worker_processes 1``, its own
  prefix, config, pid file, error log and temp dirs in a temporary directory,
  ``daemon off``) listening on three ports, each answering every request with
  ``return 200 "ok <name>\\n"`` plus ``add_header Bakeoff-Metric-revenue 1.5``.
  nginx answering from its config, with access log off and unlimited
  keep-alive, is the fastest HTTP server at hand, so the upstreams are not the
  bottleneck; one worker, because the machine this was written for has two
  cores and the proxies and wrk need the rest.
* **nginx under test** — ``worker_processes 1``; three ``upstream`` blocks with
  ``keepalive 64``; ``split_clients "${http_x_user_id}"`` chooses one of them
  per request (a third each); ``proxy_http_version 1.1``,
  ``proxy_set_header Connection ""``, ``access_log off``.  To do the same work
  as the router it also strips the metric header (``proxy_hide_header``) and
  tells the client the variant (``add_header X-Bakeoff-Variant``).
  ``keepalive_requests`` is raised on both sides so neither nginx closes
  keep-alive connections every 1000 requests (the router does not either).
* **bakeoff's router** — ``bakeoff router --config FILE`` with one worker and
  every feature on: three variants of weight 1 (one per upstream port),
  stickiness on the ``X-User-Id`` header, the override header enabled,
  ``exposeVariant: true``, and business metrics from the upstreams'
  ``Bakeoff-Metric-revenue`` header (parsed, recorded, stripped).
* **wrk** with ``benchmarks/wrk_users.lua``: every request carries an
  ``X-User-Id`` drawn at random from 10,000 ids per thread, so the sticky key
  changes all the time.

Each round drives every target -- one upstream directly, nginx, the router
and any routers added with ``--router``/``--compare-pure``/``--workers-scaling``
-- with ``wrk -t2 -c64`` for throughput (requests/s), then every target with
``wrk -t1 -c1`` for latency (p50) in short interleaved slots, in an order that
turns by one each round and each slot.  "Added p50" is a proxy's p50 at -c1
minus the direct upstream's p50 in the same slot, reported as the median
over all slots with its IQR.

``--instructions`` measures instead the instructions each proxy executes per
request (valgrind's callgrind, the same fixed request stream for every
target): the repeatable figure for CPU per request on a busy machine.  Ratios (router / nginx: throughput, added p50, CPU per request)
are computed per round and reported as median, min-max and IQR.  The last
line of output is one JSON object.

Also reported: the router's RSS (VmRSS from /proc) when idle, after warm-up
and at the end, its peak (VmHWM); CPU time per request and CPU use (% of one
core) of the router and of nginx's worker in the throughput runs (utime+stime
from /proc), which say whether a proxy was saturated; the requests
the router recorded (its /-/snapshot), by outcome; errors counted by wrk; and
warnings or errors in the processes' logs.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LUA = HERE / "wrk_users.lua"
VARIANTS = ("mainline", "v2", "v3")
METRIC_HEADER = "Bakeoff-Metric-revenue"
# The routers under test: "router" (this checkout as installed), then any --router LABEL=ENV...
ROUTERS: list[str] = ["router"]
TARGETS: list[str] = ["direct", "nginx", "router"]
CLK_TCK = os.sysconf("SC_CLK_TCK")
JSON_KEYS = (
    "router_rps", "nginx_rps", "rps_ratio", "router_added_p50_us", "nginx_added_p50_us",
    "added_p50_ratio", "router_rss_mb_after",
)  # fmt: skip


TOOLS = {"nginx": "nginx", "wrk": "wrk"}  # absolute paths once run() has found them
HOT_PATH: dict[str, str] = {}  # router label -> its hot path build, from `bakeoff --version`
ADMIN: dict[str, int] = {}  # router label -> its admin port
SPANS: dict[str, dict[str, int]] = {}  # router label (with TRACING) -> its spans exported/dropped/failed at the end


def find_tool(name: str) -> str | None:
    """The program on PATH, or in /usr/sbin or /usr/bin (nginx is in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
        if os.access(f"{d}/{name}", os.X_OK):
            return f"{d}/{name}"
    return None


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why."""


class Interrupted(BaseException):
    """SIGTERM (or SIGHUP) received: unwind and stop the children."""


def out(line: str = "") -> None:
    print(line, flush=True)


# --------------------------------------------------------------------------
# child processes


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: no orphans if we are SIGKILLed
    except Exception:
        pass


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log: Path
    stop_signal: int = signal.SIGTERM

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])


class Children:
    """Every process this script starts, so that all of them can be stopped."""

    def __init__(self) -> None:
        self.children: list[Child] = []
        self.exit_codes: dict[str, int | None] = {}

    def start(self, name: str, argv: list[str], log: Path, **kw: Any) -> Child:
        fh = open(log, "ab")
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent, **kw,
            )  # fmt: skip
        finally:
            fh.close()
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def check(self) -> None:
        for c in self.children:
            if not c.alive():
                raise BenchError(
                    f"{c.name} (pid {c.proc.pid}) exited with status {c.proc.returncode} during the run; "
                    f"last lines of {c.log}:\n{c.log_tail()}"
                )

    def stop_all(self, timeout: float = 15.0) -> None:
        # Stop in reverse order of start: the proxies before their upstreams.
        for c in reversed(self.children):
            if c.alive():
                try:
                    c.proc.send_signal(c.stop_signal)
                except ProcessLookupError:
                    pass
            try:
                c.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                out(f"warning: {c.name} (pid {c.proc.pid}) did not stop within {timeout:.0f}s; killing it")
                try:
                    os.killpg(c.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                c.proc.wait()
            self.exit_codes.setdefault(c.name, c.proc.returncode)
        self.children.clear()


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def wait_port(port: int, child: Child, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise BenchError(
                f"{child.name} exited with status {child.proc.returncode} while starting; "
                f"last lines of {child.log}:\n{child.log_tail()}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"{child.name} is not listening on 127.0.0.1:{port} after {timeout:.0f}s; "
                     f"last lines of {child.log}:\n{child.log_tail()}")  # fmt: skip


def http_get(
    url: str, headers: dict[str, str] | None = None, timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


# --------------------------------------------------------------------------
# /proc


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def rss_mb(pid: int, field_name: str = "VmRSS") -> float:
    value = proc_status(pid)[field_name].split()  # e.g. "52344 kB"
    return int(value[0]) / 1024.0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def descendants(pid: int) -> list[int]:
    """The live child processes of a process, and theirs (a router's --workers)."""
    try:
        kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return [p for k in kids for p in (k, *descendants(k))]


def nginx_worker_pid(master: int) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            kids = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        except OSError:
            kids = []
        if kids:
            return int(kids[0])
        time.sleep(0.05)
    raise BenchError(f"nginx master {master} has no worker process")


# --------------------------------------------------------------------------
# configs


NGINX_COMMON = """\
worker_processes 1;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
{user}
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    default_type text/plain;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
{body}
}}
"""


def upstream_nginx_conf(d: Path, ports: list[int], user: str) -> str:
    body = []
    for name, port in zip(VARIANTS, ports):
        body.append(f"""\
    server {{
        listen 127.0.0.1:{port};
        location / {{
            add_header {METRIC_HEADER} 1.5;
            return 200 "ok {name}\\n";
        }}
    }}""")
    return NGINX_COMMON.format(dir=d, user=user, body="\n".join(body))


def proxy_nginx_conf(d: Path, port: int, upstream_ports: list[int], user: str) -> str:
    body = []
    for name, up in zip(VARIANTS, upstream_ports):
        body.append(f"""\
    upstream {name} {{
        server 127.0.0.1:{up};
        keepalive 64;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }}""")
    body.append("""\
    split_clients "${http_x_user_id}" $variant {
        33.33% mainline;
        33.33% v2;
        * v3;
    }""")
    body.append(f"""\
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://$variant;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_hide_header {METRIC_HEADER};
            add_header X-Bakeoff-Variant $variant;
        }}
    }}""")
    return NGINX_COMMON.format(dir=d, user=user, body="\n".join(body))


# An OTLP/HTTP traces endpoint for the routers with tracing (TRACING=ratio): it reads each export and answers 200,
# so the router's exporter thread does its whole job (encode, POST) and its CPU is in the router's figures.
OTLP_SINK = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def router_conf(
    port: int, admin: int, upstream_ports: list[int], workers: int = 1, tracing: float | None = None,
    otlp_port: int = 0,
) -> str:  # fmt: skip
    lines = [
        f"listen: 127.0.0.1:{port}",
        f"admin: 127.0.0.1:{admin}",
        "token: bench-token",
        f"workers: {workers}",
        "stickiness: {header: X-User-Id}",
        "override: {enabled: true, header: X-Bakeoff-Variant}",
        "exposeVariant: true",
        "timeouts: {connect: 2, read: 30, drain: 2, idle: 300}",
        "limits: {maxHeaderBytes: 16384, maxIdlePerUpstream: 128}",
        "variants:",
    ]
    for name, up in zip(VARIANTS, upstream_ports):
        version = f", version: bench-{name}" if tracing is not None else ""  # service.version on its spans
        lines.append(f"  - {{name: {name}, upstreams: ['127.0.0.1:{up}'], weight: 1{version}}}")
    if tracing is not None:
        # sampleRatio 0 is propagation only: a traceparent started (unsampled) and sent on every request
        lines.append(
            f"tracing: {{endpoint: 'http://127.0.0.1:{otlp_port}/v1/traces', sampleRatio: {tracing}, bakeoff: bench}}"
        )
    return "\n".join(lines) + "\n"


def router_command(config: Path) -> list[str]:
    """``bakeoff router --config FILE``, with this Python (so the venv's packages)."""
    return [sys.executable, "-m", "bakeoff", "router", "--config", str(config)]


# --------------------------------------------------------------------------
# wrk


@dataclass
class WrkResult:
    target: str
    kind: str  # "throughput" or "latency"
    connections: int
    requests: int
    duration_s: float
    rps: float
    p50_us: float
    p90_us: float
    p99_us: float
    max_us: float
    non_2xx: int  # wrk's "Non-2xx or 3xx responses" (status >= 400)
    socket_errors: int  # connect + read + write + timeout
    cpu_s: float = 0.0  # CPU time of the target process during the run
    other_pct: float = float("nan")  # CPU used by processes not in this benchmark, % of one core
    steal_pct: float = 0.0  # steal time during the run (/proc/stat), % of one core
    softirq_pct: float = 0.0  # softirq time during the run (/proc/stat), % of one core
    slot: int = 0  # which of a round's -c1 latency slots (see --latency-slots)
    raw: str = field(default="", repr=False)


_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def _to_us(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(output: str) -> dict[str, Any]:
    """Figures from wrk's output: the BAKEOFF_WRK line of wrk_users.lua, else the text."""
    r: dict[str, Any] = {}
    m = re.search(r"^Requests/sec:\s+([0-9.]+)", output, re.M)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"^\s*(\d+) requests in ([0-9.]+\w+)", output, re.M)
    if m:
        r["requests"] = int(m.group(1))
        r["duration_s"] = _to_us(m.group(2)) / 1e6
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s*{pct}%\s+([0-9.]+\w+)", output, re.M)
        if m:
            r[f"p{pct}_us"] = _to_us(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    r["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    r["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"^BAKEOFF_WRK (\{.*\})\s*$", output, re.M)
    if m:
        d = json.loads(m.group(1))
        e = d["errors"]
        r.update(
            requests=d["requests"], duration_s=d["duration_us"] / 1e6,
            rps=d["requests"] / (d["duration_us"] / 1e6) if d["duration_us"] else 0.0,
            p50_us=float(d["p50_us"]), p90_us=float(d["p90_us"]), p99_us=float(d["p99_us"]),
            max_us=float(d["max_us"]), non_2xx=e["status"],
            socket_errors=e["connect"] + e["read"] + e["write"] + e["timeout"],
        )  # fmt: skip
    missing = {"rps", "requests", "p50_us"} - r.keys()
    if missing:
        raise BenchError(f"could not read {', '.join(sorted(missing))} from wrk's output:\n{output}")
    r.setdefault("p90_us", float("nan"))
    r.setdefault("p99_us", float("nan"))
    r.setdefault("max_us", float("nan"))
    r.setdefault("duration_s", float("nan"))
    return r


def machine_times() -> tuple[float, float, float]:
    """CPU seconds since boot over all CPUs (/proc/stat): busy (steal included), steal, softirq."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK, steal / CLK_TCK, softirq / CLK_TCK


class Wrk:
    def __init__(self, children: Children, tmp: Path) -> None:
        self.children = children
        self.tmp = tmp
        self.proc: subprocess.Popen | None = None
        self.own_pids: list[int] = []  # long-lived benchmark processes (proxies, upstream worker)

    def _own_cpu(self) -> float:
        total = 0.0
        for p in self.own_pids:
            try:
                total += cpu_seconds(p)
            except OSError:
                pass
        return total

    def run(self, target: str, kind: str, url: str, threads: int, conns: int, seconds: float,
            pid: int | list[int] | None = None, pin: bool = False) -> WrkResult:  # fmt: skip
        tree = [pid] if isinstance(pid, int) else pid or []  # a router with --workers: its workers too
        self.children.check()
        cpus = sorted(os.sched_getaffinity(0))
        if pin and len(cpus) >= 2:
            # wrk alone on one CPU, the servers together on another: every run crosses CPUs the same way
            for p in self.own_pids:
                os.sched_setaffinity(p, {cpus[1]})
            preexec = lambda: (_die_with_parent(), os.sched_setaffinity(0, {cpus[0]}))  # noqa: E731
        else:
            pin = False
            preexec = _die_with_parent
        argv = [TOOLS["wrk"], f"-t{threads}", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--latency",
                "--timeout", "5s", "-s", str(LUA), url]  # fmt: skip
        cpu0 = sum(cpu_seconds(p) for p in tree)
        own0, (busy0, steal0, softirq0), t0 = self._own_cpu(), machine_times(), time.monotonic()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            preexec_fn=preexec,
        )  # fmt: skip
        try:
            output, _ = self.proc.communicate(timeout=seconds + 60)
        finally:
            if pin:
                for p in self.own_pids:
                    try:
                        os.sched_setaffinity(p, cpus)
                    except OSError:
                        pass
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        rc, self.proc = self.proc.returncode, None
        cpu = sum(cpu_seconds(p) for p in tree) - cpu0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk's own CPU, now that it has been waited for
        wrk_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        elapsed = time.monotonic() - t0
        busy1, steal1, softirq1 = machine_times()
        # Steal (the hypervisor running other guests) is in no process's time: counted apart from "other".
        other = busy1 - busy0 - (steal1 - steal0) - (self._own_cpu() - own0) - wrk_cpu
        pct = 100 / elapsed if elapsed > 0 else float("nan")
        other_pct = max(0.0, other) * pct
        if rc != 0:
            raise BenchError(f"wrk exited with status {rc} against {target} ({url}):\n{output}")
        self.children.check()
        r = parse_wrk(output)
        return WrkResult(target=target, kind=kind, connections=conns, cpu_s=cpu, other_pct=other_pct,
                         steal_pct=(steal1 - steal0) * pct, softirq_pct=(softirq1 - softirq0) * pct, raw=output,
                         **r)  # fmt: skip

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()


# --------------------------------------------------------------------------
# the benchmark


def machine_info() -> list[str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(proc_status_like("/proc/meminfo")["MemTotal"].split()[0])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except Exception:
        pass
    nginx_v = subprocess.run([TOOLS["nginx"], "-v"], capture_output=True, text=True)
    wrk_v = subprocess.run([TOOLS["wrk"], "-v"], capture_output=True, text=True)
    wrk_line = next((ln for ln in (wrk_v.stdout + wrk_v.stderr).splitlines() if ln.startswith("wrk")), "?")
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip() or "none"  # fmt: skip
    except Exception:
        commit = "?"
    try:
        import uvloop  # noqa: PLC0415

        uv = uvloop.__version__
    except Exception:
        uv = "?"
    return [
        f"machine: nproc={len(os.sched_getaffinity(0))} cpu={model!r} memory={mem} "
        f"kernel={platform.release()} load={'/'.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"versions: {(nginx_v.stderr or nginx_v.stdout).strip()}; {wrk_line.strip()}; "
        f"python {platform.python_version()}; uvloop {uv}; bakeoff commit {commit}",
    ]


def proc_status_like(path: str) -> dict[str, str]:
    with open(path) as f:
        return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in f)}


def snapshot(admin_port: int) -> dict[str, Any]:
    status, _, body = http_get(f"http://127.0.0.1:{admin_port}/-/snapshot", timeout=10)
    if status != 200:
        raise BenchError(f"router /-/snapshot answered {status}: {body[:200]!r}")
    return json.loads(body)


def snapshot_totals(snap: dict[str, Any]) -> dict[str, Any]:
    requests, outcomes, metric_count, invalid = 0, {}, 0, 0
    per_variant = {}
    for name, v in snap.get("variants", {}).items():
        requests += v.get("requests", 0)
        per_variant[name] = v.get("requests", 0)
        for k, n in v.get("outcomes", {}).items():
            outcomes[k] = outcomes.get(k, 0) + n
        metric_count += v.get("metrics", {}).get("revenue", {}).get("count", 0)
        invalid += v.get("invalid_metrics", 0)
    return {"requests": requests, "outcomes": outcomes, "revenue_count": metric_count,
            "invalid_metrics": invalid, "per_variant": per_variant}  # fmt: skip


def sanity_checks(direct_url: str, nginx_url: str, router_url: str, *more: tuple[str, str]) -> list[str]:
    """Each target answers as configured; returns the problems found (empty: all good)."""
    problems = []
    st, h, body = http_get(direct_url, {"X-User-Id": "check"})
    if st != 200 or h.get(METRIC_HEADER.lower()) != "1.5":
        problems.append(f"upstream: status {st}, {METRIC_HEADER}={h.get(METRIC_HEADER.lower())!r}")
    for name, url in (("nginx", nginx_url), ("router", router_url), *more):
        seen: dict[str, str] = {}
        for i in range(60):
            uid = f"check-{i}"
            for _ in range(2 if i < 10 else 1):
                st, h, body = http_get(url, {"X-User-Id": uid})
                if st != 200:
                    problems.append(f"{name}: status {st} for X-User-Id {uid}: {body[:200]!r}")
                    break
                if METRIC_HEADER.lower() in h:
                    problems.append(f"{name}: {METRIC_HEADER} reached the client")
                variant = h.get("x-bakeoff-variant")
                if not variant:
                    problems.append(f"{name}: no X-Bakeoff-Variant in the response")
                    break
                if body.decode(errors="replace").strip() != f"ok {variant}":
                    problems.append(f"{name}: X-Bakeoff-Variant {variant} but the body is {body[:40]!r}")
                if uid in seen and seen[uid] != variant:
                    problems.append(f"{name}: X-User-Id {uid} went to {seen[uid]} then {variant} (not sticky)")
                seen[uid] = variant
            if problems:
                break
        if not problems and len(set(seen.values())) < 3:
            problems.append(f"{name}: 60 user ids reached only {sorted(set(seen.values()))}")
    return problems


def log_findings(path: Path, patterns: tuple[str, ...]) -> tuple[int, list[str]]:
    """Lines of a log that report a problem: JSON lines by their level, other lines by ``patterns``."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return 0, []
    hits = []
    for ln in lines:
        if ln.startswith("{"):
            try:
                level = str(json.loads(ln).get("level", "")).lower()
            except ValueError:
                level = ""
            if level in ("warning", "warn", "error", "critical", "exception", "fatal"):
                hits.append(ln)
                continue
            if level:
                continue
        if any(p in ln.lower() for p in patterns):
            hits.append(ln)
    return len(hits), hits[:5]


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def fmt_us(us: float) -> str:
    if us != us:
        return "-"
    return f"{us:.0f}us" if us < 10000 else f"{us / 1000:.1f}ms"


def run(args: argparse.Namespace) -> dict[str, Any]:
    for tool in ("nginx", "wrk"):
        path = find_tool(tool)
        if not path:
            raise BenchError(
                f"{tool} is not installed (not on PATH, nor in /usr/sbin or /usr/bin); this benchmark needs "
                "nginx and wrk (Debian/Ubuntu: apt-get install nginx-light wrk)"
            )
        TOOLS[tool] = path
    if not LUA.exists():
        raise BenchError(f"{LUA} is missing")

    for line in machine_info():
        out(line)
    out(f"mode: {'quick' if args.quick else 'full'}; rounds={args.rounds}; throughput runs "
        f"-t{args.threads} -c{args.connections} {args.duration}s; latency runs -t1 -c1 "
        f"{args.latency_duration}s in {args.latency_slots} interleaved slots; warm-up {args.warmup}s per target"
        + (f"; soak to {args.soak_requests} router requests" if args.soak_requests else ""))  # fmt: skip

    tmp = Path(tempfile.mkdtemp(prefix="bakeoff-bench-"))
    children = Children()
    wrk = Wrk(children, tmp)
    ok = interrupted = False
    try:
        up_ports = free_ports(5 + 2 * len(ROUTERS))
        otlp_port = up_ports[-1]
        upstream_ports, nginx_port = up_ports[:3], up_ports[3]
        admin_port = up_ports[5]  # the first router's
        user = ""  # as root, nginx runs its workers as nobody; nothing here needs more

        # upstreams
        ud = tmp / "upstreams"
        ud.mkdir()
        (ud / "nginx.conf").write_text(upstream_nginx_conf(ud, upstream_ports, user))
        ups = children.start("upstream nginx", [TOOLS["nginx"], "-p", str(ud), "-c", str(ud / "nginx.conf"),
                                                "-e", str(ud / "error.log")], ud / "stdout.log")  # fmt: skip
        ups.stop_signal = signal.SIGQUIT  # graceful; keep upstreams up until the proxies are gone
        for p in upstream_ports:
            wait_port(p, ups)

        # nginx under test
        nd = tmp / "nginx"
        nd.mkdir()
        (nd / "nginx.conf").write_text(proxy_nginx_conf(nd, nginx_port, upstream_ports, user))
        ngx = children.start("nginx under test", [TOOLS["nginx"], "-p", str(nd), "-c", str(nd / "nginx.conf"),
                                                  "-e", str(nd / "error.log")], nd / "stdout.log")  # fmt: skip
        wait_port(nginx_port, ngx)
        ngx_worker = nginx_worker_pid(ngx.proc.pid)

        if any("TRACING" in args.router_env[r] for r in ROUTERS):
            sink = children.start("otlp sink", [sys.executable, "-c", OTLP_SINK, str(otlp_port)], tmp / "otlp.log")
            wait_port(otlp_port, sink)

        # routers: "router", then each --router LABEL=ENV (e.g. the pure-Python build) side by side
        urls = {"direct": f"http://127.0.0.1:{upstream_ports[0]}/", "nginx": f"http://127.0.0.1:{nginx_port}/"}
        pids: dict[str, int | list[int] | None] = {"direct": None, "nginx": ngx_worker}
        for i, label in enumerate(ROUTERS):
            port, admin = up_ports[4 + 2 * i], up_ports[5 + 2 * i]
            rconf = tmp / f"{label}.yaml"
            workers = int(args.router_env[label].get("WORKERS", "1"))
            tracing = args.router_env[label].get("TRACING")
            rconf.write_text(router_conf(port, admin, upstream_ports, workers,
                                         None if tracing is None else float(tracing), otlp_port))  # fmt: skip
            argv = router_command(rconf)
            env = dict(os.environ, PYTHONUNBUFFERED="1", **args.router_env[label])
            env.setdefault("BAKEOFF_LOG_LEVEL", "info")
            hot = subprocess.run([sys.executable, "-m", "bakeoff", "--version"], capture_output=True, text=True,
                                 env=env, cwd=str(REPO), timeout=60).stdout.strip()  # fmt: skip
            HOT_PATH[label] = hot.split("router hot path: ", 1)[-1] if "router hot path" in hot else hot or "?"
            router = children.start(label, argv, tmp / f"{label}.log", cwd=str(REPO), env=env)
            wait_port(port, router, timeout=30)
            wait_port(admin, router, timeout=30)
            deadline = time.monotonic() + 20
            while http_get(f"http://127.0.0.1:{admin}/-/readyz")[0] != 200:
                if time.monotonic() > deadline:
                    raise BenchError(f"{label} /-/readyz is not 200 after 20s")
                time.sleep(0.1)
            urls[label] = f"http://127.0.0.1:{port}/"
            ADMIN[label] = admin
            pids[label] = [router.proc.pid, *descendants(router.proc.pid)]
            out(f"{label}: pid {router.proc.pid} port {port} admin {admin}; {hot}"
                + (f" (env {' '.join(f'{k}={v}' for k, v in args.router_env[label].items())})"
                   if args.router_env[label] else ""))  # fmt: skip
        rpid = children.children[-len(ROUTERS)].proc.pid  # "router", the first
        rss_idle = rss_mb(rpid)
        wrk.own_pids = [nginx_worker_pid(ups.proc.pid), ngx_worker, *(p for r in ROUTERS for p in pids[r])]  # type: ignore[union-attr]
        out(f"processes: upstream nginx pid {ups.proc.pid} ports {upstream_ports}; nginx pid {ngx.proc.pid} "
            f"(worker {ngx_worker}) port {nginx_port}; router command: {' '.join(argv[1:4])} ...")  # fmt: skip

        problems = sanity_checks(urls["direct"], urls["nginx"], urls["router"],
                                 *((r, urls[r]) for r in ROUTERS[1:]))  # fmt: skip
        for p in problems:
            out(f"CHECK FAILED: {p}")
        if not problems:
            out("checks: all three answer 200; both proxies strip the metric header, name the variant, "
                "keep a user on one variant and spread 60 users over all three variants")  # fmt: skip

        # warm-up: connection pools, code paths, page cache
        for t in TARGETS:
            wrk.run(t, "warmup", urls[t], args.threads, args.connections, args.warmup, pids[t])
        rss_before = rss_mb(rpid)
        snap0 = snapshot_totals(snapshot(admin_port))
        out(f"router after warm-up: RSS {rss_before:.1f} MB (idle {rss_idle:.1f} MB), "
            f"{snap0['requests']} requests recorded")  # fmt: skip

        results: list[list[WrkResult]] = []
        for i in range(args.rounds):
            # Every target in every round, seconds apart, in an order that turns each round, so
            # that no target is always measured right after the same other one (the machine's
            # drift and a previous run's after-effects fall on all of them alike).
            row = []
            order = TARGETS[i % len(TARGETS) :] + TARGETS[: i % len(TARGETS)]
            for t in order:
                row.append(wrk.run(t, "throughput", urls[t], args.threads, args.connections, args.duration, pids[t]))
            # The -c1 runs in short slots, every target once per slot in an order that turns each slot:
            # a proxy's added p50 is taken against the direct run of its own slot, seconds away.
            for k in range(args.latency_slots):
                for t in order[k % len(order) :] + order[: k % len(order)]:
                    lat = wrk.run(t, "latency", urls[t], 1, 1, args.latency_duration / args.latency_slots, pids[t],
                                  pin=args.pin)  # fmt: skip
                    lat.slot = k
                    row.append(lat)
            results.append(row)
            by = index_row(row)
            out(f"round {i + 1}/{args.rounds}: rps direct {by['direct', 'throughput'].rps:.0f} nginx "
                f"{by['nginx', 'throughput'].rps:.0f} router {by['router', 'throughput'].rps:.0f}; p50 at -c1 "
                f"direct {fmt_us(by['direct', 'latency'].p50_us)} nginx {fmt_us(by['nginx', 'latency'].p50_us)} "
                f"router {fmt_us(by['router', 'latency'].p50_us)}; router RSS {rss_mb(rpid):.1f} MB")  # fmt: skip
        rss_rounds = rss_mb(rpid)

        soak_log = []
        if args.soak_requests:
            t0 = time.monotonic()
            while True:
                total = snapshot_totals(snapshot(admin_port))["requests"]
                rss = rss_mb(rpid)
                soak_log.append((round(time.monotonic() - t0, 1), total, round(rss, 2)))
                out(f"soak: t={time.monotonic() - t0:6.1f}s router requests {total:>9d}  RSS {rss:7.2f} MB  "
                    f"peak {rss_mb(rpid, 'VmHWM'):7.2f} MB")  # fmt: skip
                if total >= args.soak_requests:
                    break
                wrk.run("router", "soak", urls["router"], args.threads, args.connections, args.soak_interval, rpid)

        final = snapshot_totals(snapshot(admin_port))
        for r in ROUTERS:
            if "TRACING" in args.router_env[r]:
                srcs = snapshot(ADMIN[r]).get("sources", [])
                SPANS[r] = {k: sum(src.get("tracing", {}).get(k, 0) for src in srcs)
                            for k in ("exported", "dropped", "failed", "queued")}  # fmt: skip
                out(f"{r}: spans {SPANS[r]}")
        rss_after = rss_mb(rpid)
        rss_peak = rss_mb(rpid, "VmHWM")
        ngx_rss = rss_mb(ngx_worker)
        children.check()
        report = summarise(args, results, rss_idle, rss_before, rss_rounds, rss_after, rss_peak, ngx_rss,
                           snap0, final, soak_log, problems)  # fmt: skip
        ok = True
    except (KeyboardInterrupt, Interrupted):
        interrupted = True
        raise
    finally:
        wrk.kill()
        router_alive_at_end = {c.name for c in children.children if c.name in ROUTERS and c.alive()}
        children.stop_all()
        logs = [*((r, tmp / f"{r}.log", ("error", "exception", "traceback", "warning", "critical")) for r in ROUTERS),
                ("nginx under test", tmp / "nginx" / "error.log", ("[error]", "[crit]", "[alert]", "[emerg]", "[warn]")),
                ("upstream nginx", tmp / "upstreams" / "error.log", ("[error]", "[crit]", "[alert]", "[emerg]", "[warn]"))]  # fmt: skip
        findings = {}
        for name, path, pats in logs:
            n, first = log_findings(path, pats)
            findings[name] = n
            if n:
                out(f"log: {n} warning/error lines in {name}'s log ({path}); first ones:")
                for ln in first:
                    out(f"    {ln[:300]}")
        for r in sorted(router_alive_at_end):
            if children.exit_codes.get(r) not in (0, None):
                out(f"note: {r} exited with status {children.exit_codes[r]} after SIGTERM")
        if (ok or interrupted) and not args.keep_tmp and not any(findings.values()):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            out(f"kept {tmp} (logs and configs)")
    report["router_log_problems"] = findings["router"]
    report["router_exit_code"] = children.exit_codes.get("router")
    return report


# --------------------------------------------------------------------------
# --instructions: CPU per request as instructions executed (valgrind's callgrind)


def drive_requests(port: int, total: int, conns: int, users: int, seed: int = 18, warm: bool = False) -> int:
    """Send exactly ``total`` keep-alive GETs over ``conns`` connections; the same stream for every target.

    Each request carries an X-User-Id: drawn from ``users`` ids by a seeded
    generator, so nginx and every router see the same requests in the same
    order per connection; with ``warm`` every id once, in order (the warm-up:
    afterwards the router's sticky-key cache holds every id, as it does in the
    long wrk runs).  Returns how many answered 200.
    """
    import random  # noqa: PLC0415
    import threading  # noqa: PLC0415

    ok = [0] * conns
    errors: list[str] = []

    def one(c: int, n: int) -> None:
        rng = random.Random(seed * 1000 + c)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
                buf = b""
                for i in range(n):
                    uid = (c + i * conns) % users if warm else rng.randrange(users)
                    s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nX-User-Id: user-%d\r\n\r\n" % uid)
                    while b"\r\n\r\n" not in buf:
                        chunk = s.recv(65536)
                        if not chunk:
                            raise OSError("connection closed")
                        buf += chunk
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    m = re.search(rb"(?im)^content-length:[ \t]*(\d+)", head)
                    length = int(m.group(1)) if m else 0
                    while len(buf) < length:
                        chunk = s.recv(65536)
                        if not chunk:
                            raise OSError("connection closed mid-body")
                        buf += chunk
                    buf = buf[length:]
                    if head.startswith(b"HTTP/1.1 200 "):
                        ok[c] += 1
        except OSError as e:
            errors.append(f"connection {c}: {e}")

    threads = [threading.Thread(target=one, args=(c, total // conns + (c < total % conns))) for c in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise BenchError(f"driving 127.0.0.1:{port}: {'; '.join(errors[:3])}")
    return sum(ok)


def callgrind(pids: list[int], command: str) -> None:
    """``callgrind_control -z`` (zero) or ``-d`` (dump) for each of these processes, by pid."""
    for pid in pids:
        r = subprocess.run(
            ["callgrind_control", *command.split(), str(pid)], capture_output=True, text=True, timeout=120
        )
        if r.returncode != 0:
            raise BenchError(f"callgrind_control {command} {pid} failed: {(r.stdout + r.stderr).strip()}")


def callgrind_total(out_dir: Path, pid: int) -> int:
    """Instructions (Ir) in the last dump of one process: counted since the last zeroing."""
    dumps = sorted(out_dir.glob(f"cg.{pid}.*"), key=lambda p: int(p.suffix[1:]))  # cg.PID.1, .2, ...
    for path in reversed(dumps):
        m = re.search(r"^(?:summary|totals):\s+(\d+)", path.read_text(errors="replace"), re.M)
        if m:
            return int(m.group(1))
    raise BenchError(f"no callgrind dump for pid {pid} in {out_dir}")


def run_instructions(args: argparse.Namespace) -> dict[str, Any]:
    """Instructions per proxied request, nginx and every router, on the same request stream.

    Each proxy runs alone under ``valgrind --tool=callgrind`` (nginx as one
    process, ``master_process off``; a router with ``--workers`` with all its
    processes, the supervisor included), instrumented from the warm-up on.
    After the warm-up (every user id once, at least ``--instr-warmup``
    requests) the counters are zeroed; then exactly ``--instr-requests`` requests go through
    ``--instr-connections`` keep-alive connections, and the counters are
    dumped.  Instructions do not depend on what else the machine runs, so
    the figure repeats to within about 1% on a busy machine where CPU seconds
    vary by tens of percent.  Timers (the router's sweep) run slower under
    valgrind, which adds a little, alike in every run.
    """
    for tool in ("nginx", "valgrind", "callgrind_control"):
        path = find_tool(tool)
        if not path:
            raise BenchError(f"{tool} is not installed; --instructions needs nginx and valgrind "
                             "(Debian/Ubuntu: apt-get install nginx-light valgrind)")  # fmt: skip
        TOOLS[tool] = path
    for line in machine_info():
        out(line)
    n, conns = args.instr_requests, args.instr_connections
    out(f"mode: instructions; {n} requests over {conns} connections per target after {args.instr_warmup} "
        "warm-up requests, each proxy alone under valgrind --tool=callgrind")  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="bakeoff-bench-instr-"))
    children = Children()
    ok = False
    figures: dict[str, dict[str, Any]] = {}
    try:
        ports = free_ports(5 + 2 * len(ROUTERS))
        upstream_ports = ports[:3]
        ud = tmp / "upstreams"
        ud.mkdir()
        (ud / "nginx.conf").write_text(upstream_nginx_conf(ud, upstream_ports, ""))
        ups = children.start("upstream nginx", [TOOLS["nginx"], "-p", str(ud), "-c", str(ud / "nginx.conf"),
                                                "-e", str(ud / "error.log")], ud / "stdout.log")  # fmt: skip
        ups.stop_signal = signal.SIGQUIT
        for p in upstream_ports:
            wait_port(p, ups)
        cg = tmp / "callgrind"
        cg.mkdir()
        vg = [
            TOOLS["valgrind"],
            "--tool=callgrind",
            "--trace-children=yes",
            "--instr-atstart=no",
            f"--callgrind-out-file={cg}/cg.%p",
        ]
        for i, label in enumerate(["nginx", *ROUTERS]):
            port, admin = ports[3 + 2 * i], ports[4 + 2 * i]
            if label == "nginx":
                d = tmp / "nginx"
                d.mkdir()
                conf = proxy_nginx_conf(d, port, upstream_ports, "").replace("master_process on;",
                                                                             "master_process off;")  # fmt: skip
                (d / "nginx.conf").write_text(conf)
                argv = [*vg, TOOLS["nginx"], "-p", str(d), "-c", str(d / "nginx.conf"), "-e", str(d / "error.log")]
                env = dict(os.environ)
                hot = "nginx"
            else:
                workers = int(args.router_env[label].get("WORKERS", "1"))
                rconf = tmp / f"{label}.yaml"
                rconf.write_text(router_conf(port, admin, upstream_ports, workers))
                argv = [*vg, *router_command(rconf)]
                env = dict(os.environ, PYTHONUNBUFFERED="1", **args.router_env[label])
                env.setdefault("BAKEOFF_LOG_LEVEL", "info")
                v = subprocess.run([sys.executable, "-m", "bakeoff", "--version"], capture_output=True, text=True,
                                   env=env, cwd=str(REPO), timeout=60).stdout.strip()  # fmt: skip
                hot = v.split("router hot path: ", 1)[-1] if "router hot path" in v else v or "?"
            child = children.start(label, argv, tmp / f"{label}.log", cwd=str(REPO), env=env)
            wait_port(port, child, timeout=300)
            time.sleep(0.5 if label == "nginx" else 2.0)  # a --workers router: every worker listening
            tree = [child.proc.pid, *descendants(child.proc.pid)]
            callgrind(tree, "-i on")
            warm = drive_requests(port, max(args.instr_warmup, args.instr_users), conns, args.instr_users, warm=True)
            callgrind(tree, "-z")
            t0 = time.monotonic()
            answered = drive_requests(port, n, conns, args.instr_users)
            elapsed = time.monotonic() - t0
            callgrind(tree, "-d")
            per_pid = {pid: callgrind_total(cg, pid) for pid in tree}
            total = sum(per_pid.values())
            # The same time again with no requests: what timers (the router's sweep, a supervisor's
            # snapshot polls) cost meanwhile.  Under valgrind the stream takes ~50x its native time,
            # so these time-driven costs weigh ~50x more per request than they do natively; the net
            # figure leaves them out.
            callgrind(tree, "-z")
            time.sleep(elapsed)
            callgrind(tree, "-d")
            idle_pid = {pid: callgrind_total(cg, pid) for pid in tree}
            idle = sum(idle_pid.values())
            children.check()
            figures[label] = {
                "build": hot, "processes": len(tree), "requests": n, "answered_200": answered,
                "warmup_200": warm, "instructions": total, "instructions_per_req": round(total / n),
                "per_process": [round(v / n) for v in per_pid.values()], "idle_instructions": idle,
                "net_instructions_per_req": round((total - idle) / n),
                "net_per_process": [round((per_pid[p] - idle_pid[p]) / n) for p in tree],
            }  # fmt: skip
            out(f"{label:<8} {total / n:>12,.0f} instructions/request, net of timers {(total - idle) / n:>10,.0f}  "
                f"({len(tree)} process(es), net: {', '.join(f'{(per_pid[p] - idle_pid[p]) / n:,.0f}' for p in tree)}; "
                f"{answered}/{n} answered 200; {elapsed:.1f}s under valgrind; {hot})")  # fmt: skip
            child.proc.send_signal(signal.SIGTERM)
            try:
                child.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait()
            children.children.remove(child)
            if answered != n:
                raise BenchError(f"{label}: only {answered} of {n} requests answered 200")
        ok = True
    finally:
        children.stop_all()
        if ok and not args.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            out(f"kept {tmp} (logs, configs, callgrind dumps)")
    # The ratios are of the net figures: per request, not per second of valgrind's slow clock.
    net = {k: v["net_instructions_per_req"] for k, v in figures.items()}
    report: dict[str, Any] = {
        "mode": "instructions",
        "instr_per_req": net,
        "instr_per_req_gross": {k: v["instructions_per_req"] for k, v in figures.items()},
        "instr_per_req_ratio": {r: round(net[r] / net["nginx"], 3) for r in ROUTERS},
        "router_instr_per_req": net["router"],
        "nginx_instr_per_req": net["nginx"],
        "cpu_per_req_ratio_instr": round(net["router"] / net["nginx"], 3),
        "targets": figures,
    }
    for label, f in figures.items():
        if f["processes"] > 1:
            f["net_reliable"] = False
            out(f"note: {label} runs {f['processes']} processes; its supervisor polls every worker's snapshot "
                "twice a second, and under valgrind's slow clock the busy window holds fewer polls than the idle "
                "one (each poll waits for busy workers), so busy minus idle is not its per-request work: read its "
                "workers' gross figures beside the 1-worker router's (docs/benchmarks.md, Workers)")  # fmt: skip
    for r in ROUTERS:
        out(f"instructions per request {r}/nginx: {report['instr_per_req_ratio'][r]:.2f}"
            + (f"; {r}/router {net[r] / net['router']:.3f}" if r != "router" else ""))  # fmt: skip
    return report


def index_row(row: list[WrkResult]) -> dict[tuple[str, str], WrkResult]:
    """A round's runs by (target, kind); a target's latency slots combined into one "latency" entry.

    The combined entry has the median p50 and p99 of the slots, their errors
    summed and the highest noise figures.
    """
    by: dict[tuple[str, str], WrkResult] = {}
    slots: dict[str, list[WrkResult]] = {}
    for r in row:
        if r.kind == "latency":
            slots.setdefault(r.target, []).append(r)
        else:
            by[r.target, r.kind] = r
    for t, rs in slots.items():
        by[t, "latency"] = dataclasses.replace(
            rs[0], requests=sum(r.requests for r in rs), p50_us=median([r.p50_us for r in rs]),
            p99_us=median([r.p99_us for r in rs]), non_2xx=sum(r.non_2xx for r in rs),
            socket_errors=sum(r.socket_errors for r in rs), other_pct=max(r.other_pct for r in rs),
            steal_pct=max(r.steal_pct for r in rs), softirq_pct=max(r.softirq_pct for r in rs), raw="",
        )  # fmt: skip
    return by


def slot_added(row: list[WrkResult]) -> dict[str, list[float]]:
    """Per target, its -c1 p50 minus the direct upstream's p50 in the same slot, one figure per slot."""
    p50 = {(r.target, r.slot): r.p50_us for r in row if r.kind == "latency"}
    slots = sorted({k for _, k in p50})
    return {t: [p50[t, k] - p50["direct", k] for k in slots if (t, k) in p50] for t in TARGETS}


def spread(xs: list[float]) -> dict[str, float]:
    """Median, min, max and interquartile range of per-round figures.

    The quartiles are linear interpolation between order statistics
    (``statistics.quantiles(method="inclusive")``): definition 7 of "Sample
    Quantiles in Statistical Packages", The American Statistician 50(4), 1996.
    """
    xs = [x for x in xs if x == x]
    if not xs:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "q1": float("nan"),
                "q3": float("nan")}  # fmt: skip
    q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else (xs[0], xs[0], xs[0])
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "q1": q1, "q3": q3}


def median_ci(xs: list[float], level: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval for the median of the population ``xs`` were drawn from.

    The order statistics x_(k) and x_(n-k+1), with k the largest integer such
    that P(Binomial(n, 1/2) <= k - 1) <= (1 - level) / 2, cover the median
    with probability at least ``level`` whatever the distribution (Conover,
    "Practical Nonparametric Statistics", 3rd ed., Wiley 1999, section 3.2,
    the confidence interval for a quantile).  With too few values for that
    level (n <= 5 at 0.95) it is the whole range, and covers less.
    """
    xs = sorted(x for x in xs if x == x)
    n = len(xs)
    if n == 0:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    k = 0
    cum = 0.0
    for i in range(n + 1):
        cum += math.comb(n, i) / 2**n
        if cum > alpha:
            break
        k = i + 1
    if k == 0:
        return xs[0], xs[-1]
    return xs[k - 1], xs[n - k]


def fmt_spread(name: str, xs: list[float], fmt: str, target: str = "") -> str:
    s = spread(xs)
    return (f"{name} per round: {', '.join(format(x, fmt) for x in xs)}; median {s['median']:{fmt}} "
            f"(min {s['min']:{fmt}}, max {s['max']:{fmt}}, IQR {s['q1']:{fmt}}-{s['q3']:{fmt}}){target}")  # fmt: skip


def rounded_spread(xs: list[float], nd: int) -> dict[str, float]:
    return {k: round(v, nd) for k, v in spread(xs).items()}


def summarise(args, results, rss_idle, rss_before, rss_rounds, rss_after, rss_peak, ngx_rss, snap0, final,
              soak_log, problems) -> dict[str, Any]:  # fmt: skip
    out()
    head = (f"{'round':>5}  {'target':<8} {'rps -c64':>10} {'p50 -c64':>9} {'p99 -c64':>9} "
            f"{'p50 -c1':>8} {'p99 -c1':>8} {'added p50':>9} {'cpu us/req':>10} {'cpu %':>6} {'other%':>6} "
            f"{'steal%':>6} {'sirq%':>6} {'non-2xx':>8} {'sock err':>8}")  # fmt: skip
    out(head)
    out("-" * len(head))
    per_round = []
    cpu = {t: [0.0, 0] for t in TARGETS}  # throughput runs: CPU seconds, requests
    cpu_pct: dict[str, list[float]] = {t: [] for t in TARGETS}
    errors = {t: [0, 0] for t in TARGETS}
    added_all: dict[str, list[float]] = {t: [] for t in TARGETS}  # every slot of every round
    for i, row in enumerate(results):
        by = index_row(row)
        by_slot = slot_added(row)
        added, cpu_round = {}, {}
        for t in TARGETS:
            thr, lat = by[t, "throughput"], by[t, "latency"]
            added[t] = median(by_slot[t])
            added_all[t] += by_slot[t]
            cpu[t][0] += thr.cpu_s
            cpu[t][1] += thr.requests
            for r in (thr, lat):
                errors[t][0] += r.non_2xx
                errors[t][1] += r.socket_errors
            cpu_req = thr.cpu_s / thr.requests * 1e6 if t != "direct" and thr.requests else float("nan")
            cpu_round[t] = cpu_req
            pct = thr.cpu_s / thr.duration_s * 100 if t != "direct" and thr.duration_s else float("nan")
            cpu_pct[t].append(pct)
            out(f"{i + 1:>5}  {t:<8} {thr.rps:>10.0f} {fmt_us(thr.p50_us):>9} {fmt_us(thr.p99_us):>9} "
                f"{fmt_us(lat.p50_us):>8} {fmt_us(lat.p99_us):>8} "
                f"{(fmt_us(added[t]) if t != 'direct' else '-'):>9} "
                f"{(f'{cpu_req:.1f}' if cpu_req == cpu_req else '-'):>10} "
                f"{(f'{pct:.0f}' if pct == pct else '-'):>6} "
                f"{max(thr.other_pct, lat.other_pct):>6.0f} "
                f"{max(thr.steal_pct, lat.steal_pct):>6.0f} {max(thr.softirq_pct, lat.softirq_pct):>6.0f} "
                f"{thr.non_2xx + lat.non_2xx:>8} {thr.socket_errors + lat.socket_errors:>8}")  # fmt: skip
        n_added = added["nginx"]
        n_cpu = cpu_round["nginx"]
        per_round.append({
            "rps": {t: by[t, "throughput"].rps for t in TARGETS},
            "p50": {t: by[t, "latency"].p50_us for t in TARGETS},
            "added": added,
            "cpu": cpu_round,
            "rps_ratio": {r: by[r, "throughput"].rps / by["nginx", "throughput"].rps for r in ROUTERS},
            # nginx's added p50 can be ~0 on a quiet machine; floor it at 1us so the ratio stays finite
            "added_ratio": {r: added[r] / max(n_added, 1.0) for r in ROUTERS},
            "cpu_ratio": {r: cpu_round[r] / n_cpu if n_cpu else float("nan") for r in ROUTERS},
        })  # fmt: skip
    out("-" * len(head))
    runs = [r for row in results for r in row]
    noisy = [r for r in runs if r.other_pct > 25]
    med = {t: median([r["rps"][t] for r in per_round]) for t in TARGETS}
    p50 = {t: median([r["p50"][t] for r in per_round]) for t in TARGETS}
    add = {t: median(added_all[t]) for t in TARGETS}
    # The added p50 ratio: of the medians over all slots (nginx's floored at 1us); a ratio of two small
    # differences per round swings widely, so the per-round ratios are shown but this is the figure.
    added_ratio = {r: add[r] / max(add["nginx"], 1.0) for r in ROUTERS}
    ratios = {
        k: {r: [pr[k][r] for pr in per_round] for r in ROUTERS} for k in ("rps_ratio", "added_ratio", "cpu_ratio")
    }
    cpu_req = {t: (cpu[t][0] / cpu[t][1] * 1e6 if cpu[t][1] and t != "direct" else None) for t in TARGETS}
    for t in TARGETS:
        out(f"{'med':>5}  {t:<8} {med[t]:>10.0f} {'':>9} {'':>9} {fmt_us(p50[t]):>8} {'':>8} "
            f"{(fmt_us(add[t]) if t != 'direct' else '-'):>9} "
            f"{(f'{cpu_req[t]:.1f}' if cpu_req[t] else '-'):>10} "
            f"{(f'{median(cpu_pct[t]):.0f}' if t != 'direct' else '-'):>6} {'':>6} {'':>6} {'':>6} "
            f"{errors[t][0]:>8} {errors[t][1]:>8}")  # fmt: skip
    out()
    for r in ROUTERS:
        who = f"{r}/nginx" + (f" [{HOT_PATH[r]}]" if r in HOT_PATH else "")
        rr = median(ratios["rps_ratio"][r])
        ar = added_ratio[r]
        out(fmt_spread(f"rps ratio {who}", ratios["rps_ratio"][r], ".3f",
                       f" (target >= 0.7: {'met' if rr >= 0.7 else 'NOT met'})"))  # fmt: skip
        out(fmt_spread(f"cpu per request ratio {who}", ratios["cpu_ratio"][r], ".2f", " (goal <= 1.5)"))
        out(fmt_spread(f"added p50 ratio {who}", ratios["added_ratio"][r], ".2f", ""))
        out(f"added p50 ratio {who} of the medians over {len(added_all[r])} slots: {ar:.2f} "
            f"(target <= 1.5: {'met' if ar <= 1.5 else 'NOT met'})")  # fmt: skip
    added_ci = {t: median_ci(added_all[t]) for t in TARGETS[1:]}
    for t in TARGETS[1:]:
        out(fmt_spread(f"added p50 {t} (us)", added_all[t], ".1f").replace(" per round", " per slot"))
        lo, hi = added_ci[t]
        out(f"added p50 {t}: median {add[t]:.1f} us over {len(added_all[t])} slots, 95% CI {lo:.1f} to {hi:.1f} us"
            + ("" if lo > 0 else " -- NOT resolved from zero: at this noise the hop's cost is not measured; "
               "read cpu us/req, or run more slots (--latency-duration) on a quieter machine"))  # fmt: skip
    vs_router: dict[str, dict[str, list[float]]] = {}
    for r in ROUTERS[1:]:
        cpu_vs = [a / b for a, b in zip(ratios["cpu_ratio"][r], ratios["cpu_ratio"]["router"]) if b == b and b]
        rps_vs = [pr["rps"][r] / pr["rps"]["router"] for pr in per_round if pr["rps"]["router"]]
        vs_router[r] = {"cpu": cpu_vs, "rps": rps_vs}
        out(fmt_spread(f"cpu per request {r}/router", cpu_vs, ".2f"))
        out(fmt_spread(f"rps {r}/router", rps_vs, ".3f"))
    neg = [i + 1 for i, pr in enumerate(per_round) if any(pr["added"][t] < 0 for t in TARGETS if t != "direct")]
    if neg:
        out(f"note: a proxy's p50 at -c1 came out below the direct upstream's in round(s) {neg}: the added p50 is "
            "within the noise of the -c1 runs there; read its median and spread, not one round")  # fmt: skip
    steal = max(r.steal_pct for r in runs)
    softirq = max(r.softirq_pct for r in runs)
    out(f"steal time up to {steal:.0f}% and softirq time up to {softirq:.0f}% of a core per run "
        "(/proc/stat; other% counts neither steal nor the benchmark's own processes)")  # fmt: skip
    if noisy:
        out(f"NOISE: other processes used more than 25% of a core during {len(noisy)} of "
            f"{len(runs)} runs (up to {max(r.other_pct for r in noisy):.0f}%); "
            "the figures are less trustworthy, consider running again on a quiet machine")  # fmt: skip
    if steal >= 5:
        out(f"NOISE: steal time reached {steal:.0f}% of a core: the hypervisor gave this machine's CPUs to other "
            "guests; that, not other processes here, explains run-to-run spread")  # fmt: skip
    spread_wide = any(spread(v[r])["max"] > 1.25 * spread(v[r])["min"] for v in (ratios["rps_ratio"],) for r in ROUTERS)
    if softirq >= 25 and (noisy or spread_wide):
        out(f"NOISE: softirq time reached {softirq:.0f}% of a core (the kernel's network processing, much of it "
            "this benchmark's own loopback traffic, charged to whichever process the CPU was running): it, not "
            "other processes, explains part of the spread")  # fmt: skip
    served = final["requests"]
    out(f"router RSS: idle {rss_idle:.2f} MB, after warm-up {rss_before:.2f} MB, after the rounds "
        f"{rss_rounds:.2f} MB, at the end {rss_after:.2f} MB (peak {rss_peak:.2f} MB); "
        f"growth after warm-up {rss_after - rss_before:+.2f} MB over {served - snap0['requests']} requests; "
        f"nginx worker RSS {ngx_rss:.2f} MB")  # fmt: skip
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(final["outcomes"].items()) if v)
    out(f"router /-/snapshot: {served} requests ({outcomes}); per variant "
        f"{', '.join(f'{k} {v}' for k, v in sorted(final['per_variant'].items()))}; "
        f"revenue values recorded {final['revenue_count']}, invalid {final['invalid_metrics']}")  # fmt: skip
    non2xx = sum(v for k, v in final["outcomes"].items() if k != "2xx")
    if non2xx:
        out(f"WARNING: the router recorded {non2xx} requests that did not end in 2xx")
    if final["revenue_count"] != final["outcomes"].get("2xx", 0):
        out(f"WARNING: revenue values recorded ({final['revenue_count']}) != 2xx responses "
            f"({final['outcomes'].get('2xx', 0)})")  # fmt: skip

    def router_figures(r: str) -> dict[str, Any]:
        return {
            "hot_path": HOT_PATH.get(r, "?"),
            "rps": round(med[r], 1),
            "added_p50_us": round(add[r], 1),
            "added_p50_us_spread": rounded_spread(added_all[r], 1),
            "p50_us": p50[r],
            "cpu_us_per_req": round(cpu_req[r], 1) if cpu_req[r] else None,
            "cpu_pct": round(median(cpu_pct[r]), 1),
            "rps_ratio": rounded_spread(ratios["rps_ratio"][r], 4),
            "added_p50_ratio": rounded_spread(ratios["added_ratio"][r], 3),
            "cpu_per_req_ratio": rounded_spread(ratios["cpu_ratio"][r], 3),
            "wrk_errors": errors[r][0] + errors[r][1],
            "wrk_non_2xx": errors[r][0],
            "wrk_socket_errors": errors[r][1],
            "requests": cpu[r][1],
            "workers": int(args.router_env[r].get("WORKERS", "1")),
            **(
                {
                    "rps_vs_router": rounded_spread(vs_router[r]["rps"], 3),
                    "cpu_per_req_vs_router": rounded_spread(vs_router[r]["cpu"], 3),
                }
                if r in vs_router
                else {}
            ),
        }

    return {
        "router_rps": round(med["router"], 1),
        "nginx_rps": round(med["nginx"], 1),
        "rps_ratio": round(median(ratios["rps_ratio"]["router"]), 4),
        "router_added_p50_us": round(add["router"], 1),
        "nginx_added_p50_us": round(add["nginx"], 1),
        "added_p50_ratio": round(added_ratio["router"], 3),
        "added_p50_us_spread": {t: rounded_spread(added_all[t], 1) for t in TARGETS[1:]},
        "added_p50_ci_us": {t: [round(added_ci[t][0], 1), round(added_ci[t][1], 1)] for t in TARGETS[1:]},
        "added_p50_resolved": {t: bool(added_ci[t][0] > 0) for t in TARGETS[1:]},
        "latency_slots": len(added_all["router"]),
        "router_rss_mb_after": round(rss_after, 2),
        "cpu_per_req_ratio": round(median(ratios["cpu_ratio"]["router"]), 3),
        "router_rss_mb_before": round(rss_before, 2),
        "router_rss_mb_idle": round(rss_idle, 2),
        "router_rss_mb_peak": round(rss_peak, 2),
        "router_requests_total": served,
        "router_non_2xx": non2xx,
        "router_wrk_errors": errors["router"][0] + errors["router"][1],
        "nginx_wrk_errors": errors["nginx"][0] + errors["nginx"][1],
        "direct_rps": round(med["direct"], 1),
        "router_p50_us": p50["router"],
        "nginx_p50_us": p50["nginx"],
        "direct_p50_us": p50["direct"],
        "router_cpu_us_per_req": round(cpu_req["router"], 1) if cpu_req["router"] else None,
        "nginx_cpu_us_per_req": round(cpu_req["nginx"], 1) if cpu_req["nginx"] else None,
        "router_cpu_pct": round(median(cpu_pct["router"]), 1),
        "nginx_cpu_pct": round(median(cpu_pct["nginx"]), 1),
        "router_hot_path": HOT_PATH.get("router", "?"),
        "rps_ratio_rounds": [round(x, 4) for x in ratios["rps_ratio"]["router"]],
        "added_p50_ratio_rounds": [round(x, 3) for x in ratios["added_ratio"]["router"]],
        "cpu_per_req_ratio_rounds": [round(x, 3) for x in ratios["cpu_ratio"]["router"]],
        "spread": {k: rounded_spread(ratios[k]["router"], 4) for k in ("rps_ratio", "added_ratio", "cpu_ratio")},
        "routers": {r: router_figures(r) for r in ROUTERS},
        "workers_scaling": {
            r: rounded_spread(vs_router[r]["rps"], 3)
            for r in ROUTERS[1:]
            if int(args.router_env[r].get("WORKERS", "1")) > 1
        },  # fmt: skip
        # --tracing: CPU per request of the routers with tracing against "router" (no tracing block: today's)
        **(
            {
                "tracing": {
                    "router_cpu_us_per_req": round(cpu_req["router"], 1) if cpu_req["router"] else None,
                    **{
                        r: {
                            "sample_ratio": float(args.router_env[r]["TRACING"]),
                            "cpu_us_per_req": round(cpu_req[r], 1) if cpu_req[r] else None,
                            "cpu_per_req_vs_router": rounded_spread(vs_router[r]["cpu"], 3),
                            "rps_vs_router": rounded_spread(vs_router[r]["rps"], 3),
                            "spans": SPANS.get(r),
                        }
                        for r in ROUTERS[1:]
                        if "TRACING" in args.router_env[r] and r in vs_router
                    },
                }
            }
            if any("TRACING" in args.router_env[r] for r in ROUTERS[1:])
            else {}
        ),
        "rounds": len(per_round),
        "quick": bool(args.quick),
        "soak": soak_log,
        "checks_ok": not problems,
        "max_other_cpu_pct": round(max(r.other_pct for r in runs), 1),
        "max_steal_cpu_pct": round(steal, 1),
        "max_softirq_cpu_pct": round(softirq, 1),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ
    p = argparse.ArgumentParser(description="bakeoff's router against nginx on this machine (see docs/benchmarks.md)")
    p.add_argument("--quick", action="store_true", default=env.get("QUICK", "") not in ("", "0", "false"),
                   help="smoke mode: 1 round of 1-second runs (or QUICK=1)")  # fmt: skip
    p.add_argument("--rounds", type=int, default=None, help="rounds (default 3; 1 with --quick)")
    p.add_argument("--duration", type=float, default=None, help="seconds per throughput run (default 5)")
    p.add_argument(
        "--latency-duration",
        type=float,
        default=None,
        help="seconds of -c1 latency runs per target per round (default 4), split into --latency-slots",
    )
    p.add_argument(
        "--latency-slots",
        type=int,
        default=None,
        help="short interleaved -c1 runs per target per round (default 4; 1 with --quick)",
    )
    p.add_argument("--warmup", type=float, default=None, help="seconds of warm-up per target (default 2)")
    p.add_argument("--connections", type=int, default=64, help="connections for throughput runs (default 64)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads for throughput runs (default 2)")
    p.add_argument("--soak-requests", type=int, default=int(env.get("SOAK_REQUESTS", "0") or 0),
                   help="after the rounds, drive the router until it has served this many requests in all "
                        "and print its RSS at intervals (or SOAK_REQUESTS)")  # fmt: skip
    p.add_argument("--soak-interval", type=float, default=10.0, help="seconds between RSS readings in the soak")
    p.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=env.get("PIN", "1") not in ("0", "false"),
        help="in the -c1 latency runs, pin wrk to one CPU and the servers to another (default on)",
    )
    p.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (configs, logs)")
    p.add_argument(
        "--router", action="append", default=[], metavar="LABEL[=VAR=VALUE,...]",
        help="run another router side by side, started with these environment variables: e.g. "
             "pure=BAKEOFF_PURE_PYTHON=1 (the pure-Python hot path), or base=PYTHONPATH=... (another checkout)",
    )  # fmt: skip
    p.add_argument("--compare-pure", action="store_true",
                   help="the same as --router pure=BAKEOFF_PURE_PYTHON=1")  # fmt: skip
    p.add_argument("--tracing", action="store_true",
                   help="the same as --router trace0=TRACING=0 --router trace1pct=TRACING=0.01 --router "
                        "trace100=TRACING=1: routers with OpenTelemetry tracing (propagation only, 1%% and 100%% "
                        "of requests sampled, exporting to an OTLP sink) beside the one without")  # fmt: skip
    p.add_argument("--workers-scaling", action="store_true",
                   help="the same as --router w2=WORKERS=2: a router with 2 workers beside the 1-worker one")  # fmt: skip
    p.add_argument(
        "--instructions",
        action="store_true",
        help="instead of the wrk rounds: instructions per request of nginx and each router under "
        "valgrind's callgrind, on the same fixed request stream (repeatable on a busy machine)",
    )
    p.add_argument("--instr-requests", type=int, default=2000, help="requests counted per target (default 2000)")
    p.add_argument("--instr-warmup", type=int, default=300, help="warm-up requests before counting (default 300)")
    p.add_argument("--instr-connections", type=int, default=4, help="keep-alive connections (default 4)")
    p.add_argument(
        "--instr-users",
        type=int,
        default=1000,
        help="distinct X-User-Id values in the stream; the warm-up sends each once (default 1000)",
    )
    a = p.parse_args(argv)
    a.rounds = a.rounds or (1 if a.quick else int(env.get("ROUNDS", "5")))
    a.duration = a.duration or (1.0 if a.quick else 4.0)
    a.latency_duration = a.latency_duration or (1.0 if a.quick else 4.0)
    a.latency_slots = a.latency_slots or (1 if a.quick else max(1, round(a.latency_duration)))
    a.router_env = {"router": {}}
    specs = [*a.router, *(["pure=BAKEOFF_PURE_PYTHON=1"] if a.compare_pure else []),
             *(["w2=WORKERS=2"] if a.workers_scaling else []),
             *(["trace0=TRACING=0", "trace1pct=TRACING=0.01", "trace100=TRACING=1"] if a.tracing else [])]  # fmt: skip
    for spec in specs:
        label, _, rest = spec.partition("=")
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,15}", label) or label in ("router", "direct", "nginx"):
            p.error(f"--router {spec!r}: the label must be a short lower-case name other than router, direct, nginx")
        if label in a.router_env:
            p.error(f"--router {spec!r}: the label {label} is given twice")
        env_vars = {}
        for item in filter(None, rest.split(",")):
            k, eq, v = item.partition("=")
            if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
                p.error(f"--router {spec!r}: {item!r} is not VAR=VALUE")
            env_vars[k] = v
        if not env_vars.get("WORKERS", "1").isdigit() or int(env_vars.get("WORKERS", "1")) < 1:
            p.error(f"--router {spec!r}: WORKERS must be a whole number of processes, at least 1")
        if "TRACING" in env_vars:
            try:
                ok = 0 <= float(env_vars["TRACING"]) <= 1
            except ValueError:
                ok = False
            if not ok:
                p.error(f"--router {spec!r}: TRACING must be a sample ratio from 0 to 1")
        a.router_env[label] = env_vars
    a.warmup = a.warmup or (1.0 if a.quick else 2.0)
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ROUTERS[:] = list(args.router_env)
    TARGETS[:] = ["direct", "nginx", *ROUTERS]

    def on_signal(signum: int, frame: Any) -> None:
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        report = run_instructions(args) if args.instructions else run(args)
    except BenchError as e:
        print(f"router_vs_nginx: {e}", file=sys.stderr, flush=True)
        return 1
    except (KeyboardInterrupt, Interrupted) as e:
        print(f"router_vs_nginx: interrupted ({str(e) or 'SIGINT'}); all child processes stopped", file=sys.stderr)
        return 130
    out(json.dumps(report, separators=(", ", ": ")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
