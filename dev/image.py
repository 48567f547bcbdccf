#!/usr/bin/env python3
"""The operator's container image, built here with podman from the project's Dockerfile.

No registry is reachable from this machine, so the Dockerfile's default base (the
official `python:*-slim-bookworm`) cannot be pulled. The same Dockerfile builds on a
base made of Debian packages instead (mmdebstrap: minbase + python3 + python3-venv +
ca-certificates, imported into podman), with nothing changed but `--build-arg BASE`.

Both are cached under ~/.cache/replication-operator/images/: the base's rootfs by its
recipe, the operator image as an OCI archive by a hash of what goes into it (Dockerfile,
pyproject.toml, README.md, operator/). A missing cache rebuilds. From the archive the
image is pushed to a registry (skopeo) or loaded into a containerd (ctr).

Standard library only, like dev/harness.py.

    python dev/image.py build          # prints the archive path, the tag and the size
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import CACHE, ROOT, PartFailed, _build_lock, timed

IMAGES = CACHE / "images"
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
# what debian:*-slim leaves out (copyright files stay): 225 MB -> 129 MB
SLIM_DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*", "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*", "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright")
BASE_TAG = f"localhost/replication-operator-base:{SUITE}"
IMAGE_NAME = "replication-operator"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# podman's default rlimits are refused on these VMs (no CAP_SYS_RESOURCE)
ULIMITS = ("--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768")


def _run(*cmd: str, log: Path | None = None, input: bytes | None = None,
         cwd: Path | None = None) -> str:
    """Run a command; on failure raise with its output's tail (into `log` if given)."""
    try:
        result = subprocess.run(cmd, capture_output=True, input=input, cwd=cwd)
    except OSError as exc:
        raise PartFailed(f"{cmd[0]} could not run: {exc}") from exc
    output = (result.stdout + result.stderr).decode(errors="replace")
    if log is not None:
        with open(log, "a") as sink:
            sink.write(f"\n$ {' '.join(cmd)}\n{output}")
    if result.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-30:])
        raise PartFailed(f"{' '.join(cmd[:3])} ... failed (exit {result.returncode}):\n{tail}")
    return result.stdout.decode(errors="replace")


def _require(*commands: str) -> None:
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        raise PartFailed(f"missing {', '.join(missing)}: apt-get install mmdebstrap podman "
                         f"skopeo uidmap (see .ci/run)")


# ------------------------------------------------------------------------------ base


def base_recipe() -> str:
    return json.dumps({"suite": SUITE, "variant": "minbase", "include": BASE_PACKAGES,
                       "dpkg": SLIM_DPKG_OPTIONS, "hooks": "merged-usr"})


def base_rootfs() -> Path:
    """The Debian base's rootfs tar, built once by mmdebstrap (about 100 s)."""
    digest = hashlib.sha256(base_recipe().encode()).hexdigest()[:12]
    target = IMAGES / f"debian-python-{SUITE}-{digest}" / "rootfs.tar"
    if target.exists():
        return target
    _require("mmdebstrap")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    log = target.parent / "mmdebstrap.log"
    with timed(f"[image] mmdebstrap {SUITE} base ({', '.join(BASE_PACKAGES)})"):
        _run("mmdebstrap", "--mode=root", "--variant=minbase", "--quiet",
             # merged /usr without the usrmerge package (and the perl it pulls in)
             "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
             *(f"--dpkgopt={option}" for option in SLIM_DPKG_OPTIONS),
             f"--include={','.join(BASE_PACKAGES)}", SUITE, str(tmp), log=log)
    tmp.rename(target)
    return target


def ensure_base_in_podman() -> str:
    """The Debian base imported into podman's storage (kept across runs by podman)."""
    _require("podman")
    rootfs = base_rootfs()
    label = hashlib.sha256(base_recipe().encode()).hexdigest()[:12]
    tag = f"{BASE_TAG}-{label}"
    if subprocess.run(["podman", "image", "exists", tag]).returncode != 0:
        with timed(f"[image] podman import {tag}"):
            _run("podman", "import", "--change", "CMD [\"python3\"]", str(rootfs), tag)
    return tag


# ----------------------------------------------------------------------- the operator


