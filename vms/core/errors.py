"""One error family for the whole system; the API turns it into `{"detail": [...]}`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorItem:
    code: str
    msg: str
    field: str | None = None

    def as_dict(self) -> dict[str, str]:
        out = {"code": self.code, "msg": self.msg}
        if self.field is not None:
            out["field"] = self.field
        return out


class DomainError(Exception):
    """Base of every error a service raises on purpose. Subclasses fix the HTTP status."""

    status_code = 400

    def __init__(
        self,
        msg: str,
        field: str | None = None,
        code: str = "error",
        items: list[ErrorItem] | None = None,
    ) -> None:
        super().__init__(msg)
        self.msg = msg
        self.field = field
        self.code = code
        self.items = items or [ErrorItem(code, msg, field)]

    def __str__(self) -> str:
        return self.msg


class InvalidInput(DomainError):
    """The request is well-formed but breaks a rule (422)."""

    status_code = 422

    def __init__(
        self,
        msg: str,
        field: str | None = None,
        code: str = "invalid",
        items: list[ErrorItem] | None = None,
    ) -> None:
        super().__init__(msg=msg, field=field, code=code, items=items or [])


class NotFound(DomainError):
    status_code = 404

    def __init__(self, msg: str = "not found", field: str | None = None) -> None:
        super().__init__(msg=msg, field=field, code="not_found")


class Unauthorized(DomainError):
    status_code = 401

    def __init__(self, msg: str = "authentication required") -> None:
        super().__init__(msg=msg, code="unauthorized")


class Forbidden(DomainError):
    status_code = 403

    def __init__(self, msg: str = "not allowed for your role") -> None:
        super().__init__(msg=msg, code="forbidden")


class Conflict(DomainError):
    status_code = 409

    def __init__(self, msg: str, field: str | None = None, code: str = "conflict") -> None:
        super().__init__(msg=msg, field=field, code=code)


class TooManyRequests(DomainError):
    """Too many attempts: try again after `retry_after_s` (429 with Retry-After)."""

    status_code = 429

    def __init__(self, msg: str, retry_after_s: int) -> None:
        super().__init__(msg=msg, code="too_many_requests")
        self.retry_after_s = retry_after_s


class ConfigError(Exception):
    """Settings that cannot work; raised at start-up, before anything runs."""
