"""Resource cost of each variant: one small interface, one file per way to sample it.

A :class:`ResourceSource` gives, per variant, its cumulative CPU seconds and its
resident memory (working set) now:

- :class:`bakeoff.judge.sources.process_tree.ProcessTreeSource` (``bakeoff run``):
  each variant's whole process tree, with psutil;
- :class:`bakeoff.judge.sources.cadvisor.CadvisorSource` (a cluster): PromQL over
  cAdvisor's ``container_cpu_usage_seconds_total`` and
  ``container_memory_working_set_bytes``.

:class:`ResourceMeter` turns those samples, taken at the judge's cadence, and the
routers' request counts into batch statistics the judge tests like a mean per
reported value (:class:`bakeoff.judge.contrast.ContrastTest`, ``per: value``):

- ``cpu_per_request``: per batch of ``cpu_batch`` looks, the CPU seconds the variant
  used in the batch divided by the requests it served in it -- a ratio estimator
  (Cochran, *Sampling Techniques*, 3rd ed. 1977, Section 6.2), one value per batch;
  the increments of a counter over disjoint intervals are close to independent, so
  short batches (2 looks) do;
- ``memory``: per batch of ``memory_batch`` looks, the mean of the samples of
  resident memory in it.

Consecutive samples of memory (a level, not an increment) are strongly
correlated, so single looks are not independent observations; means over
non-overlapping batches of consecutive looks are close to independent and
nearly normal -- the method of batch means (Schmeiser, "Batch size effects in
the analysis of simulation output", Operations Research 30, 1982; Law & Kelton,
*Simulation Modeling and Analysis*, Section 9.5.3).  The batch values then go
through the same asymptotic confidence sequence and mixture SPRT as every mean
(Waudby-Smith, Arbour, Sinha, Kennedy, Ramdas, "Time-uniform central limit
theory and asymptotic confidence sequences", Annals of Statistics 2024; Howard,
Ramdas, McAuliffe, Sekhon, "Time-uniform, nonparametric, nonasymptotic
confidence sequences", Annals of Statistics 2021), which is what keeps the
verdicts valid at every look.

The first batch of each process (or pod) is left out: it holds the start-up --
imports, worker processes spawning, caches filling -- which is not the cost per
request in steady state (deleting the initial transient, Law & Kelton, Section
9.5.1); one outlier of that size would otherwise dominate the variance for the
rest of the run.  A batch in which a variant served fewer than ``min_requests``
requests gives no ``cpu_per_request`` value (a ratio over a handful of requests
is mostly noise).

The meter's output is a snapshot of its own (``bakeoff.snapshot/v1`` with no
requests and a ``resources`` block per variant, docs/snapshot.md): the caller
passes it to ``judge.core.step`` next to the routers' snapshots, and the judge
keeps a baseline for it like for any other source.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from bakeoff.contracts.histogram import LAYOUT
from bakeoff.contracts.snapshot import OUTCOMES, SNAPSHOT_FORMAT

# Looks per batch (at the judge's 1 s cadence, a CPU value every 2 s and a memory value every 5 s).
CPU_BATCH = 2
MEMORY_BATCH = 5
# Batches left out at the start of each process (warm-up), and the fewest requests a batch
# needs to give a CPU-per-request value.
WARMUP_BATCHES = 1
MIN_REQUESTS = 10


@dataclass(frozen=True, slots=True)
class ResourceSample:
    """One variant at one instant: CPU seconds used so far (all its processes or containers)
    and resident memory now, in bytes."""

    cpu_seconds: float
    memory_bytes: float


@runtime_checkable
class ResourceSource(Protocol):
    description: str

    async def sample(self, variants: Collection[str]) -> dict[str, ResourceSample]:
        """The current sample of each of ``variants`` it can see (a variant it cannot see is left out)."""
        ...

    async def close(self) -> None: ...


@dataclass
class _Stats:
    count: int = 0
    sum: float = 0.0
    sum_sq: float = 0.0

    def add(self, x: float) -> None:
        self.count += 1
        self.sum += x
        self.sum_sq += x * x

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "sum": self.sum, "sum_sq": self.sum_sq}


@dataclass
class _CpuBatch:
    """The CPU batch a variant is in: where it started (CPU seconds, requests)."""

    cpu0: float
    requests0: int
    warmup: int = 0  # batches still to leave out
    looks: int = 0


@dataclass
class _MemoryBatch:
    warmup: int = 0
    samples: list[float] = field(default_factory=list)


class ResourceMeter:
    """Cumulative batch statistics of resource cost per variant (see the module docstring).

    ``observe(samples, requests)`` once per look: ``samples`` from a
    :class:`ResourceSource`, ``requests`` each variant's cumulative request count (from the
    routers' snapshot).  A variant whose CPU counter or request count goes down (a restarted
    process, a replaced pod) starts a new batch; the interrupted one is dropped, never
    counted with a negative increment.
    """

    def __init__(
        self,
        cpu_batch: int = CPU_BATCH,
        memory_batch: int = MEMORY_BATCH,
        *,
        warmup: int = WARMUP_BATCHES,
        min_requests: int = MIN_REQUESTS,
        source_id: str = "resources",
        clock=time.time,
    ) -> None:
        if cpu_batch < 1 or memory_batch < 1:
            raise ValueError("a batch must be at least 1 look")
        self.cpu_batch, self.memory_batch = cpu_batch, memory_batch
        self.warmup = warmup
        self.min_requests = min_requests
        self.source_id = source_id
        self.started_at = clock()
        self.clock = clock
        self.cpu: dict[str, _Stats] = {}
        self.memory: dict[str, _Stats] = {}
        self.last: dict[str, ResourceSample] = {}
        self._cpu: dict[str, _CpuBatch] = {}
        self._memory: dict[str, _MemoryBatch] = {}

    def observe(self, samples: Mapping[str, ResourceSample], requests: Mapping[str, int]) -> None:
        for name, s in samples.items():
            if not (math.isfinite(s.cpu_seconds) and math.isfinite(s.memory_bytes)):
                continue
            self.last[name] = s
            n = int(requests.get(name, 0))
            cur = self._cpu.get(name)
            if cur is None or s.cpu_seconds < cur.cpu0 or n < cur.requests0:
                # a new (or restarted) process: its memory batches start over with it
                self._cpu[name] = _CpuBatch(s.cpu_seconds, n, self.warmup)
                self._memory[name] = _MemoryBatch(self.warmup)
                continue
            cur.looks += 1
            if cur.looks >= self.cpu_batch:
                self._cpu[name] = _CpuBatch(s.cpu_seconds, n, max(0, cur.warmup - 1))
                served = n - cur.requests0
                if not cur.warmup and served >= self.min_requests:
                    self.cpu.setdefault(name, _Stats()).add((s.cpu_seconds - cur.cpu0) / served)
            mb = self._memory[name]
            mb.samples.append(s.memory_bytes)
            if len(mb.samples) >= self.memory_batch:
                self._memory[name] = _MemoryBatch(max(0, mb.warmup - 1))
                if not mb.warmup:
                    self.memory.setdefault(name, _Stats()).add(sum(mb.samples) / len(mb.samples))

    def per_request(self, name: str) -> float:
        """Mean CPU seconds per request over the batches so far (NaN before the first)."""
        st = self.cpu.get(name)
        return st.sum / st.count if st and st.count else math.nan

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """The batches so far as a snapshot of their own (no requests, ``resources`` per variant)."""
        variants: dict[str, Any] = {}
        for name in sorted(set(self.cpu) | set(self.memory) | set(self.last)):
            res = {}
            if name in self.cpu:
                res["cpu_per_request"] = self.cpu[name].to_json()
            if name in self.memory:
                res["memory"] = self.memory[name].to_json()
            variants[name] = {
                "requests": 0,
                "outcomes": dict.fromkeys(OUTCOMES, 0),
                "latency": {},
                "metrics": {},
                "resources": res,
            }
        return {
            "format": SNAPSHOT_FORMAT,
            "taken_at": self.clock() if now is None else now,
            "sources": [{"router_id": self.source_id, "pid": 0, "started_at": self.started_at}],
            "histogram": dict(LAYOUT),
            "routes": {"version": 0, "weights": {}},
            "variants": variants,
        }


def requests_of(snapshots: Any) -> dict[str, int]:
    """Each variant's cumulative requests over one snapshot or a list of them (several routers)."""
    parts = snapshots if isinstance(snapshots, list) else [snapshots]
    out: dict[str, int] = {}
    for snap in parts:
        for name, v in ((snap or {}).get("variants") or {}).items():
            if isinstance(v, dict) and isinstance(v.get("requests"), int):
                out[name] = out.get(name, 0) + v["requests"]
    return out
