"""Command line: `replication-operator run | version | check | export | plan` (also
installed as the kubectl plugin `kubectl-dbops`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import http.server
import logging
import os
import secrets
import signal
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from replication_operator import __version__

if TYPE_CHECKING:
    from replication_operator.leader import LeaderElection


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="replication-operator",
        description="Keeps replications between data servers true to Kubernetes resources.")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                       help="watch this namespace (repeatable; globs allowed)")
    scope.add_argument("-A", "--all-namespaces", action="store_true",
                       help="watch every namespace (the default when no --namespace)")
    run.add_argument("--standalone", action="store_true", default=True,
                     help="no kopf peering between replicas (always: see --leader-elect)")
    run.add_argument("--selector", default="", metavar="LABELS",
                     help="handle only resources with these labels (key=value, key!=value, "
                          "key, !key; comma-separated): shards of one namespace")
    run.add_argument("--leader-elect", action="store_true",
                     help="run several replicas: the one holding a Lease works, the others "
                          "stand by")
    run.add_argument("--leader-election-namespace", default=os.environ.get("POD_NAMESPACE",
                                                                           "default"),
                     metavar="NS", help="namespace of the Lease (default: $POD_NAMESPACE)")
    run.add_argument("--leader-election-id", default="replication-operator", metavar="NAME",
                     help="name of the Lease (one per set of replicas)")
    run.add_argument("--lease-duration", type=float, default=15.0, metavar="SECONDS",
                     help="a standby takes over after the Lease was not renewed this long")
    run.add_argument("--renew-deadline", type=float, default=10.0, metavar="SECONDS",
                     help="the leader stops if it could not renew for this long")
    run.add_argument("--retry-period", type=float, default=2.0, metavar="SECONDS",
                     help="how often the Lease is renewed or tried")
    run.add_argument("--resync-interval", type=float, default=30.0, metavar="SECONDS",
                     help="how often every resource is compared with its server (drift)")
    run.add_argument("--probe-interval", type=float, default=60.0, metavar="SECONDS",
                     help="default probe interval of DatabaseServers")
    run.add_argument("--cleanup-grace", type=float, default=300.0, metavar="SECONDS",
                     help="after this long, a deletion blocked by a down server says so")
    run.add_argument("--liveness-port", type=int, default=8080,
                     help="serve /healthz on this port (0: off)")
    run.add_argument("--metrics-port", type=int, default=9090,
                     help="serve Prometheus /metrics on this port (0: off)")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    export = sub.add_parser(
        "export", help="print manifests that adopt what a server holds and no resource "
                       "owns yet (reads only)")
    export.add_argument("-n", "--namespace", metavar="NS",
                        help="the namespace of the DatabaseServer (default: kubeconfig's)")
    export.add_argument("--server", required=True, metavar="NAME",
                        help="the DatabaseServer whose jobs, policies and tokens to export")
    export.add_argument("--kind", action="append", metavar="KIND",
                        choices=("Replication", "ReplicationPolicy", "Token"),
                        help="only this kind (repeatable; default: all)")
    export.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml",
                        help="yaml with comments (default), or an appliable json List "
                             "(comments on stderr)")
    plan = sub.add_parser(
        "plan", help="what applying these manifests would do on each server (writes "
                     "nothing); exit 0 no change, 2 changes, 1 error")
    plan.add_argument("-f", "--filename", action="append", required=True,
                      metavar="FILE_OR_DIR", help="manifests (repeatable; directories "
                                                  "recursively; - for stdin)")
    plan.add_argument("-n", "--namespace", metavar="NS",
                      help="for manifests without one (default: kubeconfig's)")
    plan.add_argument("--prune", action="store_true",
                      help="plan the deletion of resources of the same kinds and namespaces "
                           "that the files do not contain")
    plan.add_argument("-o", "--output", choices=("table", "json"), default="table")

    sub.add_parser("version", help="print the version")
    check = sub.add_parser("check", help="check the cluster: CRDs installed, permissions")
    check.add_argument("-n", "--namespace", default="default")
    check.add_argument("--leader-election-namespace", default=None, metavar="NS",
                       help="also check the leader election Lease there")
    return parser


def _run(args: argparse.Namespace) -> int:
    import kopf

    from replication_operator import handlers, kube
    from replication_operator.backends.factory import make_backend
    from replication_operator.config import OperatorConfig
    from replication_operator.context import OperatorContext
    from replication_operator.metrics import observe_request
    from replication_operator.selection import parse_selector
    from replication_operator.servers import ServerRegistry

    try:
        labels = parse_selector(args.selector)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    config = OperatorConfig(
        namespaces=list(args.namespace), resync_interval=args.resync_interval,
        probe_interval=args.probe_interval, cleanup_grace=args.cleanup_grace,
        liveness_port=args.liveness_port, metrics_port=args.metrics_port, labels=labels,
        selector=args.selector)
    # log_prefix: every line about an object names it ([namespace/name]), as `kopf run`
    # does by default; without it a log of many objects cannot be followed
    kopf.configure(verbose=args.verbose, log_prefix=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    kube.configure()
    election = _leader_election(args) if args.leader_elect else None
    lost, done = threading.Event(), threading.Event()  # the Lease lost; kopf finished
    exited = threading.Event()  # everything done: the exit watchdog stands down
    # A stop signal is never lost: until the event loop (and then kopf) handles them, a
    # signal sets this flag, which standing by and starting both look at.
    stop_requested = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop_requested.set())
    if election is not None:
        with _standby_health(config.liveness_port):
            if not election.wait_for_leadership(stop_requested):
                return 0
        if stop_requested.is_set():  # stopped just as the Lease was won: give it back
            election.release()
            return 0

    async def read_server(namespace: str, name: str) -> dict[str, object] | None:
        return await kube.get_custom(namespace, "databaseservers", name)

    servers = ServerRegistry(read_secret=kube.read_secret, read_server=read_server,
                             backend_factory=make_backend, observer=observe_request)
    ctx = OperatorContext(config=config, servers=servers)
    registry = kopf.OperatorRegistry()
    handlers.register(registry, ctx)

    @kopf.on.cleanup(registry=registry)
    def bound_the_stop(**_: object) -> None:
        _exit_watchdog(EXIT_GRACE, exited, done, election)

    liveness = (f"http://0.0.0.0:{config.liveness_port}/healthz"
                if config.liveness_port else None)

    async def operate() -> None:
        # an asyncio flag: kopf waits for a threading one in an executor thread, which
        # then keeps the process from exiting after a normal stop
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):  # until kopf installs its own
            loop.add_signal_handler(sig, stop.set)
        if stop_requested.is_set():
            stop.set()
        if election is not None:

            def on_lost() -> None:
                lost.set()
                loop.call_soon_threadsafe(stop.set)

            election.keep(done, on_lost=on_lost)
        await kopf.operator(registry=registry, standalone=True, namespaces=config.namespaces,
                            clusterwide=not config.namespaces, liveness_endpoint=liveness,
                            stop_flag=stop)

    try:
        asyncio.run(operate())
    finally:
        done.set()
    if election is None:
        exited.set()
        return 0
    if lost.is_set():
        print("lost the leader Lease: exiting, to restart as a standby", file=sys.stderr)
        exited.set()
        return 1
    election.release()  # a clean stop: the standby takes over at once
    exited.set()
    return 0


# A stop (SIGTERM) that has not finished after this long ends the process: the Lease is
# released and the threads' stacks are logged (a stuck stop says where it is stuck).
EXIT_GRACE = 15.0


def _exit_watchdog(grace: float, exited: threading.Event, renewing_done: threading.Event,
                   election: LeaderElection | None) -> None:
    def watch() -> None:
        if exited.wait(grace):
            return
        print(f"still stopping after {grace:.0f} s: exiting now; the threads were at:",
              file=sys.stderr, flush=True)
        faulthandler.dump_traceback(all_threads=True)
        renewing_done.set()
        if election is not None:
            election.release()
        os._exit(0)

    threading.Thread(target=watch, name="exit-watchdog", daemon=True).start()


def _leader_election(args: argparse.Namespace) -> LeaderElection:
    from replication_operator.leader import ElectionSettings, LeaderElection

    identity = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    return LeaderElection(ElectionSettings(
        name=args.leader_election_id, namespace=args.leader_election_namespace,
        identity=identity, lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline, retry_period=args.retry_period))


@contextlib.contextmanager
def _standby_health(port: int) -> Iterator[None]:
    """While standing by, /healthz answers (kopf's own endpoint starts with the work):
    a standby is alive, and the probe must not restart it."""
    if not port:
        yield
        return

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = 200 if self.path.startswith("/healthz") else 404
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"standby\n" if code == 200 else b"")

        def log_message(self, *_: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Health)
    thread = threading.Thread(target=server.serve_forever, name="standby-health",
                              daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    parser = _parser()
    if prog:
        parser.prog = prog
    args = parser.parse_args(argv)
    if args.command == "version":
        print(__version__)
        return 0
    if args.command == "run":
        return _run(args)
    if args.command == "check":
        from replication_operator.check import check_cluster

        return asyncio.run(check_cluster(args.namespace, out=sys.stdout,
                                         lease_namespace=args.leader_election_namespace))
    if args.command in ("export", "plan"):
        return _gitops(args)
    return 2


def _gitops(args: argparse.Namespace) -> int:
    from replication_operator.gitops.export import run_export
    from replication_operator.gitops.plan import run_plan

    try:
        if args.command == "export":
            return asyncio.run(run_export(args.namespace, args.server, args.kind,
                                          args.output, out=sys.stdout, err=sys.stderr))
        return asyncio.run(run_plan(args.filename, args.namespace, prune=args.prune,
                                    output=args.output, out=sys.stdout, err=sys.stderr))
    except BrokenPipeError:  # `... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def kubectl_plugin() -> int:
    """`kubectl dbops ...`: kubectl runs any `kubectl-*` executable on PATH as a plugin."""
    return main(prog="kubectl dbops")
