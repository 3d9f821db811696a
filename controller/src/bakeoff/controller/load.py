"""Load a local run drives through its router, as the Bakeoff's ``spec.load`` describes it.

- ``requests``: the built-in generator.  ``users`` concurrent users each
  send one request after another, picked at random by ``weight``, with an
  exponential pause of mean ``think`` between them.  Each user carries a user
  id in the stickiness header (``X-User-Id`` unless the Bakeoff names
  another) and takes a new id every ``bakeoff.load.sessions.SESSION_REQUESTS``
  requests, so new sticky keys keep arriving as on a real service.
- ``locustfile``: the user's own locust file, run headless by locust in a
  child process (its output in ``<state dir>/logs/locust.log``) until the
  run ends.
- ``shoppers``: the example shop's simulated shoppers (the built-in generator).

The generators themselves are in :mod:`bakeoff.load`, below the controller.
"""

from __future__ import annotations

from pathlib import Path

from bakeoff.controller.resources import LoadSpec
from bakeoff.load import Load
from bakeoff.load.locustload import LocustLoad
from bakeoff.load.sessions import request_mix
from bakeoff.load.shoppers import shoppers


def load_of(spec: LoadSpec, *, base_dir: Path, log_dir: Path | None = None) -> Load:
    """The load ``spec`` describes; relative paths in it are relative to ``base_dir``."""
    if spec.locustfile:
        log_path = log_dir / "locust.log" if log_dir is not None else None
        return LocustLoad(base_dir / spec.locustfile, spec.users, spec.think, log_path=log_path)
    if spec.shoppers:
        return shoppers(spec.users, spec.think)
    return request_mix(spec.requests, spec.users, spec.think)
