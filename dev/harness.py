#!/usr/bin/env python3
"""The local control plane and data servers, for the demo and the tests.

One implementation, used by `dev/up`/`dev/down`/`dev/build-tools` and by the pytest
fixtures in `tests/conftest.py`:

- `build()` builds or installs every binary into ~/.cache/replication-operator/,
  keyed by version (a missing cache simply rebuilds; each build goes to a temp dir
  and is moved into place, so an interrupted build never leaves half a cache);
- `Stack` starts etcd, kube-apiserver (RBAC, service-account keys, client-cert
  admin), kube-controller-manager (namespace deletion, garbage collection), two
  pouchdb-servers and two ReductStores on loopback and free ports, each with data
  under one temp dir, and waits for every health check.

Standard library only (it runs before the project's virtualenv exists).

    python dev/harness.py build | up | down | status
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "dev" / "tools"
CACHE = Path(os.environ.get("REPLICATION_OPERATOR_CACHE",
                            Path.home() / ".cache" / "replication-operator"))
STATE_DIR = ROOT / ".dev"
REDUCTSTORE_VERSION = "1.21.4"  # 1.21.5's lock file names a crate version the index lacks
POUCHDB_VERSION = "4.2.0"


class PartFailed(RuntimeError):
    """A part did not start or a build step failed; the message has its log tail."""


def log_tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], *, timeout: float, what: str,
               alive: Callable[[], bool] = lambda: True, log: Path | None = None) -> None:
    """Poll `check` until true; fail early if `alive` turns false."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise PartFailed(f"{what}: process exited\n--- log tail ---\n"
                             f"{log_tail(log) if log else ''}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.2)
    raise PartFailed(f"{what}: no healthy answer within {timeout:.0f}s\n--- log tail ---\n"
                     f"{log_tail(log) if log else ''}")


# ---------------------------------------------------------------------------- build


def go_module_version(module_dir: str, module: str) -> str:
    text = (TOOLS / module_dir / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", text, re.M)
    if not match:
        raise PartFailed(f"{module} not required in dev/tools/{module_dir}/go.mod")
    return match.group(1)


def k8s_version() -> str:
    return go_module_version("kubernetes", "k8s.io/kubernetes")


def tool_dirs() -> dict[str, Path]:
    return {
        "kubernetes": CACHE / f"kubernetes-{k8s_version()}",
        "etcd": CACHE / f"etcd-{go_module_version('etcd', 'go.etcd.io/etcd/server/v3')}",
        "helm": CACHE / f"helm-{go_module_version('helm', 'helm.sh/helm/v3')}",
        "reductstore": CACHE / f"reductstore-{REDUCTSTORE_VERSION}",
        "pouchdb": CACHE / f"pouchdb-server-{POUCHDB_VERSION}",
    }


def binary(tool: str, name: str) -> Path:
    if tool == "pouchdb":
        return tool_dirs()[tool] / "node_modules" / ".bin" / "pouchdb-server"
    return tool_dirs()[tool] / "bin" / name


def _run_step(label: str, cmd: list[str], cwd: Path, log: Path,
              env: dict[str, str] | None = None) -> None:
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(cmd)}\n".encode())
        out.flush()
        result = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
    if result.returncode != 0:
        raise PartFailed(f"build step '{label}' failed (exit {result.returncode}); log {log}\n"
                         f"--- log tail ---\n{log_tail(log)}")


def _build_kubernetes(tmp: Path, log: Path) -> None:
    version = k8s_version()
    minor = version.split(".")[1]
    ldflags = (f"-s -w -X k8s.io/component-base/version.gitVersion={version} "
               f"-X k8s.io/component-base/version.gitMajor=1 "
               f"-X k8s.io/component-base/version.gitMinor={minor} "
               f"-X k8s.io/component-base/version.gitTreeState=clean")
    for cmd in ("kube-apiserver", "kube-controller-manager", "kubectl"):
        _run_step(f"go build {cmd}", ["go", "build", "-trimpath", "-ldflags", ldflags, "-o",
                                      str(tmp / "bin" / cmd), f"k8s.io/kubernetes/cmd/{cmd}"],
                  TOOLS / "kubernetes", log)


