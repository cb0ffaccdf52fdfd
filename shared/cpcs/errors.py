"""Domain errors: one base class with a machine-readable code and an HTTP status.

Services turn any ``CpcsError`` into a JSON error body ``{"error": code, "message": ...}``
with its status; anything else is our bug and becomes a 500 without a stack trace.
"""

from __future__ import annotations


class CpcsError(Exception):
    """Base of every error the service reports to a client."""

    code: str = "error"
    http_status: int = 500

    def __init__(self, message: str, *, code: str | None = None, http_status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if http_status is not None:
            self.http_status = http_status

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InputError(CpcsError):
    """The client's input cannot be used; the message says what to fix (HTTP 422)."""

    code = "invalid_input"
    http_status = 422


class NotFoundError(CpcsError):
    code = "not_found"
    http_status = 404


class AuthenticationError(CpcsError):
    code = "not_authenticated"
    http_status = 401


class PermissionDeniedError(CpcsError):
    code = "forbidden"
    http_status = 403


class ConflictError(CpcsError):
    code = "conflict"
    http_status = 409


class CalibrationFailed(CpcsError):
    """Found after the upload was accepted: the observation ends as ``failed`` with this code."""

    code = "calibration_failed"
    http_status = 422


class ServiceUnavailable(CpcsError):
    """A dependency (database, broker, catalogue source) is unreachable; retry later."""

    code = "service_unavailable"
    http_status = 503
