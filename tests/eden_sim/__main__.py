"""`python -m tests.eden_sim` (from the repository root) or `python -m eden_sim` (with
tests/ on the path): serve a simulated Sahana Eden until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from types import FrameType

from .server import EdenSimulator
from .store import DEFAULT_TABLES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.eden_sim",
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
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sim.start()
    print(f"eden-sim listening on {sim.url} (user {sim.email})", flush=True)
    try:
        stopping.wait()
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
