#!/usr/bin/env python3
"""A real Kubernetes node on this machine: the chart's pods run for real.

kubelet, kube-scheduler and kube-proxy come from the same kubernetes module as the API
server (the `kubernetes-node` part of dev/build-tools); containerd, runc and the CNI
plugins from Debian. One node per machine (kube-proxy owns its iptables chains), root
only. Used by `dev/up --node` and the tests in tests/node/.

The network (the hard rule: nothing is ever routed off the machine)
--------------------------------------------------------------------
Every cluster address lies in 10.244.0.0/16, and that range is made local first: a
blackhole route on the host, before anything starts. The node lives in its own network
namespace (`dbops-node`), joined to the host by one veth pair:

    host  10.244.0.1/30 (dbops-h)  <->  10.244.0.2/30 (dbops-n)  node namespace
                                         bridge dbops-pods 10.244.1.1/24: pods
                                         services 10.244.128.0/24 (kube-proxy's DNAT)

The API server and every server the pods use listen on 10.244.0.1 (the `kubernetes`
Service refuses loopback endpoints, and a pod's 127.0.0.1 is the pod). The host routes
the pod and service ranges to the node's end of the veth; all else in the range hits the
blackhole. The node namespace has no default route, so neither it nor a pod can send a
packet anywhere but to these addresses ("Network is unreachable"); its FORWARD chain
drops anything addressed outside the range as well. `check_network()` proves it with
`ip route get` before the first process starts.

kubelet, containerd, kube-proxy and the cluster DNS (dev/cluster_dns.py) run inside the
namespace through `nsenter --net` (not `ip netns exec`, which would give them a private
mount namespace: containerd must see the volumes kubelet mounts). The namespace holds
containerd's pod namespaces (under its state dir), the bridge and kube-proxy's rules, so
deleting it removes them all; the host keeps three routes, removed by `down()`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from harness import PartFailed, timed

NETNS = "dbops-node"
NETNS_PATH = Path("/run/netns") / NETNS
HOST_IF, NODE_IF = "dbops-h", "dbops-n"
CLUSTER_RANGE = "10.244.0.0/16"
HOST_IP, NODE_IP = "10.244.0.1", "10.244.0.2"
LINK = "10.244.0.0/30"
POD_CIDR, POD_GATEWAY, BRIDGE = "10.244.1.0/24", "10.244.1.1", "dbops-pods"
SERVICE_CIDR = "10.244.128.0/24"
NODE_NAME = "dbops-node"
CLUSTER_DOMAIN = "cluster.local"
CNI_BIN = Path("/usr/lib/cni")
# one node per machine: who has it (a JSON file naming the stack's workdir)
CLAIM = Path("/run/replication-operator-node.json")


def _run(*cmd: str, check: bool = True, netns: bool = False) -> subprocess.CompletedProcess[str]:
    if netns:
        cmd = ("nsenter", f"--net={NETNS_PATH}", "--", *cmd)
    result = subprocess.run(cmd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise PartFailed(f"{' '.join(cmd)} failed (exit {result.returncode}): "
                         f"{(result.stderr or result.stdout).strip()}")
    return result


def require_root() -> None:
    if os.geteuid() != 0:
        raise PartFailed("a real node needs root (network namespaces, mounts, cgroups)")
    missing = [c for c in ("ip", "iptables", "nsenter", "containerd", "ctr", "runc")
               if shutil.which(c) is None]
    if missing or not (CNI_BIN / "bridge").exists():
        raise PartFailed(f"missing {', '.join(missing) or 'CNI plugins'}: apt-get install "
                         "containerd runc containernetworking-plugins iptables (.ci/run)")


def stack_for_node(workdir: Path | None = None) -> harness.Stack:
    """A harness stack whose API server and servers listen where pods reach them."""
    return harness.Stack(workdir, host=HOST_IP, service_cidr=SERVICE_CIDR, node=True)


# --------------------------------------------------------------------------- network


def network_up() -> None:
    """The range made local, the namespace and the veth, the routes; then checked."""
    _run("ip", "route", "replace", "blackhole", CLUSTER_RANGE)  # first of all
    if not NETNS_PATH.exists():
        _run("ip", "netns", "add", NETNS)
    if _run("ip", "link", "show", HOST_IF, check=False).returncode != 0:
        _run("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NODE_IF,
             "netns", NETNS)
    _run("ip", "addr", "replace", f"{HOST_IP}/30", "dev", HOST_IF)
    _run("ip", "link", "set", HOST_IF, "up")
    for cmd in (("ip", "link", "set", "lo", "up"),
                ("ip", "addr", "replace", f"{NODE_IP}/30", "dev", NODE_IF),
                ("ip", "link", "set", NODE_IF, "up"),
                ("ip", "route", "replace", "blackhole", CLUSTER_RANGE),
                ("sysctl", "-qw", "net.ipv4.ip_forward=1"),
                ("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")):
        _run(*cmd, netns=True)
    if _run("iptables", "-C", "FORWARD", "!", "-d", CLUSTER_RANGE, "-j", "DROP",
            check=False, netns=True).returncode != 0:
        _run("iptables", "-I", "FORWARD", "!", "-d", CLUSTER_RANGE, "-j", "DROP", netns=True)
    for cidr in (POD_CIDR, SERVICE_CIDR):
        _run("ip", "route", "replace", cidr, "via", NODE_IP, "dev", HOST_IF)
    check_network()


def check_network() -> None:
    """No cluster address leaves the machine, and the namespace has no way out."""
    for address, expected in ((NODE_IP, f"dev {HOST_IF}"), ("10.244.1.7", f"via {NODE_IP}"),
                              ("10.244.128.9", f"via {NODE_IP}"), ("10.244.77.1", "blackhole"),
                              ("10.244.255.254", "blackhole")):
        route = _run("ip", "route", "get", address, check=False)
        text = route.stdout + route.stderr
        # the kernel answers a lookup that ends in a blackhole with EINVAL
        dropped = route.returncode != 0 and "Invalid argument" in text
        if expected not in text and not (expected == "blackhole" and dropped):
            raise PartFailed(f"host route to {address} is not '{expected}': {text.strip()}")
    for address in ("1.1.1.1", "192.168.0.1", "10.0.0.1"):
        route = _run("ip", "route", "get", address, check=False, netns=True)
        if route.returncode == 0 and "unreachable" not in route.stdout:
            raise PartFailed(f"the node namespace has a route to {address}: {route.stdout}")


def network_down() -> None:
    for cidr in (POD_CIDR, SERVICE_CIDR):
        _run("ip", "route", "del", cidr, check=False)
    _run("ip", "link", "del", HOST_IF, check=False)  # both ends of the pair
    if NETNS_PATH.exists():
        _run("ip", "netns", "del", NETNS, check=False)
    _run("ip", "route", "del", "blackhole", CLUSTER_RANGE, check=False)


# ----------------------------------------------------------------------------- parts


@dataclass
class InNamespace(harness.Part):
    """A process inside the node's network namespace."""

    def program(self) -> list[str]:
        raise NotImplementedError

    def command(self) -> list[str]:
        return ["nsenter", f"--net={NETNS_PATH}", "--", *self.program()]

    def _owns(self, pid: int) -> bool:  # nsenter execs the program: its cmdline is the program's
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return False
        return self.program()[0] in cmdline