def _build_etcd(tmp: Path, log: Path) -> None:
    _run_step("go build etcd", ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o",
                                str(tmp / "bin" / "etcd"), "."], TOOLS / "etcd", log)


def _build_helm(tmp: Path, log: Path) -> None:
    _run_step("go build helm", ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o",
                                str(tmp / "bin" / "helm"), "helm.sh/helm/v3/cmd/helm"],
              TOOLS / "helm", log)


def _build_reductstore(tmp: Path, log: Path) -> None:
    # --no-default-features drops the web console (downloaded at build time, fails
    # offline); fs-backend is a default feature the server needs, so it is named.
    _run_step("cargo install reductstore",
              ["cargo", "install", "reductstore", "--version", REDUCTSTORE_VERSION,
               "--no-default-features", "--features", "fs-backend", "--locked",
               "--root", str(tmp)], ROOT, log)


def _install_pouchdb(tmp: Path, log: Path) -> None:
    for name in ("package.json", "package-lock.json"):
        shutil.copy(ROOT / "dev" / "pouchdb" / name, tmp / name)
    _run_step("npm ci pouchdb-server", ["npm", "ci", "--ignore-scripts", "--no-audit",
                                        "--no-fund"], tmp, log)


BUILDERS: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "etcd": (_build_etcd, "bin/etcd"),
    "kubernetes": (_build_kubernetes, "bin/kubectl"),
    "helm": (_build_helm, "bin/helm"),
    "pouchdb": (_install_pouchdb, "node_modules/.bin/pouchdb-server"),
    "reductstore": (_build_reductstore, "bin/reductstore"),
}


def build(only: list[str] | None = None, out: Any = sys.stdout) -> None:
    """Build every missing tool into the cache; one line per step with its duration."""
    CACHE.mkdir(parents=True, exist_ok=True)
    for tool, target in tool_dirs().items():
        if only and tool not in only:
            continue
        builder, marker = BUILDERS[tool]
        if (target / marker).exists():
            print(f"[build] {tool:12s} cached   {target}", file=out, flush=True)
            continue
        started = time.monotonic()
        print(f"[build] {tool:12s} building {target} (log {CACHE}/{tool}.log) ...",
              file=out, flush=True)
        log = CACHE / f"{tool}.log"
        log.write_text("")
        tmp = Path(tempfile.mkdtemp(prefix=f".{tool}-", dir=CACHE))
        try:
            builder(tmp, log)
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        print(f"[build] {tool:12s} done in {time.monotonic() - started:.0f}s", file=out,
              flush=True)


# ---------------------------------------------------------------------------- parts


@dataclass
class Part:
    """One background process with a health check; stop()/start() keep port and data."""

    name: str
    workdir: Path
    port: int = field(default_factory=free_port)
    pid: int | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return {}

    def healthy(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 60) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                env={**os.environ, **self.environment()}, start_new_session=True)
        self.pid = self._proc.pid
        wait_until(self.healthy, timeout=timeout, what=f"{self.name} on port {self.port}",
                   alive=self.alive, log=self.log_path)

    def prepare(self) -> None:
        """Write config files before the first start (idempotent)."""

    def alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self.pid is not None and _pid_alive(self.pid)

    def stop(self, timeout: float = 15) -> None:
        if self.pid is None:
            return
        _terminate(self.pid, timeout)
        if self._proc is not None:
            with contextlib.suppress(Exception):
                self._proc.wait(timeout=1)
        self._proc = None
        self.pid = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    with contextlib.suppress(OSError, ValueError):
        # a zombie child still "exists"; its state in /proc says it is dead
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _signal(pid: int, sig: int) -> None:
    """Signal the process group if `pid` leads one (our parts do), else the process."""
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _terminate(pid: int, timeout: float) -> None:
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    if _pid_alive(pid):
        _signal(pid, signal.SIGKILL)


