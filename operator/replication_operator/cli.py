"""Command line: `replication-operator run | version | check | export | plan` (also
installed as the kubectl plugin `kubectl-dbops`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from replication_operator import __version__


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
                     help="no peering between operator replicas (default; run one replica)")
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
    return parser


def _run(args: argparse.Namespace) -> int:
    import kopf

    from replication_operator import handlers, kube
    from replication_operator.backends.factory import make_backend
    from replication_operator.config import OperatorConfig
    from replication_operator.context import OperatorContext
    from replication_operator.metrics import observe_request
    from replication_operator.servers import ServerRegistry

    config = OperatorConfig(
        namespaces=list(args.namespace), resync_interval=args.resync_interval,
        probe_interval=args.probe_interval, cleanup_grace=args.cleanup_grace,
        liveness_port=args.liveness_port, metrics_port=args.metrics_port)
    kopf.configure(verbose=args.verbose)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    kube.configure()

    async def read_server(namespace: str, name: str) -> dict[str, object] | None:
        return await kube.get_custom(namespace, "databaseservers", name)

    servers = ServerRegistry(read_secret=kube.read_secret, read_server=read_server,
                             backend_factory=make_backend, observer=observe_request)
    ctx = OperatorContext(config=config, servers=servers)
    registry = kopf.OperatorRegistry()
    handlers.register(registry, ctx)
    liveness = (f"http://0.0.0.0:{config.liveness_port}/healthz"
                if config.liveness_port else None)
    kopf.run(registry=registry, standalone=True, namespaces=config.namespaces,
             clusterwide=not config.namespaces, liveness_endpoint=liveness)
    return 0


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

        return asyncio.run(check_cluster(args.namespace, out=sys.stdout))
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
