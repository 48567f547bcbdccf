"""replication-operator: replications between data servers, declared as Kubernetes resources."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("replication-operator")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"

GROUP = "replication.dbops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
FINALIZER = f"{GROUP}/finalizer"
