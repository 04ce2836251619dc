"""Authentication and authorisation as typed FastAPI dependencies.

Management endpoints take a user API token as `Authorization: Bearer <token>`. Ingest
write keys are a separate credential and are not accepted here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from control.accounts import authenticate
from control.clock import Clock
from control.db import ControlStore
from control.models import User
from domain.errors import AuthenticationFailed, PermissionDenied
from schemas.account import Role

__all__ = [
    "AdminUser",
    "ApproverUser",
    "ClockDep",
    "CurrentUser",
    "EditorUser",
    "SessionDep",
    "get_clock",
    "get_session",
    "require_roles",
]

_bearer = HTTPBearer(auto_error=False, description="A user API token")


def get_session(request: Request) -> Iterator[Session]:
    """Yield a control-plane session for one request; services commit their changes."""
    store: ControlStore = request.app.state.control_store
    with store.session() as session:
        yield session


def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


SessionDep = Annotated[Session, Depends(get_session)]
ClockDep = Annotated[Clock, Depends(get_clock)]


def current_user(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    """Return the user whose token the request carries.

    Raises:
        AuthenticationFailed: the header is missing, not a bearer token, or unknown.
    """
    if credentials is None or not credentials.credentials:
        raise AuthenticationFailed("missing API token; send `Authorization: Bearer <token>`")
    return authenticate(session, credentials.credentials)


CurrentUser = Annotated[User, Depends(current_user)]


def require_roles(*roles: Role) -> Callable[[User], User]:
    """Return a dependency that admits only users with one of `roles`."""
    allowed = ", ".join(role.value for role in roles)

    def dependency(user: CurrentUser) -> User:
        if user.role not in roles:
            raise PermissionDenied(
                f"role {user.role!r} may not do this; it needs one of: {allowed}"
            )
        return user

    return dependency


AdminUser = Annotated[User, Depends(require_roles(Role.ADMIN))]
EditorUser = Annotated[User, Depends(require_roles(Role.ADMIN, Role.CREATOR, Role.APPROVER))]
ApproverUser = Annotated[User, Depends(require_roles(Role.ADMIN, Role.APPROVER))]
