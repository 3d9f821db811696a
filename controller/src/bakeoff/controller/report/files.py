"""Writing the report files (report.json, report.md, report.html) and re-rendering them from report.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bakeoff.controller.journal import write_atomic
from bakeoff.controller.report.html import html_page
from bakeoff.controller.report.markdown import markdown
from bakeoff.controller.report.model import ReportError, _finite, build


def write_reports(runner: Any, snap: dict[str, Any] | None) -> dict[str, Path]:
    rep = build(runner, snap)
    d = runner.journal.dir
    md = markdown(rep)
    paths = {"json": d / "report.json", "md": d / "report.md", "html": d / "report.html"}
    write_atomic(
        paths["json"],
        json.dumps(rep, indent=1, default=str, allow_nan=False)
        if _finite(rep)
        else json.dumps(rep, indent=1, default=str),
    )
    write_atomic(paths["md"], md)
    write_atomic(paths["html"], html_page(rep))
    return paths


def rerender(state_dir: Path) -> dict[str, Path]:
    """Write report.md and report.html again from a finished (or stopped) run's report.json."""
    src = Path(state_dir) / "report.json"
    try:
        rep = json.loads(src.read_text())
    except OSError as e:
        raise ReportError(f"{src}: cannot read ({e.strerror or e}); a run writes it when it decides or stops") from None
    except ValueError as e:
        raise ReportError(f"{src}: not JSON: {e}") from None
    if not isinstance(rep, dict) or rep.get("format") != "bakeoff.report/v1":
        raise ReportError(f"{src}: not a bakeoff report (format bakeoff.report/v1)")
    try:
        md = markdown(rep)
        page = html_page(rep)
    except (KeyError, TypeError) as e:
        raise ReportError(f"{src}: incomplete report ({e})") from None
    paths = {"json": src, "md": src.with_name("report.md"), "html": src.with_name("report.html")}
    write_atomic(paths["md"], md)
    write_atomic(paths["html"], page)
    return paths
