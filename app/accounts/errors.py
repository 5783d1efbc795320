"""Errors of auth and tenancy; each carries the HTTP status and a stable error code."""

from __future__ import annotations


class AccountError(Exception):
    """Root of auth/tenancy errors: `code` is stable for clients, `detail` is for people."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.code, "detail": self.detail}
        if self.field is not None:
            body["field"] = self.field
        return body


class InvalidInput(AccountError):
    """A request field is missing or not allowed; `field` names it."""

    status = 422
    code = "invalid_input"


class NotFound(AccountError):
    """No such object in the caller's tenant (also used for other tenants' objects)."""

    status = 404
    code = "not_found"


class Conflict(AccountError):
    """The object exists already, or the change would break an invariant (last admin)."""

    status = 409
    code = "conflict"


class InvalidCredentials(AccountError):
    """Wrong email/password, or a bad, expired or revoked token or key."""

    status = 401
    code = "invalid_credentials"


class NotAuthenticated(AccountError):
    """The endpoint needs credentials and none (valid) came with the request."""

    status = 401
    code = "not_authenticated"


class PermissionDenied(AccountError):
    """The caller is known but its role or key scope does not allow this."""

    status = 403
    code = "forbidden"


class Throttled(AccountError):
    """Too many failed logins; try again after `retry_after` seconds."""

    status = 429
    code = "too_many_attempts"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "retry_after": self.retry_after}
