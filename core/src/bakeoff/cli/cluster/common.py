"""What the cluster commands share: the API client, the Bakeoff lookup, and the one error path.

A failure is a :class:`bakeoff.cli.errors.CommandError` (a bad command line:
:class:`UsageError`, exit 2; the cluster refused or could not be reached:
exit 1) and is printed as every ``bakeoff`` command prints one: a single line,
``bakeoff: error: ...`` (bakeoff.cli.errors).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bakeoff.cli.errors import EXIT_CONFIG, EXIT_FAILED, CommandError, error
from bakeoff.common import kube
from bakeoff.contracts.resources import GROUP, VERSION

__all__ = ["CommandError", "UsageError", "api_exception", "custom_api", "get_bakeoff", "now_rfc3339", "run_command"]


class UsageError(CommandError):
    """A bad command line: exit 2, nothing sent."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_CONFIG)


def api_exception():
    from kubernetes.client import ApiException

    return ApiException


def run_command(fn: Callable[[], int]) -> int:
    """Turn the failures every command shares into one line on stderr and an exit status."""
    import urllib3

    ApiException = api_exception()
    try:
        return fn()
    except CommandError as e:
        return error(str(e), e.code)
    except kube.KubeConfigError as e:
        return error(str(e), EXIT_CONFIG)
    except ApiException as e:
        return error(kube.api_error_message(e), EXIT_FAILED)
    except urllib3.exceptions.MaxRetryError as e:
        return error(f"cannot reach the API server: {e.reason or e}", EXIT_FAILED)
    except (urllib3.exceptions.HTTPError, OSError) as e:
        return error(f"cannot reach the API server: {e}", EXIT_FAILED)


def custom_api(cluster: kube.Cluster):
    from kubernetes import client

    return client.CustomObjectsApi(cluster.api)


def get_bakeoff(cluster: kube.Cluster, name: str) -> dict[str, Any]:
    ApiException = api_exception()
    try:
        return custom_api(cluster).get_namespaced_custom_object(GROUP, VERSION, cluster.namespace, "bakeoffs", name)
    except ApiException as e:
        if e.status == 404:
            raise CommandError(
                f"bakeoff {name} not found in namespace {cluster.namespace}; "
                f"kubectl get bakeoffs -n {cluster.namespace}"
            ) from None
        raise


def now_rfc3339() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
