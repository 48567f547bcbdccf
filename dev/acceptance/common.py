"""What the acceptance scripts share: kubectl, polling with a deadline, the checks'
report, and the operator started on the current cluster for one namespace."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "dev"))

from e2e_support import Kube, OperatorProcess, crd_paths  # noqa: E402

CRDS = ("databaseservers", "replications", "replicationpolicies", "tokens")


class Cluster:
    """kubectl against $KUBECONFIG (the dev stack's when sourced from .dev/env)."""

    def __init__(self) -> None:
        self.env = dict(os.environ)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> Any:
        result = subprocess.run(["kubectl", *args], input=input, capture_output=True,
                                text=True, env=self.env, timeout=120)
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result


def until(what: str, probe: Callable[[], Any], timeout: float = 120.0,
          poll: float = 1.0) -> Any:
    """Poll `probe` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(poll)  # poll interval of the deadline loop above
    raise AssertionError(f"timed out after {timeout:.0f}s: {what} (last: {last!r})")


def status(kube: Kube, kind: str, name: str) -> dict[str, Any]:
    return dict((kube.get(kind, name) or {}).get("status") or {})


class Checks:
    """Runs named checks, one PASS/FAIL line each; a failed check does not stop the rest."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def run(self, name: str, fn: Callable[[], Any]) -> None:
        started = time.monotonic()
        try:
            detail = fn()
            took = time.monotonic() - started
            print(f"PASS {name} ({took:.1f}s){f': {detail}' if detail else ''}", flush=True)
        except Exception as exc:  # a failed check is reported, the others still run
            self.failed.append(name)
            print(f"FAIL {name} ({time.monotonic() - started:.1f}s): {exc}", flush=True)

    def no_secret_in_log(self, operator: OperatorProcess, secrets: Iterable[str]) -> None:
        leaked = any(s and s in operator.log_text() for s in secrets)
        print(f"{'FAIL' if leaked else 'PASS'} no secret in the operator log "
              f"({operator.log_path})")
        if leaked:
            self.failed.append("secret in log")

    def summary(self) -> int:
        """Print the verdict; the exit code (0 when every check passed)."""
        print(f"{len(self.failed)} failed: {self.failed}" if self.failed else "all passed")
        return 1 if self.failed else 0


def start_operator(namespace: str) -> tuple[Cluster, Kube, OperatorProcess]:
    """The project's CRDs applied (as tests/e2e does), the namespace made, and the
    operator running for it as its own process (log under $TMPDIR/acceptance-NS)."""
    cluster = Cluster()
    for path in crd_paths():
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    *[f"crd/{kind}.replication.dbops.dev" for kind in CRDS])
    cluster.kubectl("create", "namespace", namespace, check=False)
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"acceptance-{namespace}"
    log_dir.mkdir(parents=True, exist_ok=True)
    operator = OperatorProcess(cluster, log_dir, resync=5.0, scope=["--namespace", namespace])
    operator.start()
    return cluster, Kube(cluster, namespace), operator