def http_ok(url: str, headers: dict[str, str] | None = None,
            context: ssl.SSLContext | None = None) -> bool:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=2, context=context) as response:
        return 200 <= int(response.status) < 300


@dataclass
class Etcd(Part):
    peer_port: int = field(default_factory=free_port)

    def command(self) -> list[str]:
        client = f"http://127.0.0.1:{self.port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [str(binary("etcd", "etcd")), "--name", "default",
                "--data-dir", str(self.workdir / "etcd-data"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"default={peer}", "--log-level", "warn"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
            return bool(json.loads(response.read()).get("health") == "true")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(pki: Path) -> None:
    """CA, serving cert for 127.0.0.1, admin client cert, service-account key pair."""
    if (pki / "admin.crt").exists():
        return
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.crt", "-days", "30", "-subj", "/CN=replication-operator-dev-ca", cwd=pki)
    (pki / "san.cnf").write_text(
        "[v3]\nsubjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
        "extendedKeyUsage=serverAuth\n[client]\nextendedKeyUsage=clientAuth\n")
    for name, subject, ext in (("apiserver", "/CN=kube-apiserver", "v3"),
                               ("admin", "/O=system:masters/CN=dev-admin", "client")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                 f"{name}.csr", "-subj", subject, cwd=pki)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "30", "-extfile",
                 "san.cnf", "-extensions", ext, cwd=pki)
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def write_kubeconfig(path: Path, server: str, pki: Path) -> None:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "dev",
        "clusters": [{"name": "dev", "cluster": {
            "server": server, "certificate-authority": str(pki / "ca.crt")}}],
        "users": [{"name": "dev-admin", "user": {
            "client-certificate": str(pki / "admin.crt"),
            "client-key": str(pki / "admin.key")}}],
        "contexts": [{"name": "dev", "context": {"cluster": "dev", "user": "dev-admin"}}],
    }, indent=2))


@dataclass
class KubeAPIServer(Part):
    etcd_url: str = ""

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    def prepare(self) -> None:
        make_pki(self.pki)
        write_kubeconfig(self.kubeconfig, self.url, self.pki)

    def command(self) -> list[str]:
        pki = self.pki
        return [str(binary("kubernetes", "kube-apiserver")),
                "--etcd-servers", self.etcd_url, "--etcd-prefix", "/registry",
                "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
                "--secure-port", str(self.port),
                "--tls-cert-file", str(pki / "apiserver.crt"),
                "--tls-private-key-file", str(pki / "apiserver.key"),
                "--client-ca-file", str(pki / "ca.crt"),
                "--authorization-mode", "RBAC",
                "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                "--service-account-key-file", str(pki / "sa.pub"),
                "--service-account-signing-key-file", str(pki / "sa.key"),
                "--service-cluster-ip-range", "10.96.0.0/24",
                "--cert-dir", str(self.workdir / "certs"),
                "--enable-priority-and-fairness=false", "--profiling=false",
                "--allow-privileged=true", "--v=1"]

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return context

    def healthy(self) -> bool:
        return http_ok(f"{self.url}/readyz", context=self.ssl_context())


@dataclass
class ControllerManager(Part):
    apiserver: KubeAPIServer | None = None

    def command(self) -> list[str]:
        assert self.apiserver is not None
        kubeconfig, pki = str(self.apiserver.kubeconfig), self.apiserver.pki
        return [str(binary("kubernetes", "kube-controller-manager")),
                "--kubeconfig", kubeconfig, "--authentication-kubeconfig", kubeconfig,
                "--authorization-kubeconfig", kubeconfig,
                "--bind-address", "127.0.0.1", "--secure-port", str(self.port),
                "--leader-elect=false", "--use-service-account-credentials=false",
                "--service-account-private-key-file", str(pki / "sa.key"),
                "--root-ca-file", str(pki / "ca.crt"),
                "--controllers", "namespace-controller,garbage-collector-controller,"
                                 "serviceaccount-controller,serviceaccount-token-controller,"
                                 "clusterrole-aggregation-controller,"
                                 "root-ca-certificate-publisher-controller",
                "--cert-dir", str(self.workdir / "kcm-certs"), "--v=1"]

    def healthy(self) -> bool:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return http_ok(f"https://127.0.0.1:{self.port}/healthz", context=context)


