"""The account's settings, its users and their API tokens."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.auth import AdminUser, ClockDep, CurrentUser, SessionDep
from api.json_values import StrictJSONRoute
from control import accounts
from control.models import Account, User
from schemas.account import AccountPublic, AccountUpdate, TokenCreated, UserCreate, UserPublic
from schemas.text import StoredText

router = APIRouter(tags=["users"], route_class=StrictJSONRoute)


def _account_public(account: Account) -> AccountPublic:
    return AccountPublic.model_validate(account, from_attributes=True)


def _user_public(user: User) -> UserPublic:
    return UserPublic.model_validate(user, from_attributes=True)


@router.get("/account", response_model=AccountPublic)
def read_account(user: CurrentUser) -> AccountPublic:
    return _account_public(user.account)


@router.patch("/account", response_model=AccountPublic)
def update_account(
    body: AccountUpdate, user: AdminUser, session: SessionDep, clock: ClockDep
) -> AccountPublic:
    """Change the account's time zone, approval workflow or delivery settings.

    `delivery` replaces the account's frequency caps and control group as a whole, and
    null gives the account back the workers' own. A field left out keeps its value.
    """
    return _account_public(accounts.update_account(session, user, body, clock.now()))


@router.get("/users/me", response_model=UserPublic)
def read_current_user(user: CurrentUser) -> UserPublic:
    return _user_public(user)


@router.get("/users", response_model=list[UserPublic])
def read_users(user: AdminUser, session: SessionDep) -> list[UserPublic]:
    return [_user_public(u) for u in accounts.list_users(session, user.account_id)]


@router.post("/users", response_model=TokenCreated, status_code=status.HTTP_201_CREATED)
def create_user(
    body: UserCreate, user: AdminUser, session: SessionDep, clock: ClockDep
) -> TokenCreated:
    """Add a user; the response contains their first token, which is not shown again."""
    created, token = accounts.create_user(session, user, body.email, body.role, clock.now())
    return TokenCreated(user=_user_public(created), token=token)


@router.post(
    "/users/{user_id}/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED
)
def create_token(
    user_id: StoredText, user: AdminUser, session: SessionDep, clock: ClockDep
) -> TokenCreated:
    owner, token = accounts.issue_token(session, user, user_id, clock.now())
    return TokenCreated(user=_user_public(owner), token=token)
