"""HTTP Basic credentials as the simulated servers read them."""

from __future__ import annotations

import base64

from starlette.requests import Request


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """(user, password) from `Authorization: Basic`, or None when absent or malformed."""
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        username, sep, password = base64.b64decode(encoded.strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (username, password) if sep else None
