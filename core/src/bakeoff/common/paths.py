"""Where bakeoff's own files are, in a checkout and in an installed wheel alike."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path


def examples_dir() -> Path:
    """The example services (``examples/`` in the repository).

    The wheel ships them as the package data of ``bakeoff.examples``, so
    ``bakeoff demo`` works from any directory after ``pip install``;
    ``$BAKEOFF_EXAMPLES`` points somewhere else (a site's own copy).
    """
    override = os.environ.get("BAKEOFF_EXAMPLES")
    if override:
        return Path(override)
    return Path(str(resources.files("bakeoff.examples"))).resolve()
