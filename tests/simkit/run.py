"""The simulators' command line: serve until SIGTERM or SIGINT."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

from .server import ThreadedServer


def serve_until_signal(sim: ThreadedServer, banner: Callable[[], str]) -> int:
    """Start `sim`, print `banner()` (tools wait for that line), stop on a signal."""
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sim.start()
    print(banner(), flush=True)
    try:
        stopping.wait()
    finally:
        sim.stop()
    return 0