@dataclass
class Containerd(InNamespace):
    registry: str = ""      # host:port of the registry pods pull from (plain HTTP)
    sandbox_image: str = ""

    @property
    def dir(self) -> Path:
        return self.workdir / "containerd"

    @property
    def socket(self) -> Path:
        return self.dir / "containerd.sock"

    def prepare(self) -> None:
        cni = self.workdir / "cni"
        (cni / "net.d").mkdir(parents=True, exist_ok=True)
        (cni / "net.d" / "10-dbops.conflist").write_text(json.dumps(cni_config(cni)))
        self.dir.mkdir(parents=True, exist_ok=True)
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        (self.dir / "config.toml").write_text("\n".join([
            "version = 2",
            f'root = "{self.dir / "root"}"',
            f'state = "{self.dir / "state"}"',
            f'[grpc]\n  address = "{self.socket}"',
            f'[ttrpc]\n  address = "{self.dir / "ttrpc.sock"}"',
            f"[{cri}]",
            f'  sandbox_image = "{self.sandbox_image}"',
            # no CAP_SYS_RESOURCE here: a negative oom_score_adj makes runc fail
            "  restrict_oom_score_adj = true",
            "  netns_mounts_under_state_dir = true",
            f"[{cri}.containerd]",
            '  snapshotter = "overlayfs"',
            '  default_runtime_name = "runc"',
            f"[{cri}.containerd.runtimes.runc]",
            '  runtime_type = "io.containerd.runc.v2"',
            f"[{cri}.containerd.runtimes.runc.options]",
            "  SystemdCgroup = false",  # PID 1 is not systemd: cgroupfs
            f"[{cri}.cni]",
            f'  bin_dir = "{CNI_BIN}"',
            f'  conf_dir = "{cni / "net.d"}"',
            f'[{cri}.registry.mirrors."{self.registry}"]',
            f'  endpoint = ["http://{self.registry}"]',
            ""]))

    def program(self) -> list[str]:
        return ["containerd", "--config", str(self.dir / "config.toml")]

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run("ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args,
                    check=check)

    def healthy(self) -> bool:
        return self.ctr("version", check=False).returncode == 0


