"""Names shared by everything that reads or writes Bakeoff and Variant resources.

The CRDs (charts/bakeoff/crds), the controller, the router's cluster mode, the
judge's config reader and the cluster commands all agree on these strings; a
rename happens here and nowhere else.
"""

from __future__ import annotations

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
