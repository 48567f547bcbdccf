"""Errors a backend raises, classified the way reconcile needs them.

Permanent errors (bad spec, bad credentials, missing database) stop retries until the
spec or the server changes; transient errors (timeouts, 5xx, refused connections,
429) are retried with capped backoff. Messages never contain credentials: they are
built from status codes, server error texts and credential-free URLs only.
"""

from __future__ import annotations

import copy


class BackendError(Exception):
    """A server answered or failed in a way the operator cannot simply proceed from."""

    permanent: bool = False

    def __init__(self, message: str, *, code: str = "Error", status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status

    def __str__(self) -> str:
        return self.message

    def reworded(self, message: str, *, code: str | None = None) -> BackendError:
        """The same kind of error (permanent or transient, same status) with another
        message, e.g. one that says which object on the server it is about."""
        clone = copy.copy(self)
        clone.message = message
        clone.args = (message,)
        if code is not None:
            clone.code = code
        return clone


class TransientBackendError(BackendError):
    """Worth retrying later: the server is down, slow, overloaded or failing."""

    permanent = False

    def __init__(
        self,
        message: str,
        *,
        code: str = "BackendUnavailable",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.retry_after = retry_after


class PermanentBackendError(BackendError):
    """Retrying the same request cannot help: the spec or a credential must change."""

    permanent = True


class NotFoundError(PermanentBackendError):
    """The server has no such object (404)."""


class ConflictError(PermanentBackendError):
    """The object exists already or changed under us (409)."""


class ReadOnlyError(PermanentBackendError):
    """The object is provisioned on the server and must not be written."""


class SpecError(PermanentBackendError):
    """The resource asks for something this server type cannot do."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="InvalidSpec")


class MissingReferenceError(PermanentBackendError):
    """A referenced object (DatabaseServer, Secret, Token) is missing or unusable.

    Permanent until the referenced object changes; the handlers re-check it on every
    resync, so creating the missing object heals the resource without a restart.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, code="ReferenceNotFound")


PERMANENT_STATUS_CODES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden",
                          404: "NotFound", 405: "MethodNotAllowed", 409: "Conflict",
                          412: "PreconditionFailed", 422: "Unprocessable"}


def classify_status(status: int, message: str) -> BackendError:
    """Map an HTTP status to the error class reconcile acts on."""
    if status == 404:
        return NotFoundError(message, code="NotFound", status=status)
    if status == 409:
        return ConflictError(message, code="Conflict", status=status)
    if status in PERMANENT_STATUS_CODES:
        return PermanentBackendError(message, code=PERMANENT_STATUS_CODES[status], status=status)
    if status == 429:
        return TransientBackendError(message, code="TooManyRequests", status=status)
    return TransientBackendError(message, code="BackendUnavailable", status=status)