def source_digest() -> str:
    """A hash of everything the Dockerfile copies or reads (git-independent)."""
    digest = hashlib.sha256()
    files = [ROOT / "Dockerfile", ROOT / "pyproject.toml", ROOT / "README.md"]
    files += sorted(p for p in (ROOT / "operator").rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts
                    and not p.name.endswith((".pyc", ".egg-info")))
    for path in files:
        if any(part.endswith(".egg-info") for part in path.parts):
            continue
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Image:
    archive: Path   # OCI archive
    tag: str        # the tag inside the archive (and in podman's storage)
    size: int       # uncompressed, as podman reports it

    @property
    def digest_tag(self) -> str:
        return self.tag.rsplit(":", 1)[1]


def _pip_conf(tmp: Path) -> list[str]:
    """pip inside the build trusts the host's CA bundle (an HTTPS proxy may sit between
    this machine and PyPI); nothing of it stays in the image (build-time mounts)."""
    if not HOST_CA_BUNDLE.exists():
        return []
    conf = tmp / "pip.conf"
    conf.write_text(f"[global]\ncert = {HOST_CA_BUNDLE}\n")
    return ["-v", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro", "-v", f"{conf}:/etc/pip.conf:ro"]


def build_operator_image(base: str | None = None) -> Image:
    """Build (or take from the cache) the operator image on the Debian base."""
    digest = source_digest()
    archive = IMAGES / f"{IMAGE_NAME}-{digest}.oci.tar"
    meta = archive.with_suffix(".json")
    tag = f"localhost/{IMAGE_NAME}:{digest}"
    if archive.exists() and meta.exists():
        return Image(archive, tag, int(json.loads(meta.read_text())["size"]))
    _require("podman")
    IMAGES.mkdir(parents=True, exist_ok=True)
    base = base or ensure_base_in_podman()
    log = IMAGES / f"{IMAGE_NAME}-{digest}.log"
    log.write_text("")
    with tempfile.TemporaryDirectory(prefix="image-", dir=IMAGES) as tmp_dir:
        tmp = Path(tmp_dir)
        with timed(f"[image] podman build {tag} (log {log})"):
            _run("podman", "build", "--network", "host", *ULIMITS, *_pip_conf(tmp),
                 "--build-arg", f"BASE={base}", "--layers=false", "-t", tag,
                 "-f", str(ROOT / "Dockerfile"), str(ROOT), log=log)
        size = int(_run("podman", "image", "inspect", "--format", "{{.Size}}", tag).strip())
        partial = tmp / "image.oci.tar"
        with timed(f"[image] podman save {tag}"):
            _run("podman", "save", "--format", "oci-archive", "-o", str(partial), tag)
        partial.rename(archive)
    meta.write_text(json.dumps({"tag": tag, "size": size, "base": base}))
    return Image(archive, tag, size)


def build_pause_image(pause_binary: Path) -> Path:
    """The sandbox ("pause") image: the static pause binary alone (pause.c from the
    kubernetes module; no pause image can be pulled here). An OCI archive."""
    digest = hashlib.sha256(pause_binary.read_bytes()).hexdigest()[:12]
    archive = IMAGES / f"pause-{digest}.oci.tar"
    if archive.exists():
        return archive
    _require("podman")
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pause-", dir=IMAGES) as tmp_dir:
        tmp = Path(tmp_dir)
        shutil.copy(pause_binary, tmp / "pause")
        (tmp / "Containerfile").write_text(
            'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n')
        tag = f"localhost/pause:{digest}"
        _run("podman", "build", "--network", "none", "-t", tag, str(tmp))
        _run("podman", "save", "--format", "oci-archive", "-o", str(tmp / "p.tar"), tag)
        (tmp / "p.tar").rename(archive)
    return archive


def push(archive: Path, destination: str, username: str, password: str) -> None:
    """Copy an OCI archive to `host:port/repo:tag` over plain HTTP with basic auth."""
    _require("skopeo")
    _run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds",
         f"{username}:{password}", f"oci-archive:{archive}", f"docker://{destination}")


def main(argv: list[str]) -> int:
    if argv[1:2] != ["build"]:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        with _build_lock(sys.stdout):
            image = build_operator_image()
    except PartFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"{image.archive}\n{image.tag}\n{image.size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    raise SystemExit(main(sys.argv))
