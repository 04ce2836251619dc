"""Every management endpoint checks the token and the role."""

from __future__ import annotations

import pytest

from tests.api.control_support import ControlApi

# (method, path, role that may call it); `{c}` is a campaign id, `{l}` a label id.
ENDPOINTS = [
    ("POST", "/campaigns", "creator"),
    ("PATCH", "/campaigns/{c}", "creator"),
    ("POST", "/campaigns/{c}/publish", "creator"),
    ("POST", "/campaigns/{c}/send-for-approval", "creator"),
    ("POST", "/campaigns/{c}/approve", "approver"),
    ("POST", "/campaigns/{c}/reject", "approver"),
    ("POST", "/campaigns/{c}/stop", "creator"),
    ("POST", "/campaigns/{c}/pause", "creator"),
    ("POST", "/campaigns/{c}/duplicate", "creator"),
    ("POST", "/campaigns/{c}/archive", "creator"),
    ("POST", "/campaigns/{c}/runs/start", "admin"),
    ("POST", "/campaigns/{c}/runs/finish", "admin"),
    ("POST", "/labels", "creator"),
    ("PATCH", "/labels/{l}", "creator"),
    ("DELETE", "/labels/{l}", "creator"),
    ("POST", "/segments", "creator"),
    ("POST", "/users", "admin"),
    ("PATCH", "/account", "admin"),
    ("GET", "/users", "admin"),
]
READ_ENDPOINTS = [
    "/campaigns",
    "/campaigns/{c}",
    "/campaigns/{c}/audit",
    "/labels",
    "/segments",
    "/audit",
    "/account",
]
DENIED = {
    "creator": ["analyst"],
    "approver": ["analyst", "creator"],
    "admin": ["analyst", "creator", "approver"],
}


def _ids(api: ControlApi) -> dict[str, str]:
    label = api.post("/labels", api.admin, {"names": ["Sale"]}).json()["created"][0]
    campaign = api.create_campaign(api.admin)
    return {"c": campaign["id"], "l": label["id"]}


@pytest.mark.parametrize(("method", "path", "allowed"), ENDPOINTS)
def test_endpoint_needs_token(
    control_api: ControlApi, method: str, path: str, allowed: str
) -> None:
    url = path.format(**_ids(control_api))

    missing = control_api.client.request(method, url, json={})
    wrong = control_api.client.request(
        method, url, json={}, headers=control_api.headers("hrd_wrong")
    )

    assert missing.status_code == 401
    assert wrong.status_code == 401


@pytest.mark.parametrize(("method", "path", "allowed"), ENDPOINTS)
def test_endpoint_denies_roles(
    control_api: ControlApi, method: str, path: str, allowed: str
) -> None:
    url = path.format(**_ids(control_api))

    for role in DENIED[allowed]:
        token = control_api.user(role)
        response = control_api.client.request(
            method, url, json={}, headers=control_api.headers(token)
        )
        assert response.status_code == 403, (role, response.text)
        assert f"role '{role}' may not do this" in response.json()["detail"]


@pytest.mark.parametrize("path", READ_ENDPOINTS)
def test_analyst_reads(control_api: ControlApi, path: str) -> None:
    url = path.format(**_ids(control_api))

    response = control_api.get(url, control_api.user("analyst"))

    assert response.status_code == 200, response.text


def test_user_email_ignores_case(control_api) -> None:  # type: ignore[no-untyped-def]
    first = control_api.post(
        "/users", control_api.admin, {"email": "Creator@Shop.test", "role": "creator"}
    )
    again = control_api.post(
        "/users", control_api.admin, {"email": "creator@shop.test", "role": "creator"}
    )
    assert first.status_code == 201
    assert again.status_code == 409
    assert again.json()["detail"] == "user 'creator@shop.test' already exists in this account"
