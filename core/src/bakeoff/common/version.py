"""bakeoff's version, as installed: pyproject.toml is its one source."""

from importlib import metadata

try:
    VERSION = metadata.version("bakeoff")
except metadata.PackageNotFoundError:  # imported from a checkout that was never installed
    VERSION = "0+unknown"