@dataclass
class PouchDB(Part):
    username: str = "admin"
    password: str = field(default_factory=lambda: secrets.token_hex(12))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / f"{self.name}-data"

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "config.json"
        if not config.exists():
            config.write_text(json.dumps({"admins": {self.username: self.password},
                                          "log": {"file": str(self.data_dir / "pouch.log")}}))

    def environment(self) -> dict[str, str]:
        # without it the process dies when a continuous _replicator doc is deleted
        return {"NODE_OPTIONS": "--unhandled-rejections=warn"}

    def command(self) -> list[str]:
        return [str(binary("pouchdb", "pouchdb-server")), "-o", "127.0.0.1", "-p",
                str(self.port), "-d", str(self.data_dir), "-c",
                str(self.data_dir / "config.json"), "-n", "--no-color"]

    def healthy(self) -> bool:
        auth = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return http_ok(f"{self.url}/_session", {"Authorization": f"Basic {auth}"})


@dataclass
class ReductStore(Part):
    token: str = field(default_factory=lambda: secrets.token_hex(16))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        return {"RS_DATA_PATH": str(self.workdir / f"{self.name}-data"),
                "RS_PORT": str(self.port), "RS_HOST": "127.0.0.1",
                "RS_API_TOKEN": self.token, "RS_LOG_LEVEL": "WARN"}

    def command(self) -> list[str]:
        return [str(binary("reductstore", "reductstore"))]

    def healthy(self) -> bool:
        return http_ok(f"{self.url}/api/v1/info", {"Authorization": f"Bearer {self.token}"})


class Stack:
    """Every part, in one temp dir; parts start on demand and in dependency order."""

    def __init__(self, workdir: Path | None = None) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="replication-operator-dev-"))
        self.etcd = Etcd("etcd", self.workdir)
        self.apiserver = KubeAPIServer("kube-apiserver", self.workdir)
        self.controller_manager = ControllerManager("kube-controller-manager", self.workdir,
                                                    apiserver=self.apiserver)
        # one admin password and one API token for both instances of a kind (the
        # .dev/env contract has a single COUCHDB_PASSWORD and REDUCTSTORE_TOKEN)
        password, token = secrets.token_hex(12), secrets.token_hex(16)
        self.couch_a = PouchDB("couch-a", self.workdir, password=password)
        self.couch_b = PouchDB("couch-b", self.workdir, password=password)
        self.reduct_a = ReductStore("reduct-a", self.workdir, token=token)
        self.reduct_b = ReductStore("reduct-b", self.workdir, token=token)

    def parts(self) -> list[Part]:
        return [self.etcd, self.apiserver, self.controller_manager, self.couch_a,
                self.couch_b, self.reduct_a, self.reduct_b]

    def start_control_plane(self) -> None:
        if not self.etcd.alive():
            self.etcd.start()
        self.apiserver.etcd_url = self.etcd.url
        if not self.apiserver.alive():
            self.apiserver.start(timeout=120)
        if not self.controller_manager.alive():
            self.controller_manager.start(timeout=90)

    def start_all(self, out: Any = sys.stdout) -> None:
        for part in self.parts():
            if part.alive():
                continue
            started = time.monotonic()
            if part is self.apiserver:
                self.apiserver.etcd_url = self.etcd.url
            part.start(timeout=120)
            print(f"[up] {part.name:24s} :{part.port:<6d} {time.monotonic() - started:5.1f}s",
                  file=out, flush=True)

    def stop_all(self) -> None:
        for part in reversed(self.parts()):
            part.stop()

    def bin_dir(self) -> Path:
        path = self.workdir / "bin"
        path.mkdir(exist_ok=True)
        for tool, name in (("kubernetes", "kubectl"), ("helm", "helm")):
            link = path / name
            if not link.exists():
                link.symlink_to(binary(tool, name))
        return path

    def env(self) -> dict[str, str]:
        return {
            "KUBECONFIG": str(self.apiserver.kubeconfig),
            "PATH": f"{self.bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}",
            "COUCHDB_A_URL": self.couch_a.url, "COUCHDB_B_URL": self.couch_b.url,
            "COUCHDB_USER": self.couch_a.username, "COUCHDB_PASSWORD": self.couch_a.password,
            "REDUCTSTORE_A_URL": self.reduct_a.url, "REDUCTSTORE_B_URL": self.reduct_b.url,
            "REDUCTSTORE_TOKEN": self.reduct_a.token,
        }

    # -- persistence for dev/up and dev/down ------------------------------------

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"workdir": str(self.workdir), "parts": {
            p.name: {k: v for k, v in vars(p).items()
                     if k not in ("_proc", "workdir", "apiserver") and not k.startswith("_")}
            for p in self.parts()}}, indent=2, default=str))

    @classmethod
    def load(cls, path: Path) -> Stack:
        data = json.loads(path.read_text())
        stack = cls(Path(data["workdir"]))
        for part in stack.parts():
            for key, value in data["parts"].get(part.name, {}).items():
                setattr(part, key, value)
        return stack


