"""``bakeoff submit``, ``bakeoff status`` and ``bakeoff revert``: the commands a
developer or a pipeline runs against a cluster (docs/cli-cluster.md).

- ``submit`` enters a build into a Bakeoff by creating a Variant;
- ``status`` shows the Bakeoffs of a namespace, or one Bakeoff with its
  Variants, their shares and the judge's verdicts (from resource status);
- ``revert`` puts the mainline Deployment's pod template from before a
  promotion back (the ``bakeoff.dev/previous-template`` annotation).

Exit status: 0 done, 1 the cluster said no or could not be reached, 2 a bad
command line or kubeconfig (nothing was sent); a failure is one line on stderr,
``bakeoff: error: ...``, as for every command (bakeoff.cli.errors).

One module per job: common.py (the API client, the Bakeoff lookup, the error
path), submit.py, status.py with render.py (the report and its plain and rich
rendering), revert.py.
"""

from bakeoff.cli.cluster.common import CommandError, UsageError, get_bakeoff, now_rfc3339
from bakeoff.cli.cluster.render import Report, Table, bakeoff_report, list_report, render_plain, render_rich
from bakeoff.cli.cluster.revert import RevertResult, add_revert_arguments, image_changes, revert, revert_mainline
from bakeoff.cli.cluster.status import add_status_arguments, collect, list_bakeoffs, list_variants, status
from bakeoff.cli.cluster.submit import (
    OBJECT_NAME_RE,
    accepted_condition,
    add_submit_arguments,
    build_variant,
    build_variants,
    default_variant_name,
    image_tag,
    make_name,
    submit,
    submit_variant,
    wait_accepted,
)

__all__ = [
    "OBJECT_NAME_RE",
    "CommandError",
    "Report",
    "RevertResult",
    "Table",
    "UsageError",
    "accepted_condition",
    "add_revert_arguments",
    "add_status_arguments",
    "add_submit_arguments",
    "bakeoff_report",
    "build_variant",
    "build_variants",
    "collect",
    "default_variant_name",
    "get_bakeoff",
    "image_changes",
    "image_tag",
    "list_bakeoffs",
    "list_report",
    "list_variants",
    "make_name",
    "now_rfc3339",
    "render_plain",
    "render_rich",
    "revert",
    "revert_mainline",
    "status",
    "submit",
    "submit_variant",
    "wait_accepted",
]
