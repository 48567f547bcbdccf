"""Bugs the reliability suite found, each made to happen on purpose: the real API
server, the real servers, the operator as its own process."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from e2e_support import Kube, wait_for
from rel_support import (
    ReductAdmin,
    Servers,
    inventory,
    manifest,
    objects,
    operator,
    prepare_servers,
    server_manifests,
)


def test_deleting_a_replication_removes_a_replacement_its_status_never_named(
        cluster: Any, rel_kube: Kube, servers: Servers, tmp_path: Path) -> None:
    """Killed between creating a ReductStore replacement (`<ns>__<name>-b`, made when a
    change cannot be applied in place) and writing the status that names it, the
    operator came back to a status naming only the old replication. Deleting the
    Replication then removed that one and left the replacement sending forever (seen
    in the kill -9 loop). The replacement's name derives from the resource, so deletion
    removes it as well."""
    kube = rel_kube
    prepare_servers(servers)
    kube.apply(*server_manifests(servers))
    proc = operator(cluster, tmp_path, kube.ns)
    proc.start()
    try:
        kube.apply(manifest("Replication", "swapped", {
            "source": {"server": "reduct-a", "database": "rel-src"},
            "target": {"server": "reduct-b", "database": f"rel-{kube.ns}", "create": True}}))
        kube.wait_condition("replication", "swapped", timeout=90)
        proc.kill(signal.SIGKILL)
        # what the killed swap left: the replacement, with the settings it would carry
        source = ReductAdmin(servers.reduct_a)
        name = f"{kube.ns}__swapped"
        settings = source.http.get(f"/api/v1/replications/{name}").json()["settings"]
        source.http.post(f"/api/v1/replications/{name}-b",
                         json={**settings, "dst_token": servers.reduct_b.token}
                         ).raise_for_status()
        kube.delete("replication", "swapped")
        proc.start()
        wait_for(lambda: not objects(kube), timeout=60, what="the Replication deleted")
        left = inventory(servers, kube.ns).reduct_replications
        assert not left, f"left on ReductStore: {sorted(left)}"
    finally:
        proc.stop()

