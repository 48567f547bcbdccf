"""A token's value goes into the Secret first; if that fails, the just-issued credential
is removed again so no credential whose value is lost stays on the server."""

from __future__ import annotations

import pytest

from replication_operator.backends.tokens import IssuedCredential, TokenRequest
from replication_operator.credentials import Credentials
from replication_operator.errors import TransientBackendError
from replication_operator.handlers.token import deliver

VALUE = "tok-value-never-shown"
REQUEST = TokenRequest(key="ns/t", external_name="ns.t")


class RecordingDriver:
    def __init__(self) -> None:
        self.deleted: list[str] = []

    async def delete_token(self, external_name: str) -> None:
        self.deleted.append(external_name)


async def failing_write(data: dict[str, str]) -> None:
    raise RuntimeError("secrets is forbidden")


async def test_failed_secret_write_removes_the_new_credential() -> None:
    """Every credential delivered is a new one (rotations issue the other slot), so a
    failed Secret write always removes it: its value would be lost."""
    driver = RecordingDriver()
    issued = IssuedCredential(Credentials(token=VALUE))
    with pytest.raises(TransientBackendError) as info:
        await deliver(failing_write, "t", issued, driver, REQUEST)  # type: ignore[arg-type]
    assert driver.deleted == ["ns.t"]
    assert info.value.code == "SecretWriteFailed"
    assert VALUE not in str(info.value)


async def test_value_is_written_with_username_and_password_where_there_are_users() -> None:
    written: list[dict[str, str]] = []

    async def write(data: dict[str, str]) -> None:
        written.append(data)

    issued = IssuedCredential(Credentials(username="ns.t", password="pw"))
    await deliver(write, "t", issued, RecordingDriver(), REQUEST)  # type: ignore[arg-type]
    assert written == [{"token": "pw", "username": "ns.t", "password": "pw"}]
