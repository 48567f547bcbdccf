#!/usr/bin/env python3
"""The local control plane and data servers, for the demo and the tests.

One implementation, used by `dev/up`, `dev/down`, `dev/build-tools` and by the pytest
fixtures in `tests/conftest.py`:

- `build()` builds or installs every binary into ~/.cache/replication-operator/,
  keyed by version. A part whose outputs exist is skipped; a missing cache rebuilds.
  Each build goes to a temp dir that is renamed into place, so an interrupted build
  never leaves half a cache, and a lock keeps two builds from racing.
- `Stack` starts etcd, kube-apiserver (RBAC, service-account keys, client-certificate
  admin), kube-controller-manager (namespace deletion, garbage collection), two
  pouchdb-servers, two ReductStores, two Harbor API simulators (tests/harbor_sim) and
  two Sahana Eden simulators (tests/eden_sim; the simulators need the project's .venv)
  on 127.0.0.1 and free ports, with data and logs under one temp dir, and waits
  (polling, with a deadline) for each health check.
  Every part has start()/stop()/restart(); a restarted part keeps its port and data.

Standard library only: it runs before the project's virtualenv exists.

    python dev/harness.py build [PART...] | up | down | status
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import random
import re
import secrets
import shlex
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "dev" / "tools"
CACHE = Path(os.environ.get("REPLICATION_OPERATOR_CACHE",
                            Path.home() / ".cache" / "replication-operator"))
# dev/up's state; overridable so a second checkout (or a measurement) can run its own
STATE_DIR = Path(os.environ.get("REPLICATION_OPERATOR_STATE_DIR", ROOT / ".dev"))
STATE = STATE_DIR / "state.json"
ENV_FILE = STATE_DIR / "env"
REDUCTSTORE_VERSION = "1.21.4"  # 1.21.5's lock file names a crate version the index lacks
POUCHDB_VERSION = "4.2.0"
LOOPBACK = "127.0.0.1"
# the API server's service range when no node runs (the node has its own: dev/node.py)
SERVICE_CIDR = "10.96.0.0/24"  # also pinned in dev/pouchdb/package.json and its lock file


class PartFailed(RuntimeError):
    """A part did not start or a build step failed; the message has its log tail."""


def log_tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _with_tail(message: str, log: Path | None) -> str:
    return f"{message}\n--- tail of {log} ---\n{log_tail(log) if log else '(no log)'}"


def free_port(host: str = LOOPBACK) -> int:
    """A free loopback port below the kernel's ephemeral range.

    Outgoing connections take their source ports from the ephemeral range; keeping our
    servers out of it means a server stopped by a test can get its port back.
    """
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(100):
        port = random.randint(10000, max(10001, low - 1))
        if _port_free(port, host):
            return port
    with socket.socket() as sock:  # fall back to any port the kernel picks
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_until(check: Callable[[], bool], *, timeout: float, what: str,
               alive: Callable[[], bool] = lambda: True, log: Path | None = None) -> None:
    """Poll `check` until it is true; fail at the deadline, or early if `alive` turns false."""
    deadline = time.monotonic() + timeout
    while True:
        if not alive():
            raise PartFailed(_with_tail(f"{what}: process exited before it was healthy", log))
        with contextlib.suppress(Exception):
            if check():
                return
        if time.monotonic() > deadline:
            raise PartFailed(_with_tail(f"{what}: no healthy answer within {timeout:.0f}s", log))
        time.sleep(0.2)


@contextlib.contextmanager
def timed(label: str, out: TextIO | None = None) -> Iterator[None]:
    """Print `label` and its duration once the block is done (also when it fails)."""
    started = time.monotonic()
    ok = False
    try:
        yield
        ok = True
    finally:
        status = "" if ok else "  FAILED"
        print(f"{label:58s} {time.monotonic() - started:6.1f}s{status}",
              file=out or sys.stdout, flush=True)


# ---------------------------------------------------------------------------- build


def go_module_version(module_dir: str, module: str) -> str:
    text = (TOOLS / module_dir / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", text, re.M)
    if not match:
        raise PartFailed(f"{module} not required in dev/tools/{module_dir}/go.mod")
    return match.group(1)


def k8s_version() -> str:
    return go_module_version("kubernetes", "k8s.io/kubernetes")


@dataclass(frozen=True)
class Step:
    """One build command; `{out}` in an argument stands for the output dir."""

    label: str
    cmd: tuple[str, ...]
    cwd: Path
    env: tuple[tuple[str, str], ...] = ()

    def run(self, out_dir: Path, log: Path, out: TextIO) -> None:
        """Run, appending to `log`; print the duration; fail with the log's tail."""
        cmd = [arg.replace("{out}", str(out_dir)) for arg in self.cmd]
        cwd = out_dir if str(self.cwd) == "{out}" else self.cwd
        with timed(f"[build]   {self.label}", out), open(log, "ab") as sink:
            sink.write(f"\n$ {shlex.join(cmd)}\n".encode())
            sink.flush()
            try:
                result = subprocess.run(cmd, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT,
                                        env={**os.environ, **dict(self.env)})
            except OSError as exc:
                raise PartFailed(f"build step '{self.label}' could not run {cmd[0]}: {exc}"
                                 ) from exc
            if result.returncode != 0:
                raise PartFailed(_with_tail(
                    f"build step '{self.label}' failed (exit {result.returncode})", log))


