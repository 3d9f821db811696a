"""Reading a YAML file for any part, with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_yaml_documents(path: str | Path, error: type[Exception]) -> list[Any]:
    """Every document in the file; ``error`` (naming the file) when it cannot be read or parsed."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise error(f"{p}: cannot read: {e.strerror or e}") from None
    try:
        return list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        raise error(f"{p}: not valid YAML: {e}") from None
