"""Server type → backend class: adding a server type is one module plus one line here."""

from __future__ import annotations

from collections.abc import Callable

from replication_operator.backends.base import Backend
from replication_operator.backends.couchdb.backend import CouchDBBackend
from replication_operator.backends.eden.backend import EdenBackend
from replication_operator.backends.harbor.backend import HarborBackend
from replication_operator.backends.reductstore.backend import ReductStoreBackend
from replication_operator.errors import SpecError
from replication_operator.http import ServerConnection, ServerSettings


def make_backend(server_type: str, conn: ServerConnection,
                 connection_for: Callable[[ServerSettings], ServerConnection]) -> Backend:
    if server_type in ("couchdb", "cloudant"):
        return CouchDBBackend(conn, connection_for)
    if server_type == "reductstore":
        return ReductStoreBackend(conn, connection_for)
    if server_type == "harbor":
        return HarborBackend(conn, connection_for)
    if server_type == "eden":
        return EdenBackend(conn, connection_for)
    raise SpecError(f"spec.type {server_type!r}: this operator version has no backend for it")