@dataclass(frozen=True)
class Tool:
    """One cached part: its dir (name + version), its outputs, and how it is built.

    A stamp in the dir records the recipe (steps, pinned input files) it was built
    with: a changed recipe rebuilds even when the version is the same.
    """

    name: str
    version: str
    outputs: tuple[str, ...]
    steps: tuple[Step, ...]
    files: tuple[Path, ...] = ()  # copied into the output dir before the steps

    STAMP = ".build-recipe.json"

    @property
    def dir(self) -> Path:
        return CACHE / f"{self.name}-{self.version}"

    def recipe(self) -> str:
        return json.dumps({
            "steps": [[s.label, list(s.cmd), str(s.cwd.relative_to(ROOT))
                       if s.cwd.is_relative_to(ROOT) else str(s.cwd), dict(s.env)]
                      for s in self.steps],
            "files": {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in self.files},
        }, indent=1, sort_keys=True)

    def present(self) -> bool:
        """Its outputs exist (maybe from an older recipe: usable, but build() redoes it)."""
        return all((self.dir / output).exists() for output in self.outputs)

    def cached(self) -> bool:
        stamp = self.dir / self.STAMP
        return self.present() and stamp.exists() and stamp.read_text() == self.recipe()

    @property
    def log(self) -> Path:
        return CACHE / "logs" / f"{self.name}-{self.version}.log"

    def build(self, out: TextIO) -> None:
        """Build into a temp dir next to the cache dir, then swap it into place."""
        log = self.log
        log.parent.mkdir(exist_ok=True)
        log.write_text("")
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{self.name}-", dir=CACHE))
        old = tmp.with_name(tmp.name + ".old")
        try:
            for file in self.files:
                shutil.copy(file, tmp / file.name)
            for step in self.steps:
                step.run(tmp, log, out)
            missing = [o for o in self.outputs if not (tmp / o).exists()]
            if missing:
                raise PartFailed(_with_tail(f"{self.name}: the build made no {missing}", log))
            (tmp / self.STAMP).write_text(self.recipe())
            tmp.chmod(0o755)  # mkdtemp makes it private
            if self.dir.exists():  # a partial or older copy: move it aside, then swap
                self.dir.rename(old)
            tmp.rename(self.dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)


# Static Go binaries, as the projects release them: no C toolchain needed.
GO_ENV = (("CGO_ENABLED", "0"),)


def _go_build(label: str, module_dir: str, package: str, binary_name: str,
              ldflags: str = "-s -w") -> Step:
    return Step(label, ("go", "build", "-trimpath", "-ldflags", ldflags, "-o",
                        f"{{out}}/bin/{binary_name}", package), TOOLS / module_dir, GO_ENV)


def _kubernetes() -> Tool:
    version = k8s_version()
    commands = ("kube-apiserver", "kube-controller-manager", "kubectl")
    return Tool("kubernetes", version, tuple(f"bin/{c}" for c in commands), tuple(
        _go_build(f"go build {c}", "kubernetes", f"k8s.io/kubernetes/cmd/{c}", c,
                  _k8s_ldflags(version))
        for c in commands))


def _k8s_ldflags(version: str) -> str:
    """What the release build stamps in, so `kubectl version` and /version tell the truth."""
    return (f"-s -w -X k8s.io/component-base/version.gitVersion={version} "
            f"-X k8s.io/component-base/version.gitMajor=1 "
            f"-X k8s.io/component-base/version.gitMinor={version.split('.')[1]} "
            f"-X k8s.io/component-base/version.gitTreeState=clean")


def _kubernetes_node() -> Tool:
    """What a real node needs, from the same module as the API server: kubelet,
    kube-scheduler, kube-proxy, and the sandbox's pause binary (pause.c ships in the
    module; compiled statically it is a one-file image, as no pause image can be pulled)."""
    version = k8s_version()
    commands = ("kubelet", "kube-scheduler", "kube-proxy")
    return Tool("kubernetes-node", version, (*(f"bin/{c}" for c in commands), "bin/pause"), (
        *(_go_build(f"go build {c}", "kubernetes", f"k8s.io/kubernetes/cmd/{c}", c,
                    _k8s_ldflags(version)) for c in commands),
        Step("gcc pause", ("sh", "-c", "go mod download k8s.io/kubernetes && "
                           "gcc -Os -Wall -Werror -static "
                           f"-DVERSION={version}-replication-operator -o {{out}}/bin/pause "
                           f"\"$(go list -m -f '{{{{.Dir}}}}' k8s.io/kubernetes)\"/"
                           "build/pause/linux/pause.c"), TOOLS / "kubernetes"),
    ))


