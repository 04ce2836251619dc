from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import EditDiscarded, EditNotAllowed, InvalidTransition
from domain.lifecycle import (
    EDIT_RULES,
    CampaignAction,
    CampaignState,
    EditContext,
    EditorRole,
    RunStage,
    Section,
    Timing,
    check_action,
    check_edit,
    decide_edit,
    published_state,
    reject_pause,
)

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _context(
    state: CampaignState, stage: RunStage, timing: Timing, role: EditorRole
) -> EditContext:
    return EditContext(state, stage, timing, role, approval_workflow=True)


def test_rules_cover_every_published_situation() -> None:
    for state in (CampaignState.PENDING_APPROVAL, CampaignState.REJECTED):
        for stage in RunStage:
            assert (state, stage, Timing.BEFORE) in EDIT_RULES


def test_name_and_labels_follow_what() -> None:
    for creator, approver in EDIT_RULES.values():
        for rule in (creator, approver):
            if Section.WHAT in rule.sections:
                assert {Section.NAME, Section.LABELS} <= rule.sections


def test_discarded_message() -> None:
    context = _context(
        CampaignState.SCHEDULED, RunStage.NOT_STARTED, Timing.AFTER, EditorRole.CREATOR
    )
    with pytest.raises(EditDiscarded) as caught:
        check_edit(context, frozenset({Section.NAME}), "Sale")
    assert str(caught.value) == (
        "campaign 'Sale' is scheduled and its scheduled time has passed, so it can no longer "
        "be edited; your changes were discarded"
    )


def test_not_allowed_names_sections() -> None:
    context = _context(CampaignState.RUNNING, RunStage.LIVE, Timing.BEFORE, EditorRole.APPROVER)
    with pytest.raises(EditNotAllowed) as caught:
        check_edit(context, frozenset({Section.WHO, Section.WHAT}), "Sale")
    assert (
        str(caught.value) == "campaign 'Sale' is running: you may edit name, labels, what, not who"
    )


def test_draft_allows_everything() -> None:
    rule = decide_edit(
        _context(CampaignState.DRAFT, RunStage.NOT_STARTED, Timing.AFTER, EditorRole.CREATOR)
    )
    assert rule.sections == frozenset(Section)


def test_published_state_by_time() -> None:
    assert published_state(NOW + timedelta(hours=1), NOW) is CampaignState.SCHEDULED
    assert published_state(None, NOW) is CampaignState.RUNNING
    assert published_state(NOW - timedelta(hours=1), NOW) is CampaignState.RUNNING


def test_pause_error() -> None:
    error = reject_pause("Sale", CampaignState.RUNNING)
    assert str(error) == (
        "campaign 'Sale' is running; campaigns cannot be paused, and a published campaign "
        "can only be stopped"
    )


def test_send_for_approval_needs_workflow() -> None:
    with pytest.raises(InvalidTransition) as caught:
        check_action(
            CampaignAction.SEND_FOR_APPROVAL,
            CampaignState.DRAFT,
            RunStage.NOT_STARTED,
            "Sale",
            False,
        )
    assert "approval workflow is off" in str(caught.value)


def test_stop_never_published() -> None:
    with pytest.raises(InvalidTransition) as caught:
        check_action(CampaignAction.STOP, CampaignState.DRAFT, RunStage.NOT_STARTED, "Sale", True)
    assert "never published" in str(caught.value)


def test_approve_only_pending() -> None:
    with pytest.raises(InvalidTransition) as caught:
        check_action(
            CampaignAction.APPROVE, CampaignState.SCHEDULED, RunStage.NOT_STARTED, "Sale", True
        )
    assert str(caught.value) == (
        "cannot approve campaign 'Sale' while it is scheduled; allowed from: pending_approval"
    )
