"""Campaign records of the wrong shape are skipped, the same way in both builds."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from domain.engine import compile_campaigns
from tests.domain.engine.reference import example_catalog

Change = Callable[[dict[str, Any]], None]


def _definition(**fields: Any) -> Change:
    return lambda stored: stored["live_definition"].update(fields)


def _stored(**fields: Any) -> Change:
    return lambda stored: stored.update(fields)


def _stopped_with(**fields: Any) -> Change:
    def change(stored: dict[str, Any]) -> None:
        stored["state"] = "stopped"
        stored["live_definition"].update(fields)

    return change


@pytest.mark.parametrize(
    "change",
    [
        _definition(name=7),
        _definition(labels=[1, 2]),
        _definition(labels="ab"),
        _definition(channel=5),
        _definition(channel=None),
        _definition(channel="carrier_pigeon"),
        _stored(account_id=7),
        _stored(timezone=5),
        _stored(live_definition=[1]),
        _stopped_with(channel=5),
        _stopped_with(labels=[None]),
        _stored(state="stopped", account_id=5),
    ],
)
def test_bad_record_skipped(change: Change) -> None:
    catalog = example_catalog()
    bad = copy.deepcopy(catalog["payment_problem"])
    change(bad)
    campaigns = compile_campaigns({**catalog, "payment_problem": bad}, {})
    assert sorted(campaigns.by_id) == ["abandoned_cart", "welcome"]
    assert not campaigns.stopped


def test_stopped_record_kept() -> None:
    catalog = example_catalog()
    catalog["payment_problem"]["state"] = "stopped"
    campaigns = compile_campaigns(catalog, {})
    assert list(campaigns.stopped) == ["payment_problem"]


def test_record_not_an_object_skipped() -> None:
    campaigns = compile_campaigns({**example_catalog(), "other": None}, {})  # type: ignore[dict-item]
    assert sorted(campaigns.by_id) == ["abandoned_cart", "payment_problem", "welcome"]