def _helm() -> Tool:
    version = go_module_version("helm", "helm.sh/helm/v3")
    kube_minor = go_module_version("helm", "k8s.io/client-go").split(".")[1]
    # as helm's Makefile does; without them `helm version` says v3.21 and `helm template`
    # assumes Kubernetes 1.20, refusing charts with a newer kubeVersion
    ldflags = " ".join([
        "-s -w", f"-X helm.sh/helm/v3/internal/version.version={version}",
        "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
        *(f"-X helm.sh/helm/v3/pkg/{pkg}.k8sVersion{part}={value}"
          for pkg in ("lint/rules", "chartutil")
          for part, value in (("Major", "1"), ("Minor", kube_minor)))])
    return Tool("helm", version, ("bin/helm",),
                (_go_build("go build helm", "helm", "helm.sh/helm/v3/cmd/helm", "helm", ldflags),))


def _reductstore() -> Tool:
    # --no-default-features drops the web console (downloaded at build time, which
    # fails offline); fs-backend is a default feature the server needs, so it is named.
    return Tool("reductstore", REDUCTSTORE_VERSION, ("bin/reductstore",), (Step(
        "cargo install reductstore",
        ("cargo", "install", "reductstore", "--version", REDUCTSTORE_VERSION,
         "--no-default-features", "--features", "fs-backend", "--locked", "--root", "{out}"),
        ROOT),))


def _pouchdb() -> Tool:
    # --ignore-scripts: leveldown loads its bundled prebuild; only --sqlite needs a build
    pinned = ROOT / "dev" / "pouchdb"
    return Tool("pouchdb-server", POUCHDB_VERSION, ("node_modules/.bin/pouchdb-server",),
                (Step("npm ci pouchdb-server",
                      ("npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"),
                      Path("{out}")),),
                files=(pinned / "package.json", pinned / "package-lock.json"))


def _distribution() -> Tool:
    """A plain container registry (Distribution's `registry`) and an htpasswd helper for
    its basic auth: the registry Harbor policies replicate to in the tests and demo."""
    version = go_module_version("distribution", "github.com/distribution/distribution/v3")
    return Tool("distribution", version, ("bin/registry", "bin/htpasswd"), (
        _go_build("go build registry", "distribution",
                  "github.com/distribution/distribution/v3/cmd/registry", "registry"),
        _go_build("go build htpasswd", "distribution", "./htpasswd", "htpasswd")))


def tools() -> dict[str, Tool]:
    etcd = Tool("etcd", go_module_version("etcd", "go.etcd.io/etcd/server/v3"), ("bin/etcd",),
                (_go_build("go build etcd", "etcd", ".", "etcd"),))
    return {tool.name: tool for tool in
            (etcd, _kubernetes(), _kubernetes_node(), _helm(), _pouchdb(), _reductstore(),
             _distribution())}


ALIASES = {"pouchdb": "pouchdb-server", "k8s": "kubernetes", "node": "kubernetes-node"}


def binary(tool: str, name: str) -> Path:
    """Path of an executable in the cache (it may not be built yet)."""
    target = tools()[ALIASES.get(tool, tool)]
    if target.name == "pouchdb-server":
        return target.dir / "node_modules" / ".bin" / "pouchdb-server"
    return target.dir / "bin" / name


