"""TLS to a data server on a real socket: verification on by default, a CA from the
spec trusted, verification off only when asked, and an untrusted certificate reported
as a permanent error that names the setting to fix."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from replication_operator.backends.couchdb.backend import CouchDBBackend
from replication_operator.errors import PermanentBackendError
from replication_operator.http import ServerConnection, ServerSettings

pytestmark = pytest.mark.integration


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.crt", "-days", "2", "-subj", "/CN=test-ca", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
            "-subj", "/CN=127.0.0.1", cwd=d)
    openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "srv.crt", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    return d


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = json.dumps({"couchdb": "Welcome", "version": "3.5.0",
                           "features": ["scheduler"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def https_url(pki: Path) -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(pki / "srv.crt"), str(pki / "srv.key"))
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


async def probe(settings: ServerSettings) -> str:
    conn = ServerConnection(settings)
    try:
        info = await CouchDBBackend(conn, lambda s: conn).probe()
        return info.version
    finally:
        await conn.aclose()


def settings(url: str, **tls: Any) -> ServerSettings:
    return ServerSettings(key="t/tls", type="couchdb", url=url, **tls)


async def test_untrusted_certificate_is_a_permanent_error_naming_the_setting(
        https_url: str) -> None:
    with pytest.raises(PermanentBackendError) as info:
        await probe(settings(https_url))
    assert info.value.code == "TLSVerificationFailed"
    assert "spec.tls.caSecretRef" in str(info.value)


async def test_ca_from_the_spec_is_trusted(https_url: str, pki: Path) -> None:
    assert await probe(settings(https_url, ca_pem=(pki / "ca.crt").read_text())) == "3.5.0"


async def test_verification_off_only_when_asked(https_url: str) -> None:
    assert await probe(settings(https_url, insecure_skip_verify=True)) == "3.5.0"
