"""Domain errors: raised by services with a French message, turned into HTTP answers by the app."""

from __future__ import annotations


class DomainError(Exception):
    """A rule of the domain refused the action. ``message`` is shown to the user as is."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ValidationError(DomainError):
    status_code = 400


class NotFound(DomainError):
    status_code = 404


class Forbidden(DomainError):
    status_code = 403


class Conflict(DomainError):
    status_code = 409


class Throttled(DomainError):
    status_code = 429


class InvalidToken(DomainError):
    """An emailed link is tampered with, expired or already used."""

    status_code = 400