@contextlib.contextmanager
def _build_lock(out: TextIO) -> Iterator[None]:
    """One build at a time per cache (dev/build-tools and a pytest session may overlap)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".build.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("[build] another build holds the cache lock; waiting", file=out, flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _remove_stale_temp_dirs() -> None:
    """Temp dirs of builds that were killed (only called while holding the lock)."""
    for stale in CACHE.glob(".build-*"):
        shutil.rmtree(stale, ignore_errors=True)


def build(only: list[str] | None = None, out: TextIO | None = None) -> None:
    """Build every missing part into the cache, one line per step with its duration."""
    out = out or sys.stdout
    wanted = [ALIASES.get(name, name) for name in only or []]
    known = tools()
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise PartFailed(f"unknown part(s) {unknown}; known: {sorted(known)}")
    with _build_lock(out):
        _remove_stale_temp_dirs()
        for tool in known.values():
            if wanted and tool.name not in wanted:
                continue
            label = f"[build] {tool.name} {tool.version}"
            if tool.cached():
                with timed(f"{label}: cached", out):
                    pass
                continue
            print(f"{label}: building (log {tool.log})", file=out, flush=True)
            with timed(f"{label}: done", out):
                tool.build(out)


# ---------------------------------------------------------------------------- parts


@dataclass
class Part:
    """One background process with a health check; stop()/start() keep port and data."""

    name: str
    workdir: Path
    port: int = field(default_factory=free_port)
    pid: int | None = None
    # the address it listens on: loopback, or the node's host address (dev/node.py) for
    # the parts pods must reach
    host: str = LOOPBACK
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    start_timeout: float = field(default=60, repr=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return {}

    def healthy(self) -> bool:
        """True once the part answers its health check (may raise while starting)."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Write config files before the first start (idempotent)."""

    def start(self, timeout: float | None = None) -> None:
        """Start in the background and wait until healthy; a no-op when already running."""
        if self.alive():
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        command = self.command()
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- {time.strftime('%H:%M:%S')} starting "
                      f"{shlex.join(command)}\n".encode())
            log.flush()
            try:
                self._proc = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                    env={**os.environ, **self.environment()}, start_new_session=True)
            except OSError as exc:
                raise PartFailed(_with_tail(f"{self.name}: cannot run {command[0]}: {exc} "
                                            "(run dev/build-tools?)", self.log_path)) from exc
        self.pid = self._proc.pid
        try:
            wait_until(self.healthy, timeout=timeout or self.start_timeout,
                       what=f"{self.name} on {self.host}:{self.port}", alive=self.alive,
                       log=self.log_path)
        except BaseException:
            self.stop()
            raise

    def alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self.pid is not None and _pid_alive(self.pid) and self._owns(self.pid)

    def healthy_now(self) -> bool:
        with contextlib.suppress(Exception):
            return self.alive() and self.healthy()
        return False

    def _owns(self, pid: int) -> bool:
        """Whether `pid` still runs our binary (a recorded PID may have been reused)."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return False
        return self.command()[0] in cmdline

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, then SIGKILL after `timeout`; a no-op when not running."""
        if self.pid is not None and (self._proc is not None or self._owns(self.pid)):
            _terminate(self.pid, timeout)
        if self._proc is not None:
            with contextlib.suppress(Exception):
                self._proc.wait(timeout=5)
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
    with contextlib.suppress(OSError, ValueError, IndexError):
        # a zombie still "exists"; its state in /proc says it is dead
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _signal(pid: int, sig: int) -> None:
    """Signal the process group if `pid` leads one (our parts do), else the process."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM, SIGKILL after `timeout`; returns once the process is gone (ports free)."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        _signal(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _pid_alive(pid):
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
            time.sleep(0.1)
        if not _pid_alive(pid):
            return


def http_json(url: str, headers: dict[str, str] | None = None,
              context: ssl.SSLContext | None = None) -> Any:
    """GET `url`; the decoded JSON body (raises on a non-2xx answer)."""
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=2, context=context) as response:
        body = response.read()
    return json.loads(body) if body.strip().startswith((b"{", b"[")) else body.decode()


@dataclass
class Etcd(Part):
    peer_port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        peer = f"http://{self.host}:{self.peer_port}"
        return [str(binary("etcd", "etcd")), "--name", "default",
                "--data-dir", str(self.workdir / "etcd-data"),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"default={peer}", "--log-level", "warn"]

    def healthy(self) -> bool:
        return bool(http_json(f"{self.url}/health").get("health") == "true")


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise PartFailed(f"openssl {args[0]} failed: {result.stderr.strip()}")


def issue_cert(pki: Path, name: str, subject: str, *, server_ips: Sequence[str] = (),
               server_names: Sequence[str] = (), client: bool = False) -> None:
    """`name`.key/.crt signed by the dev CA in `pki`: a serving cert for the given IPs and
    names, and/or a client cert (subject CN = user, O = group)."""
    sans = [f"IP:{ip}" for ip in server_ips] + [f"DNS:{dns}" for dns in server_names]
    usages = (["serverAuth"] if sans else []) + (["clientAuth"] if client else [])
    ext = pki / f"{name}.ext"
    ext.write_text("[v3]\n" + (f"subjectAltName={','.join(sans)}\n" if sans else "")
                   + f"extendedKeyUsage={','.join(usages)}\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
             f"{name}.csr", "-subj", subject, cwd=pki)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "30", "-extfile", str(ext),
             "-extensions", "v3", cwd=pki)


def make_pki(pki: Path, server_ips: Sequence[str] = (LOOPBACK,)) -> None:
    """CA, the API server's serving cert for `server_ips`, admin client cert,
    service-account key pair."""
    if (pki / "sa.pub").exists():
        return
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.crt", "-days", "30", "-subj", "/CN=replication-operator-dev-ca", cwd=pki)
    issue_cert(pki, "apiserver", "/CN=kube-apiserver", server_ips=server_ips,
               server_names=("localhost", "kubernetes", "kubernetes.default",
                             "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"))
    # system:masters is the admin group the API server authorizes before RBAC
    issue_cert(pki, "admin", "/O=system:masters/CN=dev-admin", client=True)
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
    path.chmod(0o600)


@dataclass
class KubeAPIServer(Part):
    etcd_url: str = ""
    service_cidr: str = SERVICE_CIDR
    # a real node registers (dev/node.py): the Node authorizer and NodeRestriction, and a
    # client certificate to reach the kubelets (logs, exec)
    node: bool = False
    start_timeout: float = field(default=120, repr=False)

    @property
    def service_ip(self) -> str:
        """The first address of the service range: the `kubernetes` Service's ClusterIP."""
        return str(next(ipaddress.ip_network(self.service_cidr).hosts()))

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    def prepare(self) -> None:
        make_pki(self.pki, server_ips=sorted({LOOPBACK, self.host, self.service_ip}))
        write_kubeconfig(self.kubeconfig, self.url, self.pki)

    def command(self) -> list[str]:
        pki = self.pki
        return [str(binary("kubernetes", "kube-apiserver")),
                "--etcd-servers", self.etcd_url, "--etcd-prefix", "/registry",
                "--bind-address", self.host, "--advertise-address", self.host,
                "--secure-port", str(self.port),
                "--tls-cert-file", str(pki / "apiserver.crt"),
                "--tls-private-key-file", str(pki / "apiserver.key"),
                "--client-ca-file", str(pki / "ca.crt"),
                "--authorization-mode", "Node,RBAC" if self.node else "RBAC",
                "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                "--service-account-key-file", str(pki / "sa.pub"),
                "--service-account-signing-key-file", str(pki / "sa.key"),
                "--service-cluster-ip-range", self.service_cidr,
                "--cert-dir", str(self.workdir / "certs"),
                # fewer moving parts on 2 cores; nothing here tests fairness or profiling
                "--enable-priority-and-fairness=false", "--profiling=false",
                "--allow-privileged=true", "--v=1", *self._node_flags()]

    def _node_flags(self) -> list[str]:
        if not self.node:
            return []
        pki = self.pki
        return ["--enable-admission-plugins", "NodeRestriction",
                "--kubelet-client-certificate", str(pki / "admin.crt"),
                "--kubelet-client-key", str(pki / "admin.key"),
                "--kubelet-certificate-authority", str(pki / "ca.crt"),
                "--kubelet-preferred-address-types", "InternalIP"]

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return context

    def healthy(self) -> bool:
        return bool(http_json(f"{self.url}/readyz", context=self.ssl_context()) == "ok")


