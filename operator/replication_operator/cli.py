"""Command line: `replication-operator run | version | check`."""

from __future__ import annotations

import argparse
import asyncio
import logging
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(__version__)
        return 0
    if args.command == "run":
        return _run(args)
    if args.command == "check":
        from replication_operator.check import check_cluster

        return asyncio.run(check_cluster(args.namespace, out=sys.stdout))
    return 2
