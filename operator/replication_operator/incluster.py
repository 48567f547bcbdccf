"""Connect to the API server from inside a pod, the way the kubernetes client does.

kopf's own `login_with_service_account` dials `https://kubernetes.default.svc`, which
needs cluster DNS; a cluster whose DNS is down or slow (or a node without it) then
loses its operator although the API server is reachable. The kubernetes client (and
client-go) instead use the `KUBERNETES_SERVICE_HOST` / `KUBERNETES_SERVICE_PORT`
variables the kubelet puts into every pod: no name to resolve. The token is read at
each login, so a rotated projected token is picked up when kopf logs in again after a
401.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path

import kopf

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# kopf's priority for a service account login: above the kubeconfig's
PRIORITY = 20


def api_server_url(environ: Mapping[str, str]) -> str | None:
    """The API server's URL from the pod's environment, or None outside a pod."""
    host = environ.get("KUBERNETES_SERVICE_HOST", "").strip()
    port = environ.get("KUBERNETES_SERVICE_PORT", "").strip() or "443"
    if not host:
        return None
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass  # a name, used as it is
    return f"https://{host}:{port}"


def connection_info(environ: Mapping[str, str] = os.environ,
                    account_dir: Path = SERVICE_ACCOUNT_DIR,
                    trust_env: bool = False) -> kopf.ConnectionInfo | None:
    """kopf connection info for this pod's service account, or None when not in a pod
    (no service variables or no token file)."""
    server = api_server_url(environ)
    token_path = account_dir / "token"
    if server is None or not token_path.exists():
        return None
    token = token_path.read_text(encoding="utf-8").strip()
    namespace_path = account_dir / "namespace"
    namespace = (namespace_path.read_text(encoding="utf-8").strip()
                 if namespace_path.exists() else None)
    ca_path = account_dir / "ca.crt"
    return kopf.ConnectionInfo(
        server=server,
        ca_path=str(ca_path) if ca_path.exists() else None,
        token=token or None,
        default_namespace=namespace or None,
        trust_env=trust_env,
        priority=PRIORITY,
    )
