"""Session fixtures for the real parts: API server, pouchdb-servers, ReductStores.

They start through dev/harness.py (the same code as dev/up), lazily: a test asks for
what it needs and only that starts. A part that fails to start fails the run with its
log tail; nothing is skipped silently.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "dev"))

import harness  # noqa: E402


class Cluster:
    """The local API server, as its admin, with kubectl and helm on PATH."""

    def __init__(self, stack: harness.Stack) -> None:
        self.stack = stack
        self.kubeconfig = str(stack.apiserver.kubeconfig)
        self.server = stack.apiserver.url
        self.tmp_dir = stack.workdir
        self.bin_dir = stack.bin_dir()
        self.env = {**os.environ, "KUBECONFIG": self.kubeconfig,
                    "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}

    def kubectl(self, *args: str, input: str | None = None, check: bool = True
                ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(self.bin_dir / "kubectl"), *args], input=input,
                                capture_output=True, text=True, env=self.env, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stderr}")
        return result


@pytest.fixture(scope="session")
def stack() -> Iterator[harness.Stack]:
    harness.build()  # no-op when cached; CI builds first (dev/build-tools)
    workdir = Path(tempfile.mkdtemp(prefix="replication-operator-test-"))
    parts = harness.Stack(workdir)
    yield parts
    parts.stop_all()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster(stack: harness.Stack) -> Cluster:
    stack.start_control_plane()
    return Cluster(stack)


def _started(part: harness.Part) -> harness.Part:
    if not part.alive():
        part.start(timeout=120)
    return part


@pytest.fixture(scope="session")
def couch_a(stack: harness.Stack) -> harness.Part:
    return _started(stack.couch_a)


@pytest.fixture(scope="session")
def couch_b(stack: harness.Stack) -> harness.Part:
    return _started(stack.couch_b)


@pytest.fixture(scope="session")
def reduct_a(stack: harness.Stack) -> harness.Part:
    return _started(stack.reduct_a)


@pytest.fixture(scope="session")
def reduct_b(stack: harness.Stack) -> harness.Part:
    return _started(stack.reduct_b)


@pytest.fixture(autouse=True)
def _restart_stopped_servers(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that stops a server and fails midway must not break the tests after it."""
    yield
    if "stack" not in request.fixturenames:
        return
    stack: harness.Stack = request.getfixturevalue("stack")
    for part in (stack.couch_a, stack.couch_b, stack.reduct_a, stack.reduct_b):
        if part.pid is not None and not part.alive():
            part.start()


_names = itertools.count()


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    def make(prefix: str) -> str:
        return f"{prefix}-{next(_names)}-{secrets.token_hex(3)}"
    return make


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"t{next(_names)}-{request.node.name[:30].lower().replace('_', '-')}".strip("-")
    name = "".join(c for c in name if c.isalnum() or c == "-")[:50].strip("-")
    name = f"{name}-{secrets.token_hex(2)}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def pytest_report_header(config: Any) -> str:
    return f"parts cache: {harness.CACHE}"
