"""Accounts, users and their API tokens."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from control.audit import record_audit
from control.identity import hash_token, new_id, new_token
from control.models import Account, ApiToken, Campaign, User
from control.outbox import enqueue_definition
from control.views import campaign_definition
from domain.errors import AuthenticationFailed, ConflictError, InvalidValue, NotFound
from schemas.account import AccountUpdate, Role

__all__ = [
    "authenticate",
    "bootstrap_account",
    "create_user",
    "issue_token",
    "list_users",
    "update_account",
]

logger = logging.getLogger(__name__)


def check_timezone(name: str) -> str:
    """Return `name` if it is an IANA time zone such as `Europe/Berlin`."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidValue(
            f"time zone {name!r} is unknown; use an IANA name such as 'UTC' or 'Europe/Berlin'",
            ("timezone",),
        ) from None
    return name


def normalise_email(email: str) -> str:
    """Return the form under which an email address is stored and compared.

    Addresses differ in case only in theory: every mail provider treats them alike, and
    two users must not differ by case alone.
    """
    return email.strip().lower()


def bootstrap_account(
    session: Session,
    name: str,
    admin_email: str,
    now: datetime,
    timezone: str = "UTC",
    approval_workflow: bool = False,
) -> tuple[User, str]:
    """Create an account with one admin user; return the user and their new token."""
    account = Account(
        id=new_id("acc"),
        name=name,
        timezone=check_timezone(timezone),
        approval_workflow=approval_workflow,
        created_at=now,
    )
    admin = User(
        id=new_id("usr"),
        account_id=account.id,
        email=normalise_email(admin_email),
        role=Role.ADMIN,
        created_at=now,
    )
    session.add_all([account, admin])
    session.flush()
    token = _add_token(session, admin, now)
    session.commit()
    logger.info("account created", extra={"account_id": account.id, "user_id": admin.id})
    return admin, token


def create_user(
    session: Session, actor: User, email: str, role: Role, now: datetime
) -> tuple[User, str]:
    """Add a user to the actor's account; return the user and their new token."""
    email = normalise_email(email)
    taken = session.scalar(
        select(User).where(User.account_id == actor.account_id, User.email == email)
    )
    if taken is not None:
        raise ConflictError(f"user {email!r} already exists in this account")
    user = User(
        id=new_id("usr"), account_id=actor.account_id, email=email, role=role, created_at=now
    )
    session.add(user)
    session.flush()
    token = _add_token(session, user, now)
    record_audit(session, actor, "user", user.id, "create", now, changes={"role": role.value})
    session.commit()
    return user, token


def issue_token(session: Session, actor: User, user_id: str, now: datetime) -> tuple[User, str]:
    """Give a user of the actor's account an additional token."""
    user = session.get(User, user_id)
    if user is None or user.account_id != actor.account_id:
        raise NotFound("user", user_id)
    token = _add_token(session, user, now)
    record_audit(session, actor, "user", user.id, "issue_token", now)
    session.commit()
    return user, token


def list_users(session: Session, account_id: str) -> Sequence[User]:
    query = select(User).where(User.account_id == account_id).order_by(User.created_at)
    return session.scalars(query).all()


def authenticate(session: Session, token: str) -> User:
    """Return the user that `token` belongs to.

    Raises:
        AuthenticationFailed: no such token, or it was revoked.
    """
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.revoked:
        raise AuthenticationFailed("the API token is invalid or revoked")
    return row.user


def update_account(session: Session, actor: User, update: AccountUpdate, now: datetime) -> Account:
    """Change the account's time zone, approval workflow or delivery settings, as the admin
    `actor`."""
    account = actor.account
    before = _settings(account)
    if update.timezone is not None:
        account.timezone = check_timezone(update.timezone)
    if update.approval_workflow is not None:
        account.approval_workflow = update.approval_workflow
    if "delivery" in update.model_fields_set:
        delivery = update.delivery
        account.delivery = None if delivery is None else delivery.model_dump(mode="json")
    after = _settings(account)
    changes = {k: {"from": before[k], "to": after[k]} for k in before if before[k] != after[k]}
    if changes:
        record_audit(session, actor, "account", account.id, "update", now, changes=changes)
    if "timezone" in changes or "delivery" in changes:
        _republish_campaigns(session, account, now)
    session.commit()
    if "delivery" in changes:
        logger.info(
            "account delivery settings changed",
            extra={"account_id": account.id, "user_id": actor.id},
        )
    return account


def _settings(account: Account) -> dict[str, Any]:
    return {
        "timezone": account.timezone,
        "approval_workflow": account.approval_workflow,
        "delivery": account.delivery,
    }


def _republish_campaigns(session: Session, account: Account, now: datetime) -> None:
    """Queue every campaign again, because its definition carries the account's zone and
    delivery settings, which the workers apply."""
    query = select(Campaign).where(Campaign.account_id == account.id)
    for campaign in session.scalars(query):
        definition = campaign_definition(campaign, account)
        enqueue_definition(session, "campaign", campaign.id, definition, now)


def _add_token(session: Session, user: User, now: datetime) -> str:
    token = new_token()
    session.add(
        ApiToken(id=new_id("tok"), user_id=user.id, token_hash=hash_token(token), created_at=now)
    )
    return token
