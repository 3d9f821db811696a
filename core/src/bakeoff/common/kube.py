"""Connecting to a Kubernetes API server: one place for every cluster command.

``bakeoff controller``, ``bakeoff router --kubernetes``, ``bakeoff submit``,
``status`` and ``revert`` all take ``--kubeconfig``, ``--context`` and
``--namespace``; this module turns them into an ``ApiClient`` and a
namespace, the way kubectl does: an explicit kubeconfig, else ``$KUBECONFIG``
or ``~/.kube/config``, else the pod's service account (in-cluster).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bakeoff.contracts.resources import API_VERSION, GROUP, VERSION  # noqa: F401  (re-exported)

SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class KubeConfigError(RuntimeError):
    """No usable cluster configuration; the message says what was tried."""


@dataclass
class Cluster:
    api: Any  # kubernetes.client.ApiClient
    namespace: str
    source: str  # where the configuration came from, for messages

    def close(self) -> None:
        self.api.close()


def add_arguments(
    p: argparse.ArgumentParser, namespace_help: str = "namespace (default: the context's, else default)"
) -> None:
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, else in-cluster)")
    p.add_argument("--context", help="kubeconfig context (default: the current one)")
    p.add_argument("--namespace", "-n", help=namespace_help)


def connect(kubeconfig: str | None = None, context: str | None = None, namespace: str | None = None) -> Cluster:
    """An ApiClient and the namespace to work in; KubeConfigError when nothing usable is found."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    conf = client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG") or None
    if path is None and (Path.home() / ".kube" / "config").exists():
        path = str(Path.home() / ".kube" / "config")
    if path is not None:
        first = path.split(os.pathsep)[0]
        if not Path(first).exists():
            raise KubeConfigError(f"kubeconfig {first} does not exist")
        try:
            config.load_kube_config(config_file=first, context=context, client_configuration=conf)
            _, active = config.list_kube_config_contexts(config_file=first)
            if context:
                contexts, _ = config.list_kube_config_contexts(config_file=first)
                active = next((c for c in contexts if c.get("name") == context), active)
        except ConfigException as e:
            raise KubeConfigError(f"kubeconfig {first}: {e}") from None
        ns = namespace or (active or {}).get("context", {}).get("namespace") or "default"
        return Cluster(client.ApiClient(conf), ns, f"kubeconfig {first}")
    try:
        config.load_incluster_config(client_configuration=conf)
    except ConfigException:
        raise KubeConfigError(
            "no kubeconfig (--kubeconfig, $KUBECONFIG, ~/.kube/config) and not running in a pod with a service account"
        ) from None
    ns = namespace or (SA_NAMESPACE.read_text().strip() if SA_NAMESPACE.exists() else "default")
    return Cluster(client.ApiClient(conf), ns, "in-cluster service account")


def connect_from_args(args: argparse.Namespace) -> Cluster:
    return connect(getattr(args, "kubeconfig", None), getattr(args, "context", None), getattr(args, "namespace", None))


def api_error_message(e: Any) -> str:
    """The API server's own message from an ApiException (its Status body), else the reason."""
    import json

    body = getattr(e, "body", None)
    if body:
        try:
            msg = json.loads(body).get("message")
            if msg:
                return str(msg)
        except (ValueError, AttributeError):
            pass
    return f"{getattr(e, 'status', '')} {getattr(e, 'reason', '')}".strip() or str(e)
