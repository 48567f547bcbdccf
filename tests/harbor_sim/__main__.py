"""`PYTHONPATH=tests python -m harbor_sim` (from the repository root): serve a simulated
Harbor until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import os
import sys

from simkit.run import serve_until_signal

from .server import HarborSimulator


def _split_artifact(text: str) -> tuple[str, str, str]:
    """`project/repository[:tag]` (tag defaults to latest)."""
    name, tag = text, "latest"
    if ":" in text.split("/")[-1]:
        name, _, tag = text.rpartition(":")
    project, _, repository = name.partition("/")
    if not project or not repository:
        raise argparse.ArgumentTypeError(f"expected project/repository[:tag], got {text!r}")
    return project, repository, tag or "latest"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harbor_sim",
                                     description="Harbor v2.0 API simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8780, help="0 picks a free port")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default=os.environ.get("HARBOR_SIM_PASSWORD",
                                                             "Harbor12345"),
                        help="default: $HARBOR_SIM_PASSWORD (keeps it out of `ps`), "
                             "else Harbor12345")
    parser.add_argument("--task-seconds", type=float, default=2.0,
                        help="how long each replication task runs")
    parser.add_argument("--status-refresh-seconds", type=float, default=30.0,
                        help="Harbor closes an execution 2/3..1 times this after its last "
                             "task ended (Harbor: 30)")
    parser.add_argument("--seed-artifact", action="append", default=[], type=_split_artifact,
                        metavar="PROJECT/REPO:TAG", help="a local artifact to start with")
    parser.add_argument("--no-registry-health-check", action="store_true",
                        help="accept registries whose URL does not answer")
    args = parser.parse_args(argv)

    sim = HarborSimulator(username=args.user, password=args.password, host=args.host,
                          port=args.port, task_seconds=args.task_seconds,
                          status_refresh_seconds=args.status_refresh_seconds)
    if args.no_registry_health_check:
        sim.store.set_registry_health_check(False)
    for project, repository, tag in args.seed_artifact:
        sim.store.push_artifact(project, repository, tag)
    return serve_until_signal(
        sim, lambda: f"harbor-sim listening on {sim.url} (user {sim.username})")


if __name__ == "__main__":
    sys.exit(main())