# ---------------------------------------------------------------------------- commands

STATE = STATE_DIR / "state.json"
ENV_FILE = STATE_DIR / "env"


def running_stack() -> Stack | None:
    """The stack `dev/up` started, if it is still fully alive."""
    if not STATE.exists():
        return None
    stack = Stack.load(STATE)
    return stack if all(p.alive() for p in stack.parts()) else None


def up() -> Stack:
    stack = running_stack()
    if stack is not None:
        print(f"[up] already running (state {STATE}); nothing to do")
        return stack
    down(quiet=True)
    stack = Stack()
    try:
        stack.start_all()
    except BaseException:
        stack.stop_all()
        raise
    stack.save(STATE)
    ENV_FILE.write_text("".join(f"export {k}='{v}'\n" for k, v in stack.env().items()))
    print(f"[up] ready: source {ENV_FILE.relative_to(ROOT)}  (stop with dev/down)")
    return stack


def down(quiet: bool = False) -> None:
    if not STATE.exists():
        if not quiet:
            print("[down] nothing running")
        return
    stack = Stack.load(STATE)
    operator_pid = STATE_DIR / "operator.pid"
    if operator_pid.exists():
        with contextlib.suppress(ValueError):
            _terminate(int(operator_pid.read_text().strip()), 10)
        operator_pid.unlink()
    stack.stop_all()
    shutil.rmtree(stack.workdir, ignore_errors=True)
    STATE.unlink(missing_ok=True)
    ENV_FILE.unlink(missing_ok=True)
    if not quiet:
        print(f"[down] stopped and removed {stack.workdir}")


def status() -> int:
    if not STATE.exists():
        print("not running")
        return 1
    stack = Stack.load(STATE)
    for part in stack.parts():
        print(f"{part.name:24s} pid {part.pid} :{part.port} "
              f"{'alive' if part.alive() else 'DEAD'}")
    return 0 if all(p.alive() for p in stack.parts()) else 1


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    print(f"[{label}] {time.monotonic() - started:.1f}s", flush=True)


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "up"
    try:
        if command == "build":
            build(argv[2:] or None)
        elif command == "up":
            build()
            up()
        elif command == "down":
            down()
        elif command == "status":
            return status()
        else:
            print(__doc__)
            return 2
    except PartFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