def cni_config(cni_dir: Path) -> dict[str, Any]:
    """A bridge with host-local addresses; pods route only the cluster range (no default
    route, no masquerade)."""
    return {"cniVersion": "1.0.0", "name": "dbops-pods", "plugins": [{
        "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
        "hairpinMode": True,
        "ipam": {"type": "host-local", "dataDir": str(cni_dir / "ipam"),
                 "ranges": [[{"subnet": POD_CIDR, "gateway": POD_GATEWAY}]],
                 "routes": [{"dst": CLUSTER_RANGE}]}}]}


@dataclass
class ClusterDNS(InNamespace):
    apiserver: harness.KubeAPIServer | None = None

    def program(self) -> list[str]:
        assert self.apiserver is not None
        pki = self.apiserver.pki
        return [sys.executable, str(harness.ROOT / "dev" / "cluster_dns.py"),
                "--listen", NODE_IP, "--api", self.apiserver.url, "--ca", str(pki / "ca.crt"),
                "--cert", str(pki / "admin.crt"), "--key", str(pki / "admin.key"),
                "--domain", CLUSTER_DOMAIN]

    def _owns(self, pid: int) -> bool:
        try:
            return b"cluster_dns.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False

    def healthy(self) -> bool:
        return resolve(f"kubernetes.default.svc.{CLUSTER_DOMAIN}") is not None


def resolve(name: str, server: str = NODE_IP, timeout: float = 2) -> str | None:
    """An A query to the cluster DNS (from the host): the address, or None."""
    query = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    query += struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(query, (server, 53))
        reply = sock.recv(512)
    if struct.unpack("!H", reply[6:8])[0] == 0:
        return None
    return str(ipaddress.IPv4Address(reply[-4:]))


