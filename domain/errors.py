"""Errors raised by Herald's domain rules.

Every error derives from `DomainError`, a `TerminalError` under Herald's root
`HeraldError`: repeating the same request cannot succeed without a change by the caller.
The API maps each class to one HTTP status in `api/errors.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from herald.errors import HeraldError, TerminalError

__all__ = [
    "AuthenticationFailed",
    "CampaignEnded",
    "ConflictError",
    "DomainError",
    "EditDiscarded",
    "EditNotAllowed",
    "FieldError",
    "HeraldError",
    "InvalidLabel",
    "InvalidTransition",
    "InvalidValue",
    "LabelInUse",
    "NotFound",
    "PermissionDenied",
    "ScheduledTimePassed",
]


class DomainError(TerminalError):
    """A request that breaks a domain rule; `message` names the rule and what is allowed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class FieldError:
    """One invalid field: its path (as pydantic's `loc`), the message, and the error type."""

    path: tuple[str | int, ...]
    message: str
    kind: str = "value_error"


class InvalidValue(DomainError):
    """One or more values break a domain rule; `fields` lists each with its path."""

    def __init__(self, message: str, path: Sequence[str | int] = ()) -> None:
        super().__init__(message)
        self.fields: tuple[FieldError, ...] = (FieldError(tuple(path), message),)

    @classmethod
    def of_fields(cls, fields: Sequence[FieldError]) -> InvalidValue:
        """Return one error that reports every field of `fields`."""
        error = cls("; ".join(f.message for f in fields))
        error.fields = tuple(fields)
        return error


class InvalidLabel(InvalidValue):
    """A label name that labels may not have."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"label {name!r} {reason}")
        self.name = name
        self.reason = reason


class NotFound(DomainError):
    """The requested resource does not exist in the caller's account."""

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {key!r} not found")
        self.kind = kind
        self.key = key


class AuthenticationFailed(DomainError):
    """The request carries no token, or one that matches no user."""


class PermissionDenied(DomainError):
    """The caller is known but their role does not allow the action."""


class ConflictError(DomainError):
    """The request conflicts with the current state of a resource."""


class LabelInUse(ConflictError):
    """A label cannot be deleted because campaigns still carry it."""

    def __init__(self, name: str, campaigns: Sequence[str]) -> None:
        names = ", ".join(repr(c) for c in campaigns)
        super().__init__(
            f"label {name!r} is used by {len(campaigns)} campaign(s): {names}; "
            "remove it from them first"
        )
        self.name = name
        self.campaigns = tuple(campaigns)


class InvalidTransition(ConflictError):
    """A lifecycle action that the campaign's state does not allow."""


class EditNotAllowed(ConflictError):
    """An edit touches sections that the campaign's state does not let the editor change."""


class EditDiscarded(ConflictError):
    """An edit arrived after the run time it would have changed; nothing was saved."""


class CampaignEnded(ConflictError):
    """Publishing a campaign whose end time has passed, which could never send."""


class ScheduledTimePassed(ConflictError):
    """Publishing needs a new time because the scheduled time is in the past."""
