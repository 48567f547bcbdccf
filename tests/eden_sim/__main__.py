"""`PYTHONPATH=tests python -m eden_sim` (from the repository root): serve a simulated
Sahana Eden until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import os
import sys

from simkit.run import serve_until_signal

from .server import EdenSimulator
from .store import DEFAULT_TABLES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eden_sim",
                                     description="Sahana Eden sync simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790, help="0 picks a free port")
    parser.add_argument("--user", default="admin@example.com", help="the admin's e-mail")
    parser.add_argument("--password", default=os.environ.get("EDEN_SIM_PASSWORD", "eden"),
                        help="default: $EDEN_SIM_PASSWORD (keeps it out of `ps`), else eden")
    parser.add_argument("--table", action="append", default=[],
                        help=f"a data table (repeatable; default {', '.join(DEFAULT_TABLES)})")
    parser.add_argument("--max-period", type=float, default=None,
                        help="cap every job's period at this many seconds")
    parser.add_argument("--seed-organisation", action="append", default=[], metavar="NAME",
                        help="an org_organisation record to start with")
    args = parser.parse_args(argv)

    sim = EdenSimulator(email=args.user, password=args.password, host=args.host,
                        port=args.port, tables=args.table or DEFAULT_TABLES)
    sim.store.set_settings(max_period=args.max_period)
    if args.seed_organisation:
        sim.store.add_table("org_organisation")
        sim.store.data_import("org_organisation", [{"name": n} for n in args.seed_organisation])
    return serve_until_signal(
        sim, lambda: f"eden-sim listening on {sim.url} (user {sim.email})")


if __name__ == "__main__":
    sys.exit(main())