@dataclass
class Kubelet(InNamespace):
    apiserver: harness.KubeAPIServer | None = None
    containerd: Containerd | None = None
    start_timeout: float = field(default=120, repr=False)

    @property
    def dir(self) -> Path:
        return self.workdir / "kubelet"

    def prepare(self) -> None:
        assert self.apiserver is not None and self.containerd is not None
        pki = self.apiserver.pki
        if not (pki / "node.crt").exists():
            harness.issue_cert(pki, "node", f"/O=system:nodes/CN=system:node:{NODE_NAME}",
                               client=True)
            harness.issue_cert(pki, "kubelet-serving", f"/CN={NODE_NAME}",
                               server_ips=(NODE_IP,), server_names=(NODE_NAME,))
        self.dir.mkdir(parents=True, exist_ok=True)
        kubeconfig = self.dir / "kubeconfig"
        harness.write_kubeconfig(kubeconfig, self.apiserver.url, pki)
        config = json.loads(kubeconfig.read_text())
        config["users"][0]["user"] = {"client-certificate": str(pki / "node.crt"),
                                      "client-key": str(pki / "node.key")}
        kubeconfig.write_text(json.dumps(config))
        # JSON is YAML: kubelet reads this as its configuration file
        (self.dir / "config.yaml").write_text(json.dumps({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": NODE_IP, "port": 10250, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
            "tlsCertFile": str(pki / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
            "authentication": {"anonymous": {"enabled": False},
                               "webhook": {"enabled": False},
                               "x509": {"clientCAFile": str(pki / "ca.crt")}},
            "authorization": {"mode": "AlwaysAllow"},  # only the API server gets in (x509)
            # this VM: cgroup v1 (deprecated in 1.35, refused unless allowed), no systemd
            "failCgroupV1": False, "cgroupDriver": "cgroupfs", "failSwapOn": False,
            # the host's resolver is off the machine: pods get the cluster DNS only
            "resolvConf": "", "clusterDNS": [NODE_IP], "clusterDomain": CLUSTER_DOMAIN,
            "containerRuntimeEndpoint": f"unix://{self.containerd.socket}",
            "podLogsDir": str(self.workdir / "pod-logs"), "podCIDR": POD_CIDR,
            "maxPods": 40, "serializeImagePulls": False,
            # a build machine's disk is full of caches: no eviction, no image GC
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
            "nodeStatusUpdateFrequency": "5s", "syncFrequency": "10s",
        }))

    def program(self) -> list[str]:
        return [str(harness.binary("kubernetes-node", "kubelet")),
                "--config", str(self.dir / "config.yaml"),
                "--kubeconfig", str(self.dir / "kubeconfig"),
                "--root-dir", str(self.dir / "root"), "--cert-dir", str(self.dir / "pki"),
                "--hostname-override", NODE_NAME, "--node-ip", NODE_IP, "--v=1"]

    def healthy(self) -> bool:
        assert self.apiserver is not None
        node = harness.http_json(f"{self.apiserver.url}/api/v1/nodes/{NODE_NAME}",
                                 context=self.apiserver.ssl_context())
        return any(c["type"] == "Ready" and c["status"] == "True"
                   for c in node["status"].get("conditions", []))


@dataclass
class KubeProxy(InNamespace):
    apiserver: harness.KubeAPIServer | None = None

    def prepare(self) -> None:
        assert self.apiserver is not None
        (self.workdir / "kube-proxy.yaml").write_text(json.dumps({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.apiserver.kubeconfig)},
            "mode": "iptables", "hostnameOverride": NODE_NAME, "bindAddress": NODE_IP,
            "healthzBindAddress": "127.0.0.1:10256", "metricsBindAddress": "127.0.0.1:10249",
            "clusterCIDR": POD_CIDR, "nodePortAddresses": [f"{NODE_IP}/32"],
            # zeros: kube-proxy leaves the kernel's (machine-wide) conntrack sysctls alone
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                          "tcpCloseWaitTimeout": "0s"},
            # masqueradeAll: a pod reaching a Service backed by a pod on the same bridge
            # gets its answer back through the node, not straight from the other pod
            "iptables": {"masqueradeAll": True, "localhostNodePorts": False,
                         "syncPeriod": "10s", "minSyncPeriod": "0s"},
        }))

    def program(self) -> list[str]:
        return [str(harness.binary("kubernetes-node", "kube-proxy")),
                "--config", str(self.workdir / "kube-proxy.yaml"), "--v=1"]

    def healthy(self) -> bool:
        rules = _run("iptables", "-t", "nat", "-S", "KUBE-SERVICES", check=False, netns=True)
        return "default/kubernetes" in rules.stdout


@dataclass
class Scheduler(harness.Part):
    apiserver: harness.KubeAPIServer | None = None

    def command(self) -> list[str]:
        assert self.apiserver is not None
        kubeconfig = str(self.apiserver.kubeconfig)
        return [str(harness.binary("kubernetes-node", "kube-scheduler")),
                "--kubeconfig", kubeconfig, "--authentication-kubeconfig", kubeconfig,
                "--authorization-kubeconfig", kubeconfig, "--leader-elect=false",
                "--bind-address", harness.LOOPBACK, "--secure-port", str(self.port), "--v=1"]

    def healthy(self) -> bool:
        context = ssl.create_default_context()
        context.check_hostname = False  # its self-signed serving cert
        context.verify_mode = ssl.CERT_NONE
        return bool(harness.http_json(f"https://{harness.LOOPBACK}:{self.port}/healthz",
                                      context=context) == "ok")


# ------------------------------------------------------------------------------ node


