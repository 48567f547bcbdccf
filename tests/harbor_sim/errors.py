"""Harbor's error model: `{"errors": [{"code": ..., "message": ...}]}` and its status codes."""

from __future__ import annotations

from typing import Any

# Harbor's lib/errors codes and the HTTP status lib/http maps each one to.
STATUS_BY_CODE: dict[str, int] = {
    "BAD_REQUEST": 400,
    "UNAUTHORIZED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "CONFLICT": 409,
    "PRECONDITION": 412,
    "UNPROCESSABLE_ENTITY": 422,
    "TOO_MANY_REQUEST": 429,
    "UNKNOWN": 500,
}

# Codes used for injected faults and for statuses with no Harbor code of their own.
CODE_BY_STATUS: dict[int, str] = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    412: "PRECONDITION",
    422: "UNPROCESSABLE_ENTITY",
    429: "TOO_MANY_REQUEST",
    500: "UNKNOWN",
    502: "UNKNOWN",
    503: "UNKNOWN",
    504: "UNKNOWN",
}


class HarborError(Exception):
    """An answer in Harbor's error format; raised by the store and the handlers."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else STATUS_BY_CODE.get(code, 500)

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message}]}


def bad_request(message: str) -> HarborError:
    return HarborError("BAD_REQUEST", message)


def not_found(message: str) -> HarborError:
    return HarborError("NOT_FOUND", message)


def conflict(message: str) -> HarborError:
    return HarborError("CONFLICT", message)


def precondition(message: str) -> HarborError:
    return HarborError("PRECONDITION", message)


def forbidden(message: str = "forbidden") -> HarborError:
    return HarborError("FORBIDDEN", message)


def unauthorized(message: str = "unauthorized") -> HarborError:
    return HarborError("UNAUTHORIZED", message)


def unprocessable(message: str) -> HarborError:
    """go-swagger's parameter validation failures (e.g. page_size above its maximum)."""
    return HarborError("UNPROCESSABLE_ENTITY", f"validation failure list:\n{message}")
