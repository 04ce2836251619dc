"""An account's own frequency caps and control group, set through `PATCH /account`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from control.models import FeedOutbox
from tests.api.control_support import ControlApi, open_control_api

CAPS = {
    "frequency_caps": {
        "channels": {
            "push": {"max_messages": 2, "days": 1},
            "email": {"max_messages": 5, "days": 7, "min_gap": 7200},
        }
    },
    "control_group_percent": 5,
}
SAVED = {
    "frequency_caps": {
        "channels": {
            "push": {"max_messages": 2, "days": 1, "min_gap": None},
            "email": {"max_messages": 5, "days": 7, "min_gap": "PT2H"},
        }
    },
    "control_group_percent": 5,
}


@pytest.fixture
def feed_api(tmp_path: Path) -> Iterator[ControlApi]:
    """A `ControlApi` whose changes queue feed records; nothing publishes them."""
    yield from open_control_api(tmp_path, control_feed=True)


def _locs(response: Any) -> list[list[Any]]:
    return [error["loc"] for error in response.json()["detail"]]


def test_delivery_settings_saved_and_shown(control_api: ControlApi) -> None:
    assert control_api.get("/account", control_api.admin).json()["delivery"] is None

    response = control_api.patch("/account", control_api.admin, {"delivery": CAPS})

    assert response.status_code == 200, response.text
    assert response.json()["delivery"] == SAVED
    analyst = control_api.user("analyst")
    assert control_api.get("/account", analyst).json()["delivery"] == SAVED


def test_null_clears_delivery(control_api: ControlApi) -> None:
    control_api.patch("/account", control_api.admin, {"delivery": CAPS})

    unchanged = control_api.patch("/account", control_api.admin, {"approval_workflow": True})
    cleared = control_api.patch("/account", control_api.admin, {"delivery": None})

    assert unchanged.json()["delivery"] == SAVED
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["delivery"] is None


@pytest.mark.parametrize(
    ("delivery", "loc"),
    [
        (
            {"frequency_caps": {"channels": {"push": {"max_messages": 0}}}},
            ["body", "delivery", "frequency_caps", "channels", "push", "max_messages"],
        ),
        (
            {"frequency_caps": {"channels": {"fax": {"max_messages": 1}}}},
            ["body", "delivery", "frequency_caps", "channels", "fax", "[key]"],
        ),
        (
            {"frequency_caps": {"channels": {"sms": {"days": 3}}}},
            ["body", "delivery", "frequency_caps", "channels", "sms"],
        ),
        ({"control_group_percent": 50}, ["body", "delivery", "control_group_percent"]),
        ({"caps": {}}, ["body", "delivery", "caps"]),
    ],
)
def test_invalid_delivery_rejected_with_field(
    control_api: ControlApi, delivery: dict[str, Any], loc: list[Any]
) -> None:
    response = control_api.patch("/account", control_api.admin, {"delivery": delivery})

    assert response.status_code == 422
    assert loc in _locs(response)
    assert control_api.get("/account", control_api.admin).json()["delivery"] is None


def test_only_admins_change_delivery(control_api: ControlApi) -> None:
    creator = control_api.user("creator")

    response = control_api.patch("/account", creator, {"delivery": CAPS})

    assert response.status_code == 403
    assert control_api.get("/account", creator).json()["delivery"] is None


def test_change_is_audited(control_api: ControlApi) -> None:
    control_api.patch("/account", control_api.admin, {"delivery": CAPS})
    control_api.patch("/account", control_api.admin, {"delivery": CAPS})

    entries = control_api.get("/audit?resource_type=account", control_api.admin).json()

    # The second request changed nothing, so it left no entry.
    [entry] = entries
    assert entry["changes"] == {"delivery": {"from": None, "to": SAVED}}


def test_campaigns_republished_with_settings(feed_api: ControlApi) -> None:
    campaign = feed_api.create_campaign(feed_api.admin)

    feed_api.patch("/account", feed_api.admin, {"delivery": CAPS})

    with feed_api.store.session() as session:
        values = session.scalars(
            select(FeedOutbox.value).where(FeedOutbox.key == campaign["id"]).order_by(FeedOutbox.id)
        ).all()
    records = [orjson.loads(value) for value in values if value is not None]
    assert records[0]["definition"]["account_delivery"] is None
    assert records[-1]["definition"]["account_delivery"] == SAVED
    assert records[-1]["definition"]["timezone"] == "UTC"
