"""The judge's output: a JSON-serialisable verdict."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

VERDICT_FORMAT = "bakeoff.verdict/v1"

# Metric states
WORSE, BETTER, NON_INFERIOR, UNKNOWN = "worse", "better", "non_inferior", "unknown"
# Decision actions
CONTINUE, ROLLBACK, PROMOTE, STOP = "continue", "rollback", "promote", "stop"


def _clean(x: Any) -> Any:
    """JSON has no NaN/Infinity: non-finite floats become null."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


@dataclass
class MetricVerdict:
    metric: str
    role: str  # guardrail | objective
    kind: str
    state: str = UNKNOWN
    control: float = math.nan  # control's value (rate, mean, or quantile in seconds)
    candidate: float = math.nan
    estimate: float = math.nan  # difference (error_rate, proportion, mean) or relative change (latency)
    ci: tuple[float, float] = (math.nan, math.nan)  # anytime-valid, at the per-test level
    scale: str = "difference"  # difference | ratio
    relative_estimate: float = math.nan
    tolerance: float = 0.0
    tolerance_relative: bool = False
    harm: str = "increase"
    # Always-valid p-values, Bonferroni-adjusted for the family (compare with alpha).
    p_value: float = 1.0  # H0: no change (two-sided)
    p_worse: float = 1.0  # H0: within tolerance (rejecting it rolls back)
    p_non_inferior: float = 1.0  # H0: worse than tolerated
    p_better: float = 1.0  # H0: not better than control
    route: str | None = None  # None: the whole service (stratified by route when routes are reported)
    alpha_weight: float = 1.0


@dataclass
class VariantVerdict:
    name: str
    requests: int = 0
    eligible: bool = False
    status: str = "waiting"  # waiting | judging | rolled_back | out | winner
    reason: str = ""
    metrics: dict[str, MetricVerdict] = field(default_factory=dict)
    # Guardrails shown worse than tolerated, e.g. "checkout latency_p99 +31%": a caller
    # that knows the variant's commit appends it.
    regressions: list[str] = field(default_factory=list)


@dataclass
class Decision:
    action: str = CONTINUE
    rollback: list[str] = field(default_factory=list)
    winner: str | None = None
    reason: str = ""


@dataclass
class Verdict:
    at: float
    look: int
    control: str
    alpha: float
    tests_in_family: int
    decision: Decision
    variants: dict[str, VariantVerdict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["format"] = VERDICT_FORMAT
        return _clean(d)

    def dumps(self, **kw) -> str:
        return json.dumps(self.to_json(), allow_nan=False, **kw)
