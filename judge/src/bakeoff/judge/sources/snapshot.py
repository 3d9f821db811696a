"""Router snapshots: ``GET /-/snapshot`` of one or many replicas, or files."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from bakeoff.contracts.snapshot import SnapshotError, merge_snapshots, validate
from bakeoff.judge.sources import SourceError
from bakeoff.judge.sources.http import get_json


class SnapshotSource:
    """Fetches every location and merges them (replicas add up)."""

    def __init__(self, locations: list[str], *, timeout: float = 10.0):
        self.locations = list(locations)
        self.timeout = timeout
        self.description = ", ".join(self.locations)

    async def _one(self, loc: str) -> dict[str, Any]:
        if loc.startswith(("http://", "https://")):
            return await get_json(loc, self.timeout)
        path = Path(loc[len("file://") :] if loc.startswith("file://") else loc)
        try:
            return json.loads(path.read_text())
        except OSError as e:
            raise SourceError(f"{loc}: cannot read: {e.strerror or e}") from None
        except json.JSONDecodeError as e:
            raise SourceError(f"{loc}: not JSON: {e}") from None

    async def fetch(self) -> dict[str, Any]:
        snaps = await asyncio.gather(*(self._one(loc) for loc in self.locations))
        try:
            if len(snaps) == 1:
                return validate(snaps[0], self.locations[0])
            return merge_snapshots(snaps)
        except SnapshotError as e:
            raise SourceError(str(e)) from None

    async def fetch_each(self) -> list[dict[str, Any]]:
        """Each location's snapshot, validated, unmerged (one baseline per router in the judge).

        A location that cannot be read is left out (the judge skips that router for
        this look); only when none can be read is it an error."""
        results = await asyncio.gather(*(self._one(loc) for loc in self.locations), return_exceptions=True)
        out, errors = [], []
        for loc, r in zip(self.locations, results):
            if isinstance(r, SourceError):
                errors.append(str(r))
                continue
            if isinstance(r, BaseException):
                raise r
            try:
                out.append(validate(r, loc))
            except SnapshotError as e:
                errors.append(str(e))
        if not out:
            raise SourceError("; ".join(errors))
        return out

    async def close(self) -> None:
        """Nothing to release: every request opens and closes its own connection."""
