"""The durable record of a run, in its state directory.

- ``journal.jsonl``: one JSON object per decision or transition (admitted,
  ramped, rolled back, promoted, ...), appended and fsync'ed before the
  action is carried out, so a restarted run rebuilds its state from it and
  never repeats a promotion.
- ``judge-state.json``: the judge's memory (``JudgeState.to_json``), replaced
  atomically after every look.
- ``verdicts.jsonl``: a compact line per look (estimates and intervals), for
  the report's charts.
- ``status.json``: the current state (phases, shares, router addresses,
  process ids), replaced atomically on every change; for people and tests.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def read_records(path: Path) -> list[dict[str, Any]]:
    """The JSON records of a journal file, one per line, without touching it (for readers such as
    `bakeoff status` beside a running run); a torn line is skipped, a missing file is empty."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


class Journal:
    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "journal.jsonl"
        self.judge_path = self.dir / "judge-state.json"
        self.verdicts_path = self.dir / "verdicts.jsonl"
        self.status_path = self.dir / "status.json"
        self._seal_torn_line()
        self.seq = max([r.get("seq", 0) for r in self.read()] + [0])

    def _seal_torn_line(self) -> None:
        """A crash mid-append can leave a partial last line; end it so the next record starts clean."""
        try:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                last = f.read(1)
        except OSError:
            return
        if last != b"\n":
            with open(self.path, "a") as f:
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())

    def read(self) -> list[dict[str, Any]]:
        """Every complete record; a torn last line (a crash mid-write) is ignored."""
        return read_records(self.path)

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        self.seq += 1
        rec = {"seq": self.seq, "at": record.get("at") or time.time(), **{k: v for k, v in record.items() if k != "at"}}
        line = json.dumps(rec, sort_keys=False, default=str) + "\n"
        fresh = not self.path.exists()
        with open(self.path, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        if fresh:
            _fsync_dir(self.dir)
        return rec

    # judge memory
    def save_judge(self, state_json: dict[str, Any]) -> None:
        write_atomic(self.judge_path, json.dumps(state_json))

    def load_judge(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.judge_path.read_text())
        except (OSError, ValueError):
            return None

    # verdict history (not fsync'ed: losing the last lines only thins a chart)
    def append_verdict(self, compact: dict[str, Any]) -> None:
        with open(self.verdicts_path, "a") as f:
            f.write(json.dumps(compact, default=str) + "\n")

    def read_verdicts(self) -> list[dict[str, Any]]:
        if not self.verdicts_path.exists():
            return []
        out = []
        for line in self.verdicts_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def write_status(self, status: dict[str, Any]) -> None:
        write_atomic(self.status_path, json.dumps(status, indent=2, default=str))


def write_request(path: Path, data: dict[str, Any]) -> None:
    """An ``approve`` or ``abort`` file a running ``bakeoff run`` picks up: one JSON object with the
    OS user and the time (written by ``bakeoff approve|abort`` and the dashboard)."""
    import getpass
    import json
    import time

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({**data, "user": data.get("user") or user, "at": time.time()}) + "\n")
    tmp.replace(path)
