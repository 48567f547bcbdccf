"""Session fixtures for the real parts: API server, pouchdb-servers, ReductStores.

They start through dev/harness.py (the same code as dev/up), lazily: a test asks for
what it needs and only that starts; everything stops at the end of the session. A part
that fails to start fails the test with its log tail; nothing is skipped silently.

By default a session starts its own parts in its own temp dir. With
REPLICATION_OPERATOR_REUSE_DEV=1 and a healthy `dev/up` stack (.dev/state.json), the
fixtures use that stack instead (faster while iterating) and leave it running; a
server a test restarted is recorded in .dev/state.json again, so dev/down still stops it.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "dev"))

import harness  # noqa: E402

if TYPE_CHECKING:  # imported in the simulator fixtures' bodies at run time (lazy start)
    from eden_sim import EdenSimulator
    from harbor_sim import HarborSimulator

# Harbor closes an execution 20-30 s after its tasks end; the simulators used by the
# tests keep that lag but shorter (1.3-2 s), so it is exercised without slowing suites.
SIM_STATUS_REFRESH = 2.0

REUSE_DEV = os.environ.get("REPLICATION_OPERATOR_REUSE_DEV", "") not in ("", "0", "false")


class Cluster:
    """The local API server, as its admin, with kubectl and helm first on PATH."""

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
        """Run kubectl as the admin; with `check`, a failure raises with its stderr."""
        result = subprocess.run([str(self.bin_dir / "kubectl"), *args], input=input,
                                capture_output=True, text=True, env=self.env, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stderr}")
        return result


class Parts:
    """The session's stack, and which of its parts the tests asked for."""

    def __init__(self, stack: harness.Stack, owned: bool) -> None:
        self.stack = stack
        self.owned = owned
        self.requested: list[harness.Part] = []

    def start(self, part: harness.Part) -> harness.Part:
        if part not in self.requested:
            self.requested.append(part)
        self.stack.start_part(part)
        return part


def _require_built() -> None:
    """Fail fast (not in a test's timeout) when the parts were never built."""
    missing = [tool.name for tool in harness.tools().values() if not tool.present()]
    if missing:
        pytest.fail(f"local parts not built: {', '.join(missing)}; run dev/build-tools "
                    f"(cache {harness.CACHE})", pytrace=False)


@pytest.fixture(scope="session")
def local_parts() -> Iterator[Parts]:
    reused = harness.running_stack() if REUSE_DEV else None
    if reused is not None:
        session = Parts(reused, owned=False)
        yield session
        reused.save(harness.STATE)  # PIDs of servers a test restarted
        return
    _require_built()
    workdir = Path(tempfile.mkdtemp(prefix="replication-operator-test-"))
    session = Parts(harness.Stack(workdir), owned=True)
    yield session
    session.stack.stop_all()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def stack(local_parts: Parts) -> harness.Stack:
    """The harness itself, for tests that need more than the fixtures below."""
    return local_parts.stack


@pytest.fixture(scope="session")
def cluster(local_parts: Parts) -> Cluster:
    local_parts.start(local_parts.stack.controller_manager)  # with etcd and the API server
    return Cluster(local_parts.stack)


@pytest.fixture(scope="session")
def couch_a(local_parts: Parts) -> harness.PouchDB:
    local_parts.start(local_parts.stack.couch_a)
    return local_parts.stack.couch_a


@pytest.fixture(scope="session")
def couch_b(local_parts: Parts) -> harness.PouchDB:
    local_parts.start(local_parts.stack.couch_b)
    return local_parts.stack.couch_b


@pytest.fixture(scope="session")
def reduct_a(local_parts: Parts) -> harness.ReductStore:
    local_parts.start(local_parts.stack.reduct_a)
    return local_parts.stack.reduct_a


@pytest.fixture(scope="session")
def reduct_b(local_parts: Parts) -> harness.ReductStore:
    local_parts.start(local_parts.stack.reduct_b)
    return local_parts.stack.reduct_b


@pytest.fixture(scope="session")
def registry(local_parts: Parts) -> harness.Distribution:
    """A real Distribution registry with basic auth (a plain registry for Harbor policies)."""
    local_parts.start(local_parts.stack.registry)
    return local_parts.stack.registry


@pytest.fixture(autouse=True)
def _restart_stopped_parts(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that stops a server and fails midway must not break the tests after it."""
    yield
    if "local_parts" not in request.fixturenames:
        return
    session: Parts = request.getfixturevalue("local_parts")
    for part in session.requested:
        if not part.alive():
            session.stack.start_part(part)


_counter = itertools.count()


def _dns_label(text: str, limit: int) -> str:
    """Lowercase letters, digits and '-', starting with a letter, at most `limit` long."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower())
    label = re.sub(r"-+", "-", label).strip("-")[:limit].rstrip("-")
    return label if label[:1].isalpha() else f"x{label}"[:limit]


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """`unique_name(prefix)`: a lowercase name unique in the session (db, bucket names)."""
    def make(prefix: str) -> str:
        return f"{_dns_label(prefix, 40)}-{next(_counter)}-{secrets.token_hex(3)}"
    return make


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test; deleted afterwards (without waiting)."""
    name = f"t{next(_counter)}-{_dns_label(request.node.name, 40)}-{secrets.token_hex(2)}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def pytest_report_header(config: pytest.Config) -> str:
    return f"local parts: cache {harness.CACHE}" + (
        "; reusing a healthy dev/up stack if there is one" if REUSE_DEV else "")


@pytest.fixture(scope="session")
def harbor_a() -> Iterator[HarborSimulator]:
    """A simulated Harbor (tests/harbor_sim) on loopback, admin with a random password;
    started on first use, stopped at the end of the session."""
    from harbor_sim import HarborSimulator

    sim = HarborSimulator(username="admin", password=secrets.token_urlsafe(16),
                          status_refresh_seconds=SIM_STATUS_REFRESH).start()
    yield sim
    sim.stop()


@pytest.fixture(scope="session")
def harbor_b() -> Iterator[HarborSimulator]:
    """A second, independent simulated Harbor (a replication peer for harbor_a)."""
    from harbor_sim import HarborSimulator

    sim = HarborSimulator(username="admin", password=secrets.token_urlsafe(16),
                          status_refresh_seconds=SIM_STATUS_REFRESH).start()
    yield sim
    sim.stop()


@pytest.fixture(scope="session")
def eden_a() -> Iterator[EdenSimulator]:
    """A simulated Sahana Eden (tests/eden_sim) on loopback, admin with a random
    password; started on first use, stopped at the end of the session."""
    from eden_sim import EdenSimulator

    sim = EdenSimulator(email="admin@eden-a.example", password=secrets.token_urlsafe(16))
    # shared by every test (and namespace) of the session, which make many repositories
    # for one peer: a real Eden keeps one per peer URL (tests that need that rule start
    # simulators of their own)
    sim.store.set_settings(one_repository_per_peer=False)
    yield sim.start()
    sim.stop()


@pytest.fixture(scope="session")
def eden_b() -> Iterator[EdenSimulator]:
    """A second simulated Eden, a sync peer of eden_a (its scheduler runs their jobs)."""
    from eden_sim import EdenSimulator

    sim = EdenSimulator(email="admin@eden-b.example", password=secrets.token_urlsafe(16))
    # shared by every test (and namespace) of the session, which make many repositories
    # for one peer: a real Eden keeps one per peer URL (tests that need that rule start
    # simulators of their own)
    sim.store.set_settings(one_repository_per_peer=False)
    yield sim.start()
    sim.stop()
