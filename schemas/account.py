"""API contracts of accounts, users and their API tokens."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool

from schemas.delivery import AccountDeliverySettings
from schemas.text import StoredText

__all__ = [
    "AccountPublic",
    "AccountUpdate",
    "Role",
    "TokenCreated",
    "UserCreate",
    "UserPublic",
]


class Role(StrEnum):
    """What a user may do.

    admin manages users and settings and may do all the rest; creator writes campaigns and
    labels; approver also approves and rejects; analyst only reads campaigns and reports
    and runs SQL.
    """

    ADMIN = "admin"
    CREATOR = "creator"
    APPROVER = "approver"
    ANALYST = "analyst"


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AccountPublic(_Contract):
    """An account's settings.

    `delivery` contains the frequency caps per channel and the account-wide control group
    that apply to every campaign of the account. Null means the workers' own settings
    (`HERALD_ENGINE__FREQUENCY_CAPS`, `HERALD_ENGINE__CONTROL_GROUP_PERCENT`) apply.
    """

    id: str
    name: str
    timezone: str
    approval_workflow: bool
    delivery: AccountDeliverySettings | None = None


class AccountUpdate(_Contract):
    """A change of account settings; a field left out keeps its value.

    `delivery` replaces the account's delivery settings as a whole. An explicit null gives
    the account back the workers' own settings.
    """

    timezone: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    approval_workflow: StrictBool | None = None
    delivery: AccountDeliverySettings | None = None


class UserCreate(_Contract):
    email: Annotated[StoredText, Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)]
    role: Role


class UserPublic(_Contract):
    id: str
    email: str
    role: Role
    created_at: AwareDatetime


class TokenCreated(_Contract):
    """A new API token; `token` is shown only here, because only its hash is stored."""

    user: UserPublic
    token: str
