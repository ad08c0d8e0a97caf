"""The API's errors: one small hierarchy, each class carrying the status to answer with.

Route handlers and repositories raise these; one exception handler turns them into
``{"error": {"code": ..., "message": ...}}`` with the class's status. The message always says
what to change (for a bad field it names the field: ``groups[1].size: must be >= 1``).
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "Conflict",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "PlanLimitExceeded",
    "Unauthenticated",
    "Unprocessable",
]


class ApiError(Exception):
    """Base class: ``status`` is the HTTP status, ``code`` the machine-readable error code."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ApiError):
    """400: a value is wrong; the message names the field."""

    status = 400
    code = "invalid_input"


class Unauthenticated(ApiError):
    """401: no credentials, or credentials that are unknown, expired or revoked."""

    status = 401
    code = "unauthenticated"


class Forbidden(ApiError):
    """403: the caller sees the resource but their role does not allow the action."""

    status = 403
    code = "forbidden"


class NotFound(ApiError):
    """404: no such resource, or one in an organization or project the caller cannot see."""

    status = 404
    code = "not_found"

    @classmethod
    def of(cls, kind: str, key: str) -> NotFound:
        return cls(f"no {kind} {key!r}")


class Conflict(ApiError):
    """409: the request clashes with the current state (duplicate name, finished run...)."""

    status = 409
    code = "conflict"


class PlanLimitExceeded(Conflict):
    """409: the organization's plan does not allow this, whatever the load."""

    code = "plan_limit"


class Unprocessable(ApiError):
    """422: the request body does not have the expected shape."""

    status = 422
    code = "unprocessable"