@dataclass
class ControllerManager(Part):
    apiserver: KubeAPIServer | None = None
    start_timeout: float = field(default=90, repr=False)

    # The controllers a control plane without nodes needs: namespace deletion, owner
    # reference garbage collection, service accounts and their tokens, RBAC aggregation.
    CONTROLLERS = ("namespace-controller", "garbage-collector-controller",
                   "serviceaccount-controller", "serviceaccount-token-controller",
                   "clusterrole-aggregation-controller",
                   "root-ca-certificate-publisher-controller")
    # and what running pods on a node needs: Deployments, their ReplicaSets, Services'
    # endpoints (kube-proxy, the cluster DNS), PodDisruptionBudgets, finished pods
    NODE_CONTROLLERS = ("deployment-controller", "replicaset-controller",
                        "endpointslice-controller", "endpoints-controller",
                        "disruption-controller", "pod-garbage-collector-controller",
                        # takes the not-ready taint off a node once it is Ready
                        "node-lifecycle-controller")
    node: bool = False

    def command(self) -> list[str]:
        assert self.apiserver is not None
        kubeconfig, pki = str(self.apiserver.kubeconfig), self.apiserver.pki
        return [str(binary("kubernetes", "kube-controller-manager")),
                "--kubeconfig", kubeconfig, "--authentication-kubeconfig", kubeconfig,
                "--authorization-kubeconfig", kubeconfig,
                "--bind-address", self.host, "--secure-port", str(self.port),
                "--leader-elect=false", "--use-service-account-credentials=false",
                "--service-account-private-key-file", str(pki / "sa.key"),
                "--root-ca-file", str(pki / "ca.crt"),
                "--controllers", ",".join(self.CONTROLLERS
                                          + (self.NODE_CONTROLLERS if self.node else ())),
                "--cert-dir", str(self.workdir / "kcm-certs"), "--v=1"]

    def healthy(self) -> bool:
        context = ssl.create_default_context()
        context.check_hostname = False  # its self-signed serving cert
        context.verify_mode = ssl.CERT_NONE
        return bool(http_json(f"https://{self.host}:{self.port}/healthz",
                                  context=context) == "ok")


