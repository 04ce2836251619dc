from __future__ import annotations

import pytest

from tests.api.control_support import ControlApi


def test_bulk_create_mix(control_api: ControlApi) -> None:
    creator = control_api.user("creator")
    names = [
        "Onboarding",
        "Sale!",
        "   ",
        " Reengage ",
        "onboarding",
        "\u201cQuoted\u201d",
        "x" * 65,
    ]

    response = control_api.post("/labels", creator, {"names": names})

    assert response.status_code == 200
    body = response.json()
    assert [label["name"] for label in body["created"]] == ["Onboarding", "Reengage"]
    reasons = {r["name"]: r["reason"] for r in body["rejected"]}
    assert reasons["Sale!"] == "label 'Sale!' contains '!', which labels may not contain"
    assert "is empty or only spaces" in reasons["   "]
    assert "already exists" in reasons["onboarding"]
    assert "starts with '\u201c'" in reasons["\u201cQuoted\u201d"]
    assert "at most 64" in reasons["x" * 65]
    listed = control_api.get("/labels", creator).json()
    assert [label["name"] for label in listed] == ["Onboarding", "Reengage"]


@pytest.mark.parametrize(
    "name", ['"', "\\", "%", ">", "<", "!", "\u201c", "\u201d", "\u2018", "\u2019"]
)
def test_create_forbidden_char(control_api: ControlApi, name: str) -> None:
    response = control_api.post("/labels", control_api.admin, {"names": [f"A{name}B", f"{name}C"]})

    body = response.json()
    assert body["created"] == []
    assert [r["name"] for r in body["rejected"]] == [f"A{name}B", f"{name}C"]
    assert "contains" in body["rejected"][0]["reason"]
    assert "starts with" in body["rejected"][1]["reason"]


def test_create_existing_other_case(control_api: ControlApi) -> None:
    control_api.post("/labels", control_api.admin, {"names": ["Score Updates"]})

    body = control_api.post("/labels", control_api.admin, {"names": ["SCORE UPDATES"]}).json()

    assert body["created"] == []
    assert "already exists" in body["rejected"][0]["reason"]


def test_create_empty_list_422(control_api: ControlApi) -> None:
    response = control_api.post("/labels", control_api.admin, {"names": []})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "names"]


def test_rename(control_api: ControlApi) -> None:
    created = control_api.post("/labels", control_api.admin, {"names": ["Reengage"]}).json()
    label_id = created["created"][0]["id"]

    response = control_api.patch(f"/labels/{label_id}", control_api.admin, {"name": " Win back "})

    assert response.status_code == 200
    assert response.json()["name"] == "Win back"


def test_rename_invalid_422(control_api: ControlApi) -> None:
    created = control_api.post("/labels", control_api.admin, {"names": ["Reengage"]}).json()
    label_id = created["created"][0]["id"]

    response = control_api.patch(f"/labels/{label_id}", control_api.admin, {"name": "<b>"})

    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "name"]
    assert detail["msg"] == "label '<b>' starts with '<', which labels may not contain"


def test_rename_to_existing_409(control_api: ControlApi) -> None:
    created = control_api.post("/labels", control_api.admin, {"names": ["One", "Two"]}).json()
    label_id = created["created"][1]["id"]

    response = control_api.patch(f"/labels/{label_id}", control_api.admin, {"name": "ONE"})

    assert response.status_code == 409
    assert "already exists as 'One'" in response.json()["detail"]


def test_rename_shows_on_campaign(control_api: ControlApi) -> None:
    created = control_api.post("/labels", control_api.admin, {"names": ["Reengage"]}).json()
    campaign = control_api.create_campaign(control_api.admin, labels=["reengage"])
    label_id = created["created"][0]["id"]

    control_api.patch(f"/labels/{label_id}", control_api.admin, {"name": "Win back"})

    assert control_api.get(f"/campaigns/{campaign['id']}", control_api.admin).json()["labels"] == [
        "Win back"
    ]


def test_delete_unused(control_api: ControlApi) -> None:
    created = control_api.post("/labels", control_api.admin, {"names": ["Temp"]}).json()

    response = control_api.delete(f"/labels/{created['created'][0]['id']}", control_api.admin)

    assert response.status_code == 204
    assert control_api.get("/labels", control_api.admin).json() == []


def test_delete_in_use_names_campaigns(control_api: ControlApi) -> None:
    created = control_api.post("/labels", control_api.admin, {"names": ["Onboarding"]}).json()
    control_api.create_campaign(control_api.admin, name="Welcome", labels=["Onboarding"])
    control_api.create_campaign(control_api.admin, name="Day 3 tips", labels=["Onboarding"])

    response = control_api.delete(f"/labels/{created['created'][0]['id']}", control_api.admin)

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "label_in_use"
    assert body["campaigns"] == ["Day 3 tips", "Welcome"]
    assert body["detail"] == (
        "label 'Onboarding' is used by 2 campaign(s): 'Day 3 tips', 'Welcome'; "
        "remove it from them first"
    )


def test_delete_unknown_404(control_api: ControlApi) -> None:
    response = control_api.delete("/labels/lbl_missing", control_api.admin)

    assert response.status_code == 404
    assert response.json()["detail"] == "label 'lbl_missing' not found"


def test_analyst_reads_not_writes(control_api: ControlApi) -> None:
    analyst = control_api.user("analyst")

    assert control_api.get("/labels", analyst).status_code == 200
    response = control_api.post("/labels", analyst, {"names": ["Nope"]})
    assert response.status_code == 403
    assert response.json()["detail"] == (
        "role 'analyst' may not do this; it needs one of: admin, creator, approver"
    )


def test_labels_need_token(control_api: ControlApi) -> None:
    response = control_api.client.get("/labels")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
