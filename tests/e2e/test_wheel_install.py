"""The install path of the image, without a Docker engine: build the wheel, install it
alone into a fresh virtual environment, run the command from there."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import httpx
from e2e_support import ROOT, free_port, wait_for

from replication_operator import __version__


def test_wheel_installs_and_runs_against_the_api_server(cluster: Any, crds: None,
                                                        tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("replication_operator-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    pip = env_dir / "bin" / "pip"
    subprocess.run([str(pip), "install", "-q", str(wheel)], check=True, capture_output=True,
                   timeout=600)
    command = env_dir / "bin" / "replication-operator"
    version = subprocess.run([str(command), "--version"], capture_output=True, text=True,
                             check=True)
    assert version.stdout.strip() == __version__
    plugin = env_dir / "bin" / "kubectl-dbops"  # `kubectl dbops ...` once installed
    usage = subprocess.run([str(plugin), "--help"], capture_output=True, text=True,
                           check=True)
    assert usage.stdout.startswith("usage: kubectl dbops")

    port = free_port()
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(command), "run", "--all-namespaces", "--liveness-port",
                                 str(port), "--metrics-port", "0"], stdout=out,
                                stderr=subprocess.STDOUT, env=cluster.env, cwd=tmp_path)
    try:
        def live() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success
            except httpx.HTTPError:
                return False
        wait_for(live, timeout=60, what="the installed operator's liveness endpoint")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "Traceback" not in log.read_text()
