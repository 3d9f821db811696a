"""The judge's configuration: the ``spec.judge`` part of a Bakeoff resource.

Validated up front with errors that name the file and the field, e.g.
``judge.yaml: guardrails[1].maxIncreaseRatio must be a non-negative number``.
A whole Bakeoff document (``apiVersion: bakeoff.dev/v1alpha1``, ``kind:
Bakeoff``) is accepted too; its ``spec.judge`` is used.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bakeoff.common.durations import DurationError
from bakeoff.common.durations import parse_duration as _parse_duration
from bakeoff.common.yamlfile import read_yaml_documents
from bakeoff.contracts import schema
from bakeoff.contracts.resources import API_VERSION

# Default standardised effect sizes (see judge.sequential): the effect, in
# per-request standard deviations, each kind of test is tuned to find fastest.
DEFAULT_EFFECT_SIZE = {
    "error_rate": 0.05,
    "latency": 0.1,
    "proportion": 0.05,
    "mean": 0.05,
    # Resource cost is judged on batches of looks (a few per minute, not one per request):
    # tuned to a change of half a batch's standard deviation.
    "cpu_per_request": 0.5,
    "memory": 0.5,
}
# The resource kinds (bakeoff.judge.sources.resources): each is its own built-in metric name.
RESOURCE_KINDS = ("cpu_per_request", "memory")

_LATENCY_RE = re.compile(r"^latency_p(\d{1,2}(?:\.\d+)?)$")
# A metric's name and limits, as the CRD has them (bakeoff.contracts.schema.Guardrail).
_METRIC_NAME_RE = re.compile(schema.constraint(schema.Guardrail, "metric", "pattern"))
_MAX_EFFECT_SIZE = schema.constraint(schema.Guardrail, "effect_size", "le")
_MAX_ALPHA_WEIGHT = schema.constraint(schema.Guardrail, "alpha_weight", "le")


class JudgeConfigError(ValueError):
    pass


@dataclass(frozen=True)
class MetricSpec:
    """One judged metric.

    ``harm`` is +1 when an increase is bad (errors, latency, a cost) and -1
    when a decrease is bad (conversion, revenue).  ``tolerance`` is the change
    in the harmful direction that is still acceptable: absolute (``relative``
    False, in the metric's units) or relative (a fraction of the control).
    """

    name: str
    kind: str  # error_rate | latency | proportion | mean | cpu_per_request | memory
    role: str  # guardrail | objective
    harm: int = 1
    tolerance: float = 0.0
    relative: bool = False
    quantile: float | None = None
    per: str = "request"  # for business metrics: denominator = requests or reported values
    effect_size: float = 0.05
    alpha_weight: float = 1.0  # share of the candidate's alpha (weighted Bonferroni), before normalising

    @property
    def label(self) -> str:
        return self.name

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "role": self.role,
            "harm": "increase" if self.harm > 0 else "decrease",
            "tolerance": self.tolerance,
            "relative": self.relative,
            "quantile": self.quantile,
            "alpha_weight": self.alpha_weight,
        }


@dataclass(frozen=True)
class JudgeConfig:
    control: str = "mainline"
    alpha: float = schema.default(schema.Judge, "alpha")
    min_samples: int = schema.default(schema.Judge, "min_samples")
    max_samples: int | None = None
    max_duration: float | None = None  # seconds
    warmup: float = 0.0  # seconds of each candidate's traffic left unjudged, from its first requests
    guardrails: tuple[MetricSpec, ...] = ()
    objective: MetricSpec | None = None
    candidates: int | None = None  # number of candidates alpha is split over (default: as seen)
    # Set by a caller that knows a round's entrants (the cluster controller), never by a file:
    # only these candidates are judged (None: every variant in the snapshots) ...
    entrants: tuple[str, ...] | None = field(default=None, compare=False)
    # ... and the first look only takes the routers' cumulative counters as the baseline (long-lived
    # routers carry earlier rounds' requests), instead of counting them.
    baseline_first_look: bool = field(default=False, compare=False)
    origin: str = field(default="judge config", compare=False)

    @property
    def metrics(self) -> tuple[MetricSpec, ...]:
        return self.guardrails + ((self.objective,) if self.objective else ())


def parse_duration(value: Any, where: str) -> float:
    """The shared duration grammar (bakeoff.common.durations), as a judge config error."""
    try:
        return _parse_duration(value, where)
    except DurationError as e:
        raise JudgeConfigError(str(e)) from None


def _num(d: dict, key: str, where: str, *, minimum: float | None = None, positive=False, maximum=None):
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise JudgeConfigError(
            f"{where}.{key} must be a number"
            if minimum is None and not positive
            else f"{where}.{key} must be a {'positive' if positive else 'non-negative'} number"
        )
    if positive and v <= 0:
        raise JudgeConfigError(f"{where}.{key} must be a positive number")
    if minimum is not None and v < minimum:
        raise JudgeConfigError(f"{where}.{key} must be a non-negative number")
    if maximum is not None and v > maximum:
        raise JudgeConfigError(f"{where}.{key} must be at most {maximum}")
    return float(v)


def _int(d: dict, key: str, where: str, minimum: int) -> int:
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise JudgeConfigError(f"{where}.{key} must be an integer >= {minimum}")
    return v


def _kind_of(name: str, declared: Any, where: str) -> tuple[str, float | None]:
    if name == "error_rate":
        if declared not in (None, "error_rate", "proportion"):
            raise JudgeConfigError(f"{where}.kind must be omitted for error_rate")
        return "error_rate", None
    if name in RESOURCE_KINDS:
        if declared not in (None, name):
            raise JudgeConfigError(f"{where}.kind must be omitted for {name}")
        return name, None
    m = _LATENCY_RE.match(name)
    if m:
        q = float(m.group(1)) / 100.0
        if not 0.0 < q < 1.0:
            raise JudgeConfigError(f"{where}.metric {name!r}: quantile must be between p0 and p100")
        if declared not in (None, "latency"):
            raise JudgeConfigError(f"{where}.kind must be omitted for {name}")
        return "latency", q
    if name.startswith("latency"):
        hint = _builtin_hint(name)
        raise JudgeConfigError(
            f"{where}.metric {name!r}: latency metrics are named latency_pNN, e.g. latency_p99"
            + (f"; did you mean {hint!r}?" if hint else "")
        )
    if declared is None:
        # A business metric is whatever the service reports, so a misspelt built-in
        # ("p95_latency", "error-rate") would silently become one that never gets data.
        # Declaring the kind is what makes a name a business metric.
        hint = _builtin_hint(name)
        raise JudgeConfigError(
            f"{where}.metric {name!r} is not a built-in metric (error_rate, latency_pNN such as latency_p99,"
            " cpu_per_request, memory)"
            + (f"; did you mean {hint!r}?" if hint else "")
            + f" A business metric reported by the service needs {where.rsplit(': ', 1)[-1]}.kind: proportion or mean"
        )
    if declared not in ("proportion", "mean"):
        raise JudgeConfigError(f"{where}.kind must be 'proportion' or 'mean'")
    return declared, None


def _builtin_hint(name: str) -> str | None:
    """The built-in metric a misspelt name most likely meant, if any."""
    import difflib

    low = name.lower()
    close = difflib.get_close_matches(low.replace("-", "_"), ["error_rate"], n=1, cutoff=0.75)
    if close:
        return close[0]
    digits = re.findall(r"\d{1,2}(?:\.\d+)?", low)
    if ("lat" in low or re.search(r"(^|[^a-z])p\d", low)) and digits:
        return f"latency_p{digits[0]}"
    if "err" in low:
        return "error_rate"
    return None


_TOLERANCE_KEYS = {
    "maxIncrease": (1, False),
    "maxIncreaseRatio": (1, True),
    "maxDecrease": (-1, False),
    "maxDecreaseRatio": (-1, True),
}


def _metric(raw: Any, where: str, role: str) -> MetricSpec:
    if not isinstance(raw, dict):
        raise JudgeConfigError(f"{where} must be a mapping")
    allowed = _METRIC_KEYS
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise JudgeConfigError(f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    name = raw.get("metric")
    if not isinstance(name, str) or not _METRIC_NAME_RE.match(name):
        raise JudgeConfigError(f"{where}.metric must be a metric name such as error_rate, latency_p99 or conversion")
    kind, quantile = _kind_of(name, raw.get("kind"), where)
    per = raw.get("per", "request")
    if per not in ("request", "value"):
        raise JudgeConfigError(f"{where}.per must be 'request' or 'value'")
    if kind in RESOURCE_KINDS:
        if "per" in raw:
            raise JudgeConfigError(f"{where}.per must be omitted for {name} (it is judged per batch of looks)")
        per = "value"
    elif per == "value" and kind != "mean":
        raise JudgeConfigError(f"{where}.per: 'value' applies only to kind: mean")

    effect = DEFAULT_EFFECT_SIZE[kind]
    if "effectSize" in raw:
        effect = _num(raw, "effectSize", where, positive=True, maximum=_MAX_EFFECT_SIZE)
    tol_keys = [k for k in _TOLERANCE_KEYS if k in raw]
    weight = 1.0
    if "alphaWeight" in raw:
        weight = _num(raw, "alphaWeight", where, positive=True, maximum=_MAX_ALPHA_WEIGHT)
    if role == "guardrail":
        if "direction" in raw:
            raise JudgeConfigError(
                f"{where}.direction belongs to the objective; guardrails use maxIncrease/maxDecrease[Ratio]"
            )
        if len(tol_keys) != 1:
            raise JudgeConfigError(
                f"{where} needs exactly one of maxIncrease, maxIncreaseRatio, maxDecrease, maxDecreaseRatio"
            )
        key = tol_keys[0]
        harm, relative = _TOLERANCE_KEYS[key]
        tol = _num(raw, key, where, minimum=0.0)
        if relative and harm < 0 and tol >= 1:
            raise JudgeConfigError(f"{where}.{key} must be below 1")
        if kind in ("error_rate", "latency", *RESOURCE_KINDS) and harm < 0:
            raise JudgeConfigError(
                f"{where}.{key}: {name} is guarded against increases; use maxIncrease or maxIncreaseRatio"
            )
        if kind == "latency" and not relative:
            raise JudgeConfigError(f"{where}.maxIncrease: latency tolerances are relative; use maxIncreaseRatio")
        if kind == "latency" and tol > 1.0:
            raise JudgeConfigError(f"{where}.{key} must be at most 1 (a 100% rise)")
        if kind == "error_rate" and not relative and tol >= 1:
            raise JudgeConfigError(f"{where}.{key} is a fraction of requests and must be below 1")
        return MetricSpec(name, kind, role, harm, tol, relative, quantile, per, effect, weight)
    # objective
    if tol_keys:
        raise JudgeConfigError(f"{where}.{tol_keys[0]}: the objective has a direction, not a tolerance")
    direction = raw.get("direction")
    if direction is None and kind in ("error_rate", "latency", *RESOURCE_KINDS):
        direction = "lower"
    if direction not in ("higher", "lower"):
        raise JudgeConfigError(f"{where}.direction must be 'higher' or 'lower'")
    harm = -1 if direction == "higher" else 1
    return MetricSpec(name, kind, role, harm, 0.0, False, quantile, per, effect, weight)


# The fields of spec.judge and of one metric in it: the models of bakeoff.contracts.schema (the CRD's source).
_JUDGE_KEYS = schema.Judge.keys()
_METRIC_KEYS = schema.Guardrail.keys() | schema.Objective.keys()
assert set(_TOLERANCE_KEYS) <= _METRIC_KEYS


def config_from_dict(raw: Any, origin: str = "judge config") -> JudgeConfig:
    """Validate a ``spec.judge`` mapping (or a whole Bakeoff document)."""
    if isinstance(raw, dict) and raw.get("kind") == "Bakeoff":
        if raw.get("apiVersion") != API_VERSION:
            raise JudgeConfigError(f"{origin}: apiVersion must be {API_VERSION!r}, got {raw.get('apiVersion')!r}")
        spec = raw.get("spec")
        if not isinstance(spec, dict) or "judge" not in spec:
            raise JudgeConfigError(f"{origin}: spec.judge is missing")
        raw = spec["judge"]
        prefix = "spec.judge."
        mainline = spec.get("mainline")
        mname = mainline.get("name", "mainline") if isinstance(mainline, dict) else "mainline"
        if isinstance(raw, dict):
            # The control of a bake-off is its mainline: spec.mainline.name (default "mainline").
            if "control" in raw and raw["control"] != mname:
                raise JudgeConfigError(
                    f"{origin}: spec.judge.control must be the mainline's name {mname!r} (or omitted),"
                    f" got {raw['control']!r}"
                )
            raw = {**raw, "control": mname}
    else:
        prefix = ""
    if not isinstance(raw, dict):
        raise JudgeConfigError(f"{origin}: {prefix or 'the judge config '}must be a mapping")
    unknown = sorted(set(raw) - _JUDGE_KEYS)
    if unknown:
        raise JudgeConfigError(
            f"{origin}: {prefix}{unknown[0]} is not a judge field (allowed: {', '.join(sorted(_JUDGE_KEYS))})"
        )
    p = f"{origin}: {prefix}".rstrip(".")

    def f(key: str) -> str:
        return f"{origin}: {prefix}{key}"

    alpha = JudgeConfig.alpha
    if "alpha" in raw:
        a = raw["alpha"]
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 < a < 1:
            raise JudgeConfigError(f"{f('alpha')} must be a number between 0 and 1")
        alpha = float(a)
    control = raw.get("control", "mainline")
    if not isinstance(control, str) or not control:
        raise JudgeConfigError(f"{f('control')} must be the name of the control variant")
    min_samples = JudgeConfig.min_samples
    if "minSamples" in raw:
        v = raw["minSamples"]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise JudgeConfigError(f"{f('minSamples')} must be a positive integer")
        min_samples = v
    max_samples = None
    if "maxSamples" in raw and raw["maxSamples"] is not None:
        v = raw["maxSamples"]
        if isinstance(v, bool) or not isinstance(v, int) or v < min_samples:
            raise JudgeConfigError(f"{f('maxSamples')} must be an integer >= minSamples ({min_samples})")
        max_samples = v
    max_duration = None
    if "maxDuration" in raw and raw["maxDuration"] is not None:
        max_duration = parse_duration(raw["maxDuration"], f("maxDuration"))
    warmup = 0.0
    if "warmup" in raw and raw["warmup"] is not None:
        warmup = parse_duration(raw["warmup"], f("warmup"))
    candidates = None
    if "candidates" in raw and raw["candidates"] is not None:
        v = raw["candidates"]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise JudgeConfigError(f"{f('candidates')} must be a positive integer")
        candidates = v
    guard_raw = raw.get("guardrails", [])
    if guard_raw is None:
        guard_raw = []
    if not isinstance(guard_raw, list):
        raise JudgeConfigError(f"{f('guardrails')} must be a list")
    guardrails = tuple(_metric(g, f(f"guardrails[{i}]"), "guardrail") for i, g in enumerate(guard_raw))
    names = [g.name for g in guardrails]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise JudgeConfigError(f"{f(f'guardrails[{i}]')}.metric {n!r} is listed twice")
    objective = None
    if raw.get("objective") is not None:
        objective = _metric(raw["objective"], f("objective"), "objective")
    if not guardrails and objective is None:
        raise JudgeConfigError(f"{p}: needs at least one guardrail or an objective")
    del p
    return JudgeConfig(
        control=control,
        alpha=alpha,
        min_samples=min_samples,
        max_samples=max_samples,
        max_duration=max_duration,
        warmup=warmup,
        guardrails=guardrails,
        objective=objective,
        candidates=candidates,
        origin=origin,
    )


def load_config(path: str | Path) -> JudgeConfig:
    path = Path(path)
    docs = [d for d in read_yaml_documents(path, JudgeConfigError) if d is not None]
    if not docs:
        raise JudgeConfigError(f"{path.name}: empty")
    bakeoffs = [d for d in docs if isinstance(d, dict) and d.get("kind") == "Bakeoff"]
    if bakeoffs:
        if len(bakeoffs) > 1:
            raise JudgeConfigError(f"{path.name}: holds {len(bakeoffs)} Bakeoff documents; give one")
        return config_from_dict(bakeoffs[0], path.name)
    if len(docs) > 1:
        raise JudgeConfigError(f"{path.name}: expected one judge config document, found {len(docs)}")
    return config_from_dict(docs[0], path.name)
