"""Resource cost in a cluster: cAdvisor's container series, through Prometheus.

The kubelet's cAdvisor exports, per container, ``container_cpu_usage_seconds_total``
(cumulative CPU seconds) and ``container_memory_working_set_bytes`` (the working set,
what the kernel would not reclaim: the figure the OOM killer and ``kubectl top`` use),
labelled ``namespace``, ``pod`` and ``container``.  A variant's figure is the sum over
its pods' containers, found by the pod names of its Deployment.  The default queries
(documented in docs/judge.md#resource-cost) are templates; ``spec.judge.resources``
overrides them, e.g. to select by the pods' ``bakeoff.dev/variant`` label where
Prometheus joins pod labels in (``kube_pod_labels`` of kube-state-metrics)::

    $namespace  the Bakeoff's namespace
    $bakeoff    its name
    $variant    the variant's name
    $pods       a regular expression matching the variant's pod names

Each query must give the variant's total (one series, or several that are added up);
a variant with no series yet is left out of that look.  The queries of one look are
evaluated at the same instant.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Mapping
from string import Template

from bakeoff.judge.sources import SourceError
from bakeoff.judge.sources.prometheus import PrometheusSource
from bakeoff.judge.sources.resources import ResourceSample

_CONTAINERS = 'namespace="$namespace", pod=~"$pods", container!="", container!="POD"'
DEFAULT_CPU_QUERY = f"sum(container_cpu_usage_seconds_total{{{_CONTAINERS}}})"
DEFAULT_MEMORY_QUERY = f"sum(container_memory_working_set_bytes{{{_CONTAINERS}}})"


def check_query(query: str, where: str) -> str:
    """A query template whose placeholders are all known (else ValueError naming ``where``)."""
    try:
        Template(query).substitute(namespace="", bakeoff="", variant="", pods="")
    except (KeyError, ValueError) as e:
        raise ValueError(
            f"{where}: unknown or malformed placeholder {e} (known: $namespace, $bakeoff, $variant, $pods)"
        ) from None
    return query


class CadvisorSource:
    """``targets``: per variant, the values of the placeholders (``$variant``, ``$pods``, ...)."""

    def __init__(
        self,
        location: str,
        targets: Mapping[str, Mapping[str, str]],
        *,
        cpu_query: str | None = None,
        memory_query: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.prometheus = PrometheusSource.from_location(location, timeout=timeout)
        self.targets = {k: dict(v) for k, v in targets.items()}
        self.cpu_query = Template(cpu_query or DEFAULT_CPU_QUERY)
        self.memory_query = Template(memory_query or DEFAULT_MEMORY_QUERY)
        self.description = f"cAdvisor series via {self.prometheus.description}"

    def queries(self, variant: str) -> tuple[str, str]:
        subs = {"variant": variant, **self.targets[variant]}
        return self.cpu_query.substitute(subs), self.memory_query.substitute(subs)

    async def sample(self, variants: Collection[str]) -> dict[str, ResourceSample]:
        names = [v for v in variants if v in self.targets]
        at = time.time()
        qs = [q for v in names for q in self.queries(v)]
        results = await asyncio.gather(*(self.prometheus.query(q, at) for q in qs))
        out = {}
        for i, v in enumerate(names):
            cpu, mem = results[2 * i], results[2 * i + 1]
            if not cpu or not mem:
                continue
            try:
                out[v] = ResourceSample(sum(float(r["value"][1]) for r in cpu), sum(float(r["value"][1]) for r in mem))
            except (KeyError, IndexError, TypeError, ValueError) as e:
                raise SourceError(f"{self.description}: unexpected result for {v}: {e}") from None
        return out

    async def close(self) -> None:
        await self.prometheus.close()
