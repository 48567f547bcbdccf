"""What the server simulators (tests/harbor_sim, tests/eden_sim) share: injected faults
and the request log (`faults`), serving on loopback in a thread (`server`), and the
command line's serve-until-signal loop (`run`). The simulators import it as `simkit`,
with tests/ on the path (pytest puts it there; the dev harness sets PYTHONPATH)."""
