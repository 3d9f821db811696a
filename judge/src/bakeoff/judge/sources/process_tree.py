"""Resource cost of local variants: each variant's whole process tree, with psutil.

``bakeoff run`` starts every variant as a command in its own process group; the
command may be a shell, a launcher or a pre-forking server, so the variant is
the process it started *and every descendant*.  A sample adds the user and
system CPU seconds and the resident set size of each process in the tree.

CPU seconds of a descendant that has exited are gone from the sum (unless its
parent waited for it, which moves them into the parent's ``children_*`` times,
counted too), so the cumulative figure can go down; the meter
(:class:`bakeoff.judge.sources.resources.ResourceMeter`) then starts a new
batch instead of counting a negative increment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping

import psutil

from bakeoff.judge.sources.resources import ResourceSample


def tree_sample(pid: int) -> ResourceSample | None:
    """CPU seconds and resident bytes of ``pid`` and all its descendants (None once it is gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    cpu = mem = 0.0
    for p in procs:
        try:
            with p.oneshot():
                t = p.cpu_times()
                cpu += t.user + t.system + t.children_user + t.children_system
                mem += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return ResourceSample(cpu, mem)


class ProcessTreeSource:
    """Samples the process trees of the variants ``pids()`` names (variant -> root pid)."""

    def __init__(self, pids: Callable[[], Mapping[str, int]]) -> None:
        self.pids = pids
        self.description = "process trees (psutil)"

    def sample_now(self, variants: Collection[str] | None = None) -> dict[str, ResourceSample]:
        out = {}
        for name, pid in self.pids().items():
            if variants is not None and name not in variants:
                continue
            s = tree_sample(pid)
            if s is not None:
                out[name] = s
        return out

    async def sample(self, variants: Collection[str]) -> dict[str, ResourceSample]:
        return await asyncio.to_thread(self.sample_now, variants)

    async def close(self) -> None:
        """Nothing to release."""
