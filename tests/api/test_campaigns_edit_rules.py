"""Every cell of the edit rules, against the API: state × timing × editor × section.

Each row states, for the campaign's creator and for an approver who did not create it,
which sections an edit may change and the state the campaign is in afterwards.
`DISCARDED` means any edit is rejected with 409 and its changes discarded.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.campaign_states import SECTION_EDITS, reach
from tests.api.control_support import ControlApi

ALL = ("name", "labels", "who", "what", "when")
MESSAGE = ("name", "labels", "what")
DISCARDED = ((), None)
TIME_PASSED = "time_passed"

# (situation, timing, (creator sections, state after), (approver sections, state after))
WITH_APPROVAL = [
    ("scheduled", "before", (ALL, "pending_approval"), (ALL, "scheduled")),
    ("scheduled", "after", DISCARDED, DISCARDED),
    ("awaiting_next_run", "before", (MESSAGE, "pending_approval"), (MESSAGE, "awaiting_next_run")),
    ("awaiting_next_run", "after", DISCARDED, DISCARDED),
    ("running", "before", (MESSAGE, "pending_approval"), (MESSAGE, "running")),
    ("pending_first", "before", (ALL, "pending_approval"), (ALL, "scheduled")),
    ("pending_first", "after", (ALL, "pending_approval"), (ALL, TIME_PASSED)),
    ("pending_next", "before", (MESSAGE, "pending_approval"), (MESSAGE, "awaiting_next_run")),
    ("pending_next", "after", DISCARDED, DISCARDED),
    ("pending_live", "before", (MESSAGE, "pending_approval"), (MESSAGE, "running")),
    ("rejected_first", "before", (ALL, "pending_approval"), (MESSAGE, "pending_approval")),
    ("rejected_first", "after", (ALL, "pending_approval"), DISCARDED),
    ("rejected_next", "before", (MESSAGE, "pending_approval"), (MESSAGE, "awaiting_next_run")),
    ("rejected_next", "after", (MESSAGE, "pending_approval"), (MESSAGE, "awaiting_next_run")),
    ("rejected_live", "before", (MESSAGE, "pending_approval"), (MESSAGE, "running")),
    ("draft", "before", (ALL, "draft"), (ALL, "draft")),
    ("stopped", "before", ((), "stopped"), ((), "stopped")),
    ("completed", "before", ((), "completed"), ((), "completed")),
]

# Without the workflow nobody approves, so creator and approver have the same rights.
WITHOUT_APPROVAL = [
    ("draft", "before", ALL, "draft"),
    ("scheduled", "before", ALL, "scheduled"),
    ("scheduled", "after", (), None),
    ("running", "before", MESSAGE, "running"),
    ("awaiting_next_run", "before", MESSAGE, "awaiting_next_run"),
    ("awaiting_next_run", "after", (), None),
    ("stopped", "before", (), "stopped"),
    ("completed", "before", (), "completed"),
]

WARNINGS = {
    ("pending_first", "after", "approver"): "the scheduled time has passed",
    ("rejected_next", "after", "approver"): "the campaign can run today or tomorrow",
}


def _with_approval_cases() -> list[Any]:
    cases = []
    for situation, timing, creator, approver in WITH_APPROVAL:
        for role, (sections, state) in (("creator", creator), ("approver", approver)):
            for section in SECTION_EDITS:
                expected = state if section in sections else _refusal(state, sections)
                case_id = f"{situation}-{timing}-{role}-{section}"
                cases.append(pytest.param(situation, timing, role, section, expected, id=case_id))
    return cases


def _without_approval_cases() -> list[Any]:
    cases = []
    for situation, timing, sections, state in WITHOUT_APPROVAL:
        for role in ("creator", "approver"):
            for section in SECTION_EDITS:
                expected = state if section in sections else _refusal(state, sections)
                case_id = f"{situation}-{timing}-{role}-{section}"
                cases.append(pytest.param(situation, timing, role, section, expected, id=case_id))
    return cases


def _refusal(state: str | None, sections: tuple[str, ...]) -> str:
    if state is None:
        return "discarded"
    return "frozen" if not sections else "not_allowed"


@pytest.mark.parametrize(
    ("situation", "timing", "role", "section", "expected"), _with_approval_cases()
)
def test_edit_with_approval(
    control_api: ControlApi, situation: str, timing: str, role: str, section: str, expected: str
) -> None:
    _check_edit(control_api, situation, timing, role, section, expected, workflow=True)


@pytest.mark.parametrize(
    ("situation", "timing", "role", "section", "expected"), _without_approval_cases()
)
def test_edit_without_approval(
    control_api: ControlApi, situation: str, timing: str, role: str, section: str, expected: str
) -> None:
    _check_edit(control_api, situation, timing, role, section, expected, workflow=False)


def _check_edit(
    api: ControlApi,
    situation: str,
    timing: str,
    role: str,
    section: str,
    expected: str,
    workflow: bool,
) -> None:
    found = reach(api, situation, timing, workflow)
    editor = found.creator if role == "creator" else found.approver
    path = f"/campaigns/{found.campaign_id}"
    before = api.get(path, editor).json()
    if expected == TIME_PASSED and section == "when":
        expected = "scheduled"

    response = api.patch(path, editor, SECTION_EDITS[section])

    after = api.get(path, editor).json()
    if expected in ("discarded", "not_allowed", "frozen", TIME_PASSED):
        assert response.status_code == 409, response.text
        assert after == before
        detail = response.json()["detail"]
        assert _REFUSAL_TEXT[expected] in detail
        return
    assert response.status_code == 200, response.text
    assert after["state"] == expected
    assert after[section] == response.json()[section]
    assert after[section] != before[section]
    assert after["version"] == before["version"] + 1
    warning = WARNINGS.get((situation, timing, role))
    if workflow and warning is not None:
        assert any(warning in w for w in response.json()["warnings"])
    entries = api.get(f"{path}/audit", editor).json()
    assert entries[-1]["action"] == "edit"
    assert section in entries[-1]["changes"]


_REFUSAL_TEXT = {
    "discarded": "your changes were discarded",
    "not_allowed": "you may edit name, labels, what, not",
    "frozen": "cannot be edited; duplicate it",
    TIME_PASSED: "which has passed; give a new time",
}