def basic_auth(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@dataclass
class PouchDB(Part):
    username: str = "admin"
    password: str = field(default_factory=lambda: secrets.token_hex(12))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

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
        return [str(binary("pouchdb", "pouchdb-server")), "-o", self.host, "-p",
                str(self.port), "-d", str(self.data_dir), "-c",
                str(self.data_dir / "config.json"), "-n", "--no-color"]

    def healthy(self) -> bool:
        """`GET /` answers, and the admin credentials work (the config has been read)."""
        welcome = http_json(f"{self.url}/")
        session = http_json(f"{self.url}/_session",
                            {"Authorization": basic_auth(self.username, self.password)})
        return bool(welcome.get("version")) and "_admin" in session["userCtx"]["roles"]


@dataclass
class ReductStore(Part):
    token: str = field(default_factory=lambda: secrets.token_hex(16))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def environment(self) -> dict[str, str]:
        return {"RS_DATA_PATH": str(self.workdir / f"{self.name}-data"),
                "RS_PORT": str(self.port), "RS_HOST": self.host,
                "RS_API_TOKEN": self.token, "RS_LOG_LEVEL": "WARN"}

    def command(self) -> list[str]:
        return [str(binary("reductstore", "reductstore"))]

    def healthy(self) -> bool:
        info = http_json(f"{self.url}/api/v1/info", {"Authorization": f"Bearer {self.token}"})
        return bool(info.get("version"))


@dataclass
class Simulator(Part):
    """A server simulator from tests/ (`python -m <module>`, tests/ on the path): it needs
    the project's virtualenv (starlette, uvicorn, httpx), which `make venv` / `make demo`
    create."""

    module: str = ""
    username: str = "admin"
    password: str = field(default_factory=lambda: secrets.token_hex(12))

    def environment(self) -> dict[str, str]:
        return {"PYTHONPATH": str(ROOT / "tests"),
                f"{self.module.upper()}_PASSWORD": self.password}

    def prepare(self) -> None:
        check = subprocess.run([self._python(), "-c", "import starlette, uvicorn, httpx"],
                               capture_output=True)
        if check.returncode != 0:
            raise PartFailed(f"{self.name}: the simulator tests/{self.module} needs the "
                             f"project's virtualenv; run `make venv` (or `make demo`) first")

    @staticmethod
    def _python() -> str:
        venv_python = ROOT / ".venv" / "bin" / "python"
        return str(venv_python) if venv_python.exists() else sys.executable

    def command(self) -> list[str]:
        return [self._python(), "-m", self.module, "--host", self.host,
                "--port", str(self.port), "--user", self.username, *self.options()]

    def options(self) -> list[str]:
        return []

    def _owns(self, pid: int) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False
        return f"\0-m\0{self.module}\0" in cmdline


@dataclass
class HarborSim(Simulator):
    """The Harbor API simulator (tests/harbor_sim): no Harbor can run here."""

    module: str = "harbor_sim"

    # Harbor closes executions up to 30 s after their tasks end; the dev stack keeps the
    # lag (the operator must cope with it) at a fifth of that
    STATUS_REFRESH_SECONDS = 6

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def options(self) -> list[str]:
        return ["--status-refresh-seconds", str(self.STATUS_REFRESH_SECONDS)]

    def healthy(self) -> bool:
        info = http_json(f"{self.url}/api/v2.0/systeminfo")
        http_json(f"{self.url}/api/v2.0/users/current",
                  {"Authorization": basic_auth(self.username, self.password)})
        return bool(info.get("harbor_version"))


@dataclass
class Distribution(Part):
    """A Distribution registry with htpasswd (bcrypt) basic auth: a plain registry for
    Harbor policies to replicate with, checked by the Harbor simulator as Harbor does
    (a real request to its /v2/ with the credential)."""

    username: str = "mirror"
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    # a second account, so a test can switch a credential to another one that works
    alt_username: str = "mirror-ci"
    alt_password: str = field(default_factory=lambda: secrets.token_hex(12))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / f"{self.name}-data"

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = []
        for user, password in ((self.username, self.password),
                               (self.alt_username, self.alt_password)):
            htpasswd = subprocess.run([str(binary("distribution", "htpasswd")), user],
                                      input=password + "\n", capture_output=True, text=True)
            if htpasswd.returncode != 0:
                raise PartFailed(f"{self.name}: htpasswd failed: {htpasswd.stderr.strip()}")
            lines.append(htpasswd.stdout)
        (self.data_dir / "htpasswd").write_text("".join(lines))
        # JSON is YAML: the registry reads this as its configuration file
        (self.data_dir / "config.yml").write_text(json.dumps({
            "version": 0.1, "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.data_dir / "storage")},
                        "delete": {"enabled": True}},
            "http": {"addr": f"{self.host}:{self.port}", "secret": secrets.token_hex(16)},
            "auth": {"htpasswd": {"realm": "dbops-dev",
                                  "path": str(self.data_dir / "htpasswd")}}}))

    def command(self) -> list[str]:
        return [str(binary("distribution", "registry")), "serve",
                str(self.data_dir / "config.yml")]

    def healthy(self) -> bool:
        """/v2/ refuses anonymous callers and lets the configured user in."""
        try:
            http_json(f"{self.url}/v2/")
            return False  # auth must be on
        except urllib.error.HTTPError as exc:
            if exc.code != 401:
                return False
        answer = http_json(f"{self.url}/v2/",
                           {"Authorization": basic_auth(self.username, self.password)})
        return bool(answer == {})