class Node:
    """The node of one harness stack: claim, network, processes, teardown."""

    def __init__(self, stack: harness.Stack) -> None:
        if stack.apiserver.host != HOST_IP or not stack.apiserver.node:
            raise PartFailed("the node needs a stack made by node.stack_for_node()")
        self.stack = stack
        self.workdir = stack.workdir / "node"
        api = stack.apiserver
        self.containerd = Containerd("containerd", self.workdir)
        self.dns = ClusterDNS("cluster-dns", self.workdir, apiserver=api)
        self.kubelet = Kubelet("kubelet", self.workdir, apiserver=api,
                               containerd=self.containerd)
        self.proxy = KubeProxy("kube-proxy", self.workdir, apiserver=api)
        self.scheduler = Scheduler("kube-scheduler", self.workdir, apiserver=api)

    def parts(self) -> list[harness.Part]:
        """In start order: kube-proxy waits for its Node, the DNS for the Service list."""
        return [self.containerd, self.scheduler, self.kubelet, self.proxy, self.dns]

    # -- claim ----------------------------------------------------------------------

    def claim(self) -> None:
        """Take the machine's one node slot; a slot left by a dead stack is cleaned."""
        require_root()
        if CLAIM.exists():
            with contextlib.suppress(ValueError, OSError):
                other = json.loads(CLAIM.read_text())
                if other.get("workdir") != str(self.stack.workdir):
                    pid = other.get("apiserver_pid")
                    if pid and harness._pid_alive(int(pid)):
                        raise PartFailed(f"a node already runs on this machine (stack "
                                         f"{other['workdir']}); stop it first (dev/down)")
                    clean_leftovers(Path(other["workdir"]))
        CLAIM.write_text(json.dumps({"workdir": str(self.stack.workdir),
                                     "apiserver_pid": self.stack.apiserver.pid}))

    def release(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            if json.loads(CLAIM.read_text()).get("workdir") == str(self.stack.workdir):
                CLAIM.unlink()

    # -- up -------------------------------------------------------------------------

    def prepare_network(self) -> None:
        """Before the stack starts: its parts bind the host end of the veth."""
        self.claim()
        network_up()

    def start(self, registry: harness.Distribution, out: TextIO | None = None) -> None:
        """Containerd (pause image imported), scheduler, kube-proxy, DNS, kubelet; returns
        once the Node is Ready. The control plane and `registry` must run already."""
        out = out or sys.stdout
        self.claim()  # records the API server's PID
        pause = image_module().build_pause_image(harness.binary("kubernetes-node", "pause"))
        self.containerd.registry = f"{registry.host}:{registry.port}"
        self.containerd.sandbox_image = f"localhost/pause:{pause.stem.split('-')[1][:12]}"
        for part in self.parts():
            with timed(f"[node] {part.name}", out):
                part.start()
            if part is self.containerd:
                self.containerd.ctr("images", "import", "--base-name", "localhost/pause",
                                    "--digests", str(pause))
                self.containerd.ctr("images", "tag", "--force", _imported(self.containerd),
                                    self.containerd.sandbox_image)

    # -- down -----------------------------------------------------------------------

    def stop(self, out: TextIO | None = None) -> None:
        """Pods first (so CNI releases them), then the processes, mounts, cgroups,
        namespace and routes."""
        out = out or sys.stdout
        with timed("[node] stopped and cleaned", out):
            with contextlib.suppress(Exception):  # a node that never came up has no pods
                if self.kubelet.healthy():
                    self._delete_pods()
            for part in reversed(self.parts()):
                part.stop()
            clean_leftovers(self.stack.workdir)
            network_down()
            self.release()

    def _delete_pods(self, timeout: float = 60) -> None:
        """Every pod deleted at once through the API; wait for containerd to have no
        sandbox left (kubelet ran CNI DEL for each)."""
        env = {**os.environ, "KUBECONFIG": str(self.stack.apiserver.kubeconfig)}
        subprocess.run([str(harness.binary("kubernetes", "kubectl")), "delete", "pods",
                        "--all", "--all-namespaces", "--grace-period=1", "--wait=false"],
                       capture_output=True, env=env, timeout=60)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            listed = self.containerd.ctr("containers", "list", "--quiet", check=False)
            if listed.returncode != 0 or not listed.stdout.strip():
                return
            time.sleep(0.5)


def _imported(containerd: Containerd) -> str:
    """The name ctr gave the image it just imported (the only one with that base)."""
    names = containerd.ctr("images", "list", "--quiet").stdout.split()
    candidates = [n for n in names if n.startswith("localhost/pause") and "@" in n]
    if not candidates:
        raise PartFailed(f"the pause image did not import: {names}")
    return candidates[0]


def image_module() -> Any:
    import image  # dev/image.py: podman and mmdebstrap, only needed with a node
    return image


NODE_PROGRAMS = ("kubelet", "kube-proxy", "kube-scheduler", "containerd",
                 "containerd-shim-runc-v2", "cluster_dns.py")


def node_processes(stack_workdir: Path) -> list[int]:
    """PIDs of the node's processes (kubelet first): programs of the node whose command
    line names a file of this stack. Found without recorded PIDs, so a node left by a
    killed test session is cleaned up too."""
    found: list[tuple[int, int]] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            names = [Path(arg).name for arg in argv[:2]]
            program = next((p for p in NODE_PROGRAMS if p in names), None)
            if program and any(str(stack_workdir) in arg for arg in argv):
                found.append((NODE_PROGRAMS.index(program), int(proc.name)))
    return [pid for _, pid in sorted(found)]


def clean_leftovers(stack_workdir: Path) -> None:
    """What a node of `stack_workdir` left behind: its processes, the pods' processes
    and cgroups, mounts. Safe to run twice, and for a node that is long gone."""
    for pid in node_processes(stack_workdir):
        harness._terminate(pid, 5)
    _kill_and_remove_cgroups("kubepods")
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(str(stack_workdir / "node")):
            mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)


