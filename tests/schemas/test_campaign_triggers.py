"""Trigger definitions that could never work are refused when the campaign is saved."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from schemas.campaign import When

WHEN: TypeAdapter[Any] = TypeAdapter(When)


@pytest.mark.parametrize("name", ["Notification Sent", "Notification Not Sent"])
def test_own_notification_event_cannot_trigger(name: str) -> None:
    with pytest.raises(ValidationError, match="the campaign would trigger itself"):
        WHEN.validate_python({"type": "event", "event": name})
    with pytest.raises(ValidationError, match="the campaign would trigger itself"):
        WHEN.validate_python(
            {
                "type": "inaction",
                "did": {"event": name},
                "did_not": {"event": "x"},
                "within": "PT1H",
            }
        )


def test_clicks_may_trigger() -> None:
    assert WHEN.validate_python({"type": "event", "event": "Notification Clicked"}).event == (
        "Notification Clicked"
    )


def test_event_name_with_outer_spaces_is_refused() -> None:
    with pytest.raises(ValidationError, match="has spaces at its ends"):
        WHEN.validate_python({"type": "event", "event": " x3 "})


def test_inaction_on_one_condition_is_refused() -> None:
    with pytest.raises(ValidationError, match="same condition"):
        WHEN.validate_python(
            {
                "type": "inaction",
                "did": {"event": "x1"},
                "did_not": {"event": "x1"},
                "within": "PT1H",
            }
        )


def _inaction(did_filters: list[Any], did_not_filters: list[Any], did_not: str = "browse") -> Any:
    return WHEN.validate_python(
        {
            "type": "inaction",
            "did": {"event": "browse", "property_filters": did_filters},
            "did_not": {"event": did_not, "property_filters": did_not_filters},
            "within": "PT1H",
        }
    )


def test_inaction_whose_did_cancels_itself_is_refused() -> None:
    shoes = {"property": "category", "op": "eq", "value": "shoes"}
    cheap = {"property": "price", "op": "lt", "value": 10}
    with pytest.raises(ValidationError, match="would cancel its own window"):
        _inaction([shoes], [])
    with pytest.raises(ValidationError, match="would cancel its own window"):
        _inaction([shoes, cheap], [cheap])


def test_inaction_same_event_other_filters_accepted() -> None:
    shoes = {"property": "category", "op": "eq", "value": "shoes"}
    bought = {"property": "step", "op": "eq", "value": "bought"}
    assert _inaction([shoes], [bought]).did_not.event == "browse"
    assert _inaction([], [bought]).did_not.event == "browse"
    assert _inaction([shoes], [], did_not="purchase").did_not.event == "purchase"
