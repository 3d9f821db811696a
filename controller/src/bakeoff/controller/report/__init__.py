"""The end-of-run report: ``report.json``, ``report.md`` and a self-contained ``report.html``.

One job a module: ``model`` builds the report's data from a run (and says
in which units each figure is shown), ``markdown`` and ``html`` render it,
``svg`` draws the page's charts (the latency distribution of every variant
from the router's histogram, and every metric's estimate with its
confidence sequence over time), ``files`` writes and re-renders the files.
"""

from bakeoff.controller.report.files import rerender, write_reports
from bakeoff.controller.report.html import html_page
from bakeoff.controller.report.markdown import markdown
from bakeoff.controller.report.model import ReportError, build, change_in_units, format_change, format_in_units

__all__ = [
    "ReportError", "build", "change_in_units", "format_change", "format_in_units", "html_page", "markdown",
    "rerender", "write_reports",
]  # fmt: skip