def _kill_and_remove_cgroups(name: str) -> None:
    """Every process in /sys/fs/cgroup/*/`name` killed, then the cgroups removed leaf
    first (cgroup v1: one tree per controller)."""
    roots = [d / name for d in Path("/sys/fs/cgroup").iterdir() if (d / name).is_dir()]
    for root in roots:
        for procs in root.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                for pid in procs.read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + 20
    for root in roots:
        while root.exists() and time.monotonic() < deadline:
            for directory in sorted((p for p in root.rglob("*") if p.is_dir()),
                                    key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    directory.rmdir()
            with contextlib.suppress(OSError):
                root.rmdir()
            if root.exists():
                time.sleep(0.2)


def pod_memory_cgroup(pod_uid: str) -> Path | None:
    """The memory cgroup (v1) of a pod on this node: what its memory limit acts on."""
    base = Path("/sys/fs/cgroup/memory/kubepods")
    for candidate in (base / f"pod{pod_uid}", *base.glob(f"*/pod{pod_uid}")):
        if candidate.is_dir():
            return candidate
    return None


# ------------------------------------------------------------------------ the image


@dataclass(frozen=True)
class PublishedImage:
    repository: str  # host:port/replication-operator, as pods pull it
    tag: str
    size: int        # uncompressed bytes

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"


def publish_image(registry: harness.Distribution, *extra_tags: str) -> PublishedImage:
    """The operator image (built, or from the cache) pushed to the stack's registry, as a
    cluster would pull it; `extra_tags` name the same image again (an upgrade's tag)."""
    image = image_module()
    built = image.build_operator_image()
    repository = f"{registry.host}:{registry.port}/{image.IMAGE_NAME}"
    for tag in (built.digest_tag, *extra_tags):
        image.push(built.archive, f"{repository}:{tag}", registry.username, registry.password)
    return PublishedImage(repository, built.digest_tag, built.size)


# ---------------------------------------------------------------------- dev/up --node


def up(out: TextIO | None = None) -> harness.Stack:
    """`dev/up --node`: the stack on the node's host address, the node, the image."""
    out = out or sys.stdout
    require_root()
    stack = harness.running_stack()
    if stack is not None and stack.apiserver.node:
        print(f"[up] a node stack already runs ({harness.STATE}); nothing to do", file=out)
        return stack
    harness.down(quiet=True, out=out)  # a plain stack, or what is left of a broken one
    stack = stack_for_node(Path(tempfile.mkdtemp(prefix="replication-operator-dev-")))
    node = Node(stack)
    try:
        with timed("[up] node network", out):
            node.prepare_network()
        with timed("[up] all parts healthy", out):
            stack.start_all(out)
        node.start(stack.registry, out)
        with timed("[up] operator image pushed to the registry", out):
            published = publish_image(stack.registry)
    except BaseException:
        with contextlib.suppress(Exception):
            node.stop(out)
        stack.stop_all()
        shutil.rmtree(stack.workdir, ignore_errors=True)
        raise
    stack.save(harness.STATE)
    harness.write_env_file(stack, {"OPERATOR_IMAGE_REPOSITORY": published.repository,
                                   "OPERATOR_IMAGE_TAG": published.tag})
    print(f"[up] node {NODE_NAME} Ready; image {published.ref} "
          f"({published.size / 1e6:.0f} MB)\n[up] ready: source {harness.ENV_FILE}  "
          "(stop with dev/down)", file=out)
    return stack


def down(stack: harness.Stack, out: TextIO | None = None) -> None:
    """The node of a `dev/up --node` stack (harness.down calls this first)."""
    Node(stack).stop(out)


def main(argv: list[str]) -> int:
    try:
        with timed("[build] total"):
            harness.build()
        up()
    except PartFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
