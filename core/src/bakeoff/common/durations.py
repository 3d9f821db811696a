"""One duration grammar for every file bakeoff reads.

A duration is a positive number of seconds, or a string of one or more
``<number><unit>`` parts with units h, m, s, ms, in that order (``90s``,
``1m30s``, ``500ms``, ``2h``, ``1.5s``); a bare number string means seconds.
The router's timeouts, a Bakeoff's ``stepInterval`` and ``maxDuration`` and
the judge's ``interval`` all read through :func:`parse_duration`.
"""

from __future__ import annotations

import math
import re
from typing import Any

_PART_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$")
_UNIT_SECONDS = (3600.0, 60.0, 1.0, 0.001)
HINT = "a duration like 500ms, 90s, 30m, 2h, 1m30s or a number of seconds"


class DurationError(ValueError):
    """Not a duration; the message names the field."""


def parse_duration(value: Any, where: str, *, maximum: float | None = None) -> float:
    """Seconds in ``value``; raises :class:`DurationError` naming ``where``."""
    seconds: float | None = None
    if isinstance(value, bool):
        seconds = None
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            m = _PART_RE.match(text)
            if m and any(m.groups()):
                seconds = sum(float(g) * unit for g, unit in zip(m.groups(), _UNIT_SECONDS) if g)
    if seconds is None or not math.isfinite(seconds):
        raise DurationError(f"{where} must be {HINT}, got {value!r}")
    if seconds <= 0:
        raise DurationError(f"{where} must be a positive duration, got {value!r}")
    if maximum is not None and seconds > maximum:
        raise DurationError(f"{where} must be at most {maximum:g}s, got {value!r}")
    return seconds
