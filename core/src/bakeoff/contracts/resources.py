"""Names shared by everything that reads or writes Bakeoff and Variant resources.

The CRDs (charts/bakeoff/crds), the controller, the router's cluster mode, the
judge's config reader and the cluster commands all agree on these strings; a
rename happens here and nowhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GROUP = "bakeoff.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
BAKEOFF_PLURAL = "bakeoffs"
VARIANT_PLURAL = "variants"

# Labels the controller puts on what it creates, and that routers select on.
LABEL_BAKEOFF = f"{GROUP}/bakeoff"
LABEL_VARIANT = f"{GROUP}/variant"
LABEL_ROUTER_FOR = f"{GROUP}/router-for"

FINALIZER = f"{GROUP}/cleanup"

# Annotations: the promotion record on the mainline Deployment, a user's
# approval and revert, and the spec a running Variant started with.
ANN_PREVIOUS_TEMPLATE = f"{GROUP}/previous-template"
ANN_PROMOTION = f"{GROUP}/promotion"
ANN_REVERTED = f"{GROUP}/reverted"
ANN_APPROVED = f"{GROUP}/approved"
ANN_VARIANT_SPEC = f"{GROUP}/spec-hash"

# Variant.status.phase, in the order a variant can pass through them.
VARIANT_PHASES = ("Pending", "Gated", "Serving", "Winner", "Promoted", "RolledBack", "Lost")
# Bakeoff.status.phase values after which nothing more happens.
FINISHED_BAKEOFF_PHASES = ("Promoted", "Stopped")

# Field grammars every reader of a resource or a router config applies (the CRDs' patterns are
# generated from the same strings, bakeoff.contracts.schema).
# A variant's, route's or mainline's name: a DNS-label-like name that may also hold '_' and '.'.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$"
NAME_RE = re.compile(NAME_PATTERN)
# An HTTP header (or cookie) name: an RFC 9110 token.
HEADER_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
HEADER_RE = re.compile(HEADER_PATTERN)
# The header that keeps a user on one variant when a Bakeoff says nothing about stickiness.
DEFAULT_STICKY_HEADER = "X-User-Id"


@dataclass(frozen=True)
class Route:
    """A named group of request paths the router counts separately (``match``: a glob on the path).

    ``spec.routing.routes[i]`` of a Bakeoff and ``routes[i]`` of a router config.
    """

    name: str
    match: str
