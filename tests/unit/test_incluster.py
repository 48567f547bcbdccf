"""In-cluster login: the API server from the pod's service variables, never a DNS name."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from replication_operator import incluster


def _account(tmp_path: Path, token: str = "tok", namespace: str | None = "ops") -> Path:
    (tmp_path / "token").write_text(token + "\n")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    if namespace is not None:
        (tmp_path / "namespace").write_text(namespace)
    return tmp_path


def test_the_server_is_the_service_address_not_kubernetes_default_svc(tmp_path: Path) -> None:
    info = incluster.connection_info(
        {"KUBERNETES_SERVICE_HOST": "10.244.128.1", "KUBERNETES_SERVICE_PORT": "443"},
        _account(tmp_path))
    assert info is not None
    assert info.server == "https://10.244.128.1:443"
    assert info.token == "tok"
    assert info.default_namespace == "ops"
    assert info.ca_path == str(tmp_path / "ca.crt")


def test_ipv6_service_address_is_bracketed() -> None:
    assert incluster.api_server_url(
        {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}
    ) == "https://[fd00::1]:6443"


def test_outside_a_pod_there_is_no_in_cluster_login(tmp_path: Path) -> None:
    assert incluster.connection_info({}, _account(tmp_path)) is None
    assert incluster.connection_info({"KUBERNETES_SERVICE_HOST": "10.0.0.1"},
                                     tmp_path / "missing") is None


def test_the_token_is_read_at_each_login(tmp_path: Path) -> None:
    environ = {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    account = _account(tmp_path, token="first")
    first = incluster.connection_info(environ, account)
    (account / "token").write_text("rotated")
    second = incluster.connection_info(environ, account)
    assert first is not None and second is not None
    assert (first.token, second.token) == ("first", "rotated")
    assert second.server == "https://10.0.0.1:443"


@given(st.ip_addresses(v=4), st.integers(1, 65535))
def test_any_ipv4_service_address(address: object, port: int) -> None:
    url = incluster.api_server_url({"KUBERNETES_SERVICE_HOST": str(address),
                                    "KUBERNETES_SERVICE_PORT": str(port)})
    assert url == f"https://{address}:{port}"