@dataclass
class EdenSim(Simulator):
    """The Sahana Eden simulator (tests/eden_sim): no Eden can run here. Two of them sync
    with each other through Eden's peer protocol."""

    module: str = "eden_sim"
    username: str = "admin@example.com"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/eden"

    def healthy(self) -> bool:
        """Eden's sync list answers, and the admin login works (the control API)."""
        listed = http_json(f"{self.url}/sync/repository.json")
        http_json(f"http://{self.host}:{self.port}/_sim/settings",
                  {"Authorization": basic_auth(self.username, self.password)})
        return isinstance(listed, list)


class Stack:
    """Every part, in one temp dir; parts start on demand, in dependency order.

    `host` is where the API server and the servers listen: loopback, or the host end of a
    real node's network (dev/node.py), where pods reach them; `node` turns on what a
    registered node needs in the control plane.
    """

    def __init__(self, workdir: Path | None = None, *, host: str = LOOPBACK,
                 service_cidr: str = SERVICE_CIDR, node: bool = False) -> None:
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
        self.harbor_a = HarborSim("harbor-a", self.workdir, password=password)
        self.harbor_b = HarborSim("harbor-b", self.workdir, password=password)
        self.registry = Distribution("registry", self.workdir)
        self.eden_a = EdenSim("eden-a", self.workdir, password=password)
        self.eden_b = EdenSim("eden-b", self.workdir, password=password)
        for part in self.parts():
            if part not in (self.etcd, self.controller_manager):  # only the API server uses
                part.host = host
        self.apiserver.service_cidr = service_cidr
        self.apiserver.node = self.controller_manager.node = node

    def parts(self) -> list[Part]:
        return [self.etcd, self.apiserver, self.controller_manager, self.couch_a,
                self.couch_b, self.reduct_a, self.reduct_b, self.harbor_a, self.harbor_b,
                self.registry, self.eden_a, self.eden_b]

    def start_part(self, part: Part, out: TextIO | None = None) -> None:
        """Start `part` (and what it depends on) unless it already runs."""
        if part in (self.apiserver, self.controller_manager):
            self.start_part(self.etcd, out)
            self.apiserver.etcd_url = self.etcd.url
        if part is self.controller_manager:
            self.start_part(self.apiserver, out)
        if part.alive():
            return
        if out is None:
            part.start()
            return
        with timed(f"[up] {part.name} on {part.host}:{part.port}", out):
            part.start()

    def start_control_plane(self, out: TextIO | None = None) -> None:
        self.start_part(self.controller_manager, out)

    def start_all(self, out: TextIO | None = None) -> None:
        for part in self.parts():
            self.start_part(part, out)

    def stop_all(self) -> None:
        for part in reversed(self.parts()):
            part.stop()

    def healthy(self) -> bool:
        return all(part.healthy_now() for part in self.parts())

    def bin_dir(self) -> Path:
        """A dir with just kubectl and helm, to put first on PATH."""
        path = self.workdir / "bin"
        path.mkdir(exist_ok=True)
        for tool, name in (("kubernetes", "kubectl"), ("helm", "helm")):
            link = path / name
            if not link.is_symlink():
                link.symlink_to(binary(tool, name))
        return path

    def env(self) -> dict[str, str]:
        """What `.dev/env` exports (dev-only credentials included)."""
        return {
            "KUBECONFIG": str(self.apiserver.kubeconfig),
            "PATH": f"{self.bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}",
            "COUCHDB_A_URL": self.couch_a.url, "COUCHDB_B_URL": self.couch_b.url,
            "COUCHDB_USER": self.couch_a.username, "COUCHDB_PASSWORD": self.couch_a.password,
            "REDUCTSTORE_A_URL": self.reduct_a.url, "REDUCTSTORE_B_URL": self.reduct_b.url,
            "REDUCTSTORE_TOKEN": self.reduct_a.token,
            "HARBOR_A_URL": self.harbor_a.url, "HARBOR_B_URL": self.harbor_b.url,
            "HARBOR_USER": self.harbor_a.username, "HARBOR_PASSWORD": self.harbor_a.password,
            "REGISTRY_URL": self.registry.url, "REGISTRY_USER": self.registry.username,
            "REGISTRY_PASSWORD": self.registry.password,
            "EDEN_A_URL": self.eden_a.url, "EDEN_B_URL": self.eden_b.url,
            "EDEN_USER": self.eden_a.username, "EDEN_PASSWORD": self.eden_a.password,
        }

    # -- persistence for dev/up and dev/down ------------------------------------

    SAVED = ("port", "pid", "peer_port", "etcd_url", "username", "password", "token",
             "alt_username", "alt_password", "host", "service_cidr", "node")

    def save(self, path: Path) -> None:
        """Ports, PIDs and credentials of every part, and the temp dir (mode 0600)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        parts = {p.name: {k: getattr(p, k) for k in self.SAVED if hasattr(p, k)}
                 for p in self.parts()}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"workdir": str(self.workdir), "parts": parts}, indent=2))
        tmp.chmod(0o600)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Stack:
        data = json.loads(path.read_text())
        stack = cls(Path(data["workdir"]))
        for part in stack.parts():
            for key, value in data["parts"].get(part.name, {}).items():
                if key in cls.SAVED:
                    setattr(part, key, value)
        return stack


# ---------------------------------------------------------------------------- commands


def running_stack(grace: float = 10) -> Stack | None:
    """The stack `dev/up` started, if every part is alive and (within `grace`) healthy."""
    if not STATE.exists():
        return None
    try:
        stack = Stack.load(STATE)
    except (ValueError, KeyError, OSError):
        return None
    if not all(part.alive() for part in stack.parts()):
        return None
    try:  # a busy machine may answer a health check late; that is not a broken stack
        wait_until(stack.healthy, timeout=grace, what="the running dev/up stack")
    except PartFailed:
        return None
    return stack


def write_env_file(stack: Stack, extra: dict[str, str] | None = None) -> None:
    ENV_FILE.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"export {key}={shlex.quote(value)}\n"
             for key, value in {**stack.env(), **(extra or {})}.items()]
    ENV_FILE.write_text("# written by dev/up; dev-only credentials\n" + "".join(lines))
    ENV_FILE.chmod(0o600)


def up(out: TextIO | None = None) -> Stack:
    """Start everything unless a healthy `dev/up` stack runs; record it in .dev/."""
    out = out or sys.stdout
    stack = running_stack()
    if stack is not None:
        print(f"[up] already running and healthy ({STATE}); nothing to do", file=out)
        return stack
    down(quiet=True)  # whatever is left of a broken stack
    stack = Stack()
    try:
        with timed("[up] all parts healthy", out):
            stack.start_all(out)
    except BaseException:
        stack.stop_all()
        shutil.rmtree(stack.workdir, ignore_errors=True)
        raise
    stack.save(STATE)
    write_env_file(stack)
    print(f"[up] ready: source {ENV_FILE}  (stop with dev/down)", file=out)
    return stack


def _stop_operator() -> None:
    """The operator dev/demo started (its PID file), if it still is that operator."""
    pid_file = STATE_DIR / "operator.pid"
    if not pid_file.exists():
        return
    with contextlib.suppress(ValueError, OSError):
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"replication_operator" in cmdline:
            _terminate(pid, 10)
    pid_file.unlink(missing_ok=True)
    (STATE_DIR / "operator.ports").unlink(missing_ok=True)


def down(quiet: bool = False, out: TextIO | None = None) -> None:
    """Stop exactly the processes dev/up recorded and remove their temp dir."""
    out = out or sys.stdout
    if not STATE.exists():
        if not quiet:
            print("[down] nothing running", file=out)
        return
    stack = Stack.load(STATE)
    with timed(f"[down] stopped and removed {stack.workdir}", out):
        _stop_operator()
        if stack.apiserver.node:  # dev/up --node: pods, node and its network first
            import node  # dev/node.py (imports this module)
            node.down(stack, out)
        stack.stop_all()
        if stack.workdir.name.startswith("replication-operator-"):  # never a user's dir
            shutil.rmtree(stack.workdir, ignore_errors=True)
        STATE.unlink(missing_ok=True)
        ENV_FILE.unlink(missing_ok=True)


def status() -> int:
    if not STATE.exists():
        print("not running")
        return 1
    stack = Stack.load(STATE)
    for part in stack.parts():
        state = "healthy" if part.healthy_now() else "alive" if part.alive() else "DEAD"
        print(f"{part.name:24s} pid {part.pid} {part.host}:{part.port} {state}")
    return 0 if stack.healthy() else 1


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "up"
    try:
        if command == "build":
            with timed("[build] total"):
                build(argv[2:] or None)
        elif command == "up":
            with timed("[build] total"):
                build()
            up()
        elif command == "down":
            down()
        elif command == "status":
            return status()
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except PartFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
