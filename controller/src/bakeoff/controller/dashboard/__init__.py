"""The live web dashboard: ``bakeoff run --ui`` (one local run) and ``bakeoff dashboard`` (a cluster).

One aiohttp server bound to 127.0.0.1 (``server``) renders the report's jinja2 components
(bakeoff.controller.report.templates) from a *source* of bake-offs: ``local.RunSource``
(the running Runner in the same process; approve and abort through the state directory,
as ``bakeoff approve|abort`` do) or ``cluster.ClusterSource`` (Bakeoffs and Variants read
with the user's own kubeconfig; approve and abort as the user, so RBAC applies).  A page
gets its updates by server-sent events: the server renders the page's fragment twice a
second and sends it when it changed.  Charts are server-side SVG (no script library).
"""

from bakeoff.controller.dashboard.server import Dashboard, DashboardError, Source, SourceError

__all__ = ["Dashboard", "DashboardError", "Source", "SourceError"]
