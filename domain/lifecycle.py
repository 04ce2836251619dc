"""Campaign states, lifecycle actions, and the rules for editing a campaign.

The edit rules depend on four facts. The first is the state, and the second is how far the
campaign has got: first run not started, awaiting its next run, or live. The third is
whether the scheduled time or next run time has passed. With the approval workflow on,
the fourth is whether the editor created the campaign or approves it. `EDIT_RULES` holds them as data; `decide_edit` looks one up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain.errors import EditDiscarded, EditNotAllowed, InvalidTransition

__all__ = [
    "ACTION_SOURCES",
    "ALL_SECTIONS",
    "EDIT_RULES",
    "EDIT_RULES_WITHOUT_APPROVAL",
    "MESSAGE_SECTIONS",
    "CampaignAction",
    "CampaignState",
    "EditContext",
    "EditOutcome",
    "EditRule",
    "EditorRole",
    "RunStage",
    "Section",
    "Timing",
    "check_action",
    "check_edit",
    "decide_edit",
    "published_state",
    "reject_pause",
]


class CampaignState(StrEnum):
    DRAFT = "draft"
    PENDING_APPROVAL = "pending_approval"
    REJECTED = "rejected"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    AWAITING_NEXT_RUN = "awaiting_next_run"
    STOPPED = "stopped"
    COMPLETED = "completed"


class CampaignAction(StrEnum):
    """Actions that change a campaign's state; saving a draft is a create or an edit."""

    PUBLISH = "publish"
    SEND_FOR_APPROVAL = "send_for_approval"
    APPROVE = "approve"
    REJECT = "reject"
    STOP = "stop"
    DUPLICATE = "duplicate"
    ARCHIVE = "archive"


class Section(StrEnum):
    """Parts of a campaign that the edit rules treat separately."""

    NAME = "name"
    LABELS = "labels"
    WHO = "who"
    WHAT = "what"
    WHEN = "when"


class EditorRole(StrEnum):
    """Column of the edit rules: the campaign's creator, or an approver who is not."""

    CREATOR = "creator"
    APPROVER = "approver"


class RunStage(StrEnum):
    """How far a campaign has got, which decides the rules for pending and rejected ones."""

    NOT_STARTED = "not_started"
    AWAITING_NEXT_RUN = "awaiting_next_run"
    LIVE = "live"


class Timing(StrEnum):
    """Whether the scheduled time (first run) or next run time is still ahead."""

    BEFORE = "before"
    AFTER = "after"


class EditOutcome(StrEnum):
    """The state change that follows an accepted edit."""

    KEEP = "keep"
    SEND_FOR_APPROVAL = "send_for_approval"
    PUBLISH = "publish"
    DISCARD = "discard"


ALL_SECTIONS = frozenset(Section)
# Name and labels are editable wherever the message is.
MESSAGE_SECTIONS = frozenset({Section.WHAT, Section.NAME, Section.LABELS})
NO_SECTIONS: frozenset[Section] = frozenset()


@dataclass(frozen=True)
class EditRule:
    """The sections one editor may change in one situation, and the outcome of the edit.

    Attributes:
        sections: the sections the editor may change; empty means none.
        outcome: the state change that follows an accepted edit.
        warning: a note returned with the response, for situations the editor must know.
    """

    sections: frozenset[Section]
    outcome: EditOutcome
    warning: str | None = None


@dataclass(frozen=True)
class EditContext:
    """The facts about a campaign and its editor that select an edit rule."""

    state: CampaignState
    stage: RunStage
    timing: Timing
    role: EditorRole
    approval_workflow: bool


_DISCARD = EditRule(NO_SECTIONS, EditOutcome.DISCARD)
_FROZEN = EditRule(NO_SECTIONS, EditOutcome.KEEP)
_ALL_TO_APPROVAL = EditRule(ALL_SECTIONS, EditOutcome.SEND_FOR_APPROVAL)
_ALL_PUBLISH = EditRule(ALL_SECTIONS, EditOutcome.PUBLISH)
_WHAT_TO_APPROVAL = EditRule(MESSAGE_SECTIONS, EditOutcome.SEND_FOR_APPROVAL)
_WHAT_PUBLISH = EditRule(MESSAGE_SECTIONS, EditOutcome.PUBLISH)
_TIME_PASSED_WARNING = (
    "the scheduled time has passed; publish with a new time in `when` or run it now"
)
_RUN_TODAY_WARNING = "the run time has passed; the campaign can run today or tomorrow"

_S = CampaignState
_R = RunStage
_T = Timing

# Key: (state, stage, timing) -> (creator's rule, approver's rule). Rows for a live
# campaign that is pending or rejected follow the live row: message only.
EDIT_RULES: dict[tuple[CampaignState, RunStage, Timing], tuple[EditRule, EditRule]] = {
    (_S.SCHEDULED, _R.NOT_STARTED, _T.BEFORE): (_ALL_TO_APPROVAL, _ALL_PUBLISH),
    (_S.SCHEDULED, _R.NOT_STARTED, _T.AFTER): (_DISCARD, _DISCARD),
    (_S.AWAITING_NEXT_RUN, _R.AWAITING_NEXT_RUN, _T.BEFORE): (_WHAT_TO_APPROVAL, _WHAT_PUBLISH),
    (_S.AWAITING_NEXT_RUN, _R.AWAITING_NEXT_RUN, _T.AFTER): (_DISCARD, _DISCARD),
    (_S.RUNNING, _R.LIVE, _T.BEFORE): (_WHAT_TO_APPROVAL, _WHAT_PUBLISH),
    (_S.PENDING_APPROVAL, _R.NOT_STARTED, _T.BEFORE): (_ALL_TO_APPROVAL, _ALL_PUBLISH),
    (_S.PENDING_APPROVAL, _R.NOT_STARTED, _T.AFTER): (
        _ALL_TO_APPROVAL,
        EditRule(ALL_SECTIONS, EditOutcome.PUBLISH, _TIME_PASSED_WARNING),
    ),
    (_S.PENDING_APPROVAL, _R.AWAITING_NEXT_RUN, _T.BEFORE): (_WHAT_TO_APPROVAL, _WHAT_PUBLISH),
    (_S.PENDING_APPROVAL, _R.AWAITING_NEXT_RUN, _T.AFTER): (_DISCARD, _DISCARD),
    (_S.PENDING_APPROVAL, _R.LIVE, _T.BEFORE): (_WHAT_TO_APPROVAL, _WHAT_PUBLISH),
    (_S.REJECTED, _R.NOT_STARTED, _T.BEFORE): (_ALL_TO_APPROVAL, _WHAT_TO_APPROVAL),
    (_S.REJECTED, _R.NOT_STARTED, _T.AFTER): (_ALL_TO_APPROVAL, _DISCARD),
    (_S.REJECTED, _R.AWAITING_NEXT_RUN, _T.BEFORE): (_WHAT_TO_APPROVAL, _WHAT_PUBLISH),
    (_S.REJECTED, _R.AWAITING_NEXT_RUN, _T.AFTER): (
        _WHAT_TO_APPROVAL,
        EditRule(MESSAGE_SECTIONS, EditOutcome.PUBLISH, _RUN_TODAY_WARNING),
    ),
    (_S.REJECTED, _R.LIVE, _T.BEFORE): (_WHAT_TO_APPROVAL, _WHAT_PUBLISH),
}

# Without the approval workflow there is no creator/approver split. A pending or rejected
# campaign left over from when the workflow was on keeps the creator's sections but stays
# in its state, from where it can be published.
EDIT_RULES_WITHOUT_APPROVAL: dict[tuple[CampaignState, RunStage, Timing], EditRule] = {
    (_S.SCHEDULED, _R.NOT_STARTED, _T.BEFORE): EditRule(
        frozenset({Section.WHO, Section.WHAT, Section.WHEN, Section.NAME, Section.LABELS}),
        EditOutcome.PUBLISH,
    ),
    (_S.SCHEDULED, _R.NOT_STARTED, _T.AFTER): _DISCARD,
    (_S.AWAITING_NEXT_RUN, _R.AWAITING_NEXT_RUN, _T.BEFORE): _WHAT_PUBLISH,
    (_S.AWAITING_NEXT_RUN, _R.AWAITING_NEXT_RUN, _T.AFTER): _DISCARD,
    (_S.RUNNING, _R.LIVE, _T.BEFORE): _WHAT_PUBLISH,
}


def decide_edit(context: EditContext) -> EditRule:
    """Return the rule that applies to an edit in `context`."""
    if context.state is CampaignState.DRAFT:
        return EditRule(ALL_SECTIONS, EditOutcome.KEEP)
    if context.state in (CampaignState.STOPPED, CampaignState.COMPLETED):
        return _FROZEN
    key = (context.state, context.stage, context.timing)
    if context.approval_workflow:
        creator_rule, approver_rule = EDIT_RULES[key]
        return approver_rule if context.role is EditorRole.APPROVER else creator_rule
    if key in EDIT_RULES_WITHOUT_APPROVAL:
        return EDIT_RULES_WITHOUT_APPROVAL[key]
    creator_rule = EDIT_RULES[key][0]
    return EditRule(creator_rule.sections, EditOutcome.KEEP)


def check_edit(context: EditContext, changed: frozenset[Section], name: str) -> EditRule:
    """Return the rule for `context` after checking that it allows changing `changed`.

    Raises:
        EditDiscarded: the run time has passed, so no section may change.
        EditNotAllowed: the state allows no edit, or not of every changed section.
    """
    rule = decide_edit(context)
    if rule.outcome is EditOutcome.DISCARD:
        raise EditDiscarded(
            f"campaign {name!r} is {context.state.value} and its "
            f"{_reference_time_name(context.stage)} has passed, so it can no longer be "
            "edited; your changes were discarded"
        )
    if not rule.sections:
        raise EditNotAllowed(
            f"campaign {name!r} is {context.state.value} and cannot be edited; "
            "duplicate it to make a new draft"
        )
    forbidden = changed - rule.sections
    if forbidden:
        raise EditNotAllowed(
            f"campaign {name!r} is {context.state.value}: you may edit "
            f"{_section_list(rule.sections)}, not {_section_list(forbidden)}"
        )
    return rule


def published_state(first_run_at: datetime | None, now: datetime) -> CampaignState:
    """Return the state a campaign enters when published.

    A campaign whose first run (or, for a triggered one, start date) is ahead is
    scheduled. One with no scheduled time, or whose start has come, is running.
    """
    if first_run_at is not None and first_run_at > now:
        return CampaignState.SCHEDULED
    return CampaignState.RUNNING


def _reference_time_name(stage: RunStage) -> str:
    return "scheduled time" if stage is RunStage.NOT_STARTED else "next run time"


def _section_list(sections: frozenset[Section]) -> str:
    order = list(Section)
    return ", ".join(_SECTION_NAMES.get(s, s.value) for s in sorted(sections, key=order.index))


# The edit rules treat the delivery controls as part of When.
_SECTION_NAMES = {Section.WHEN: "when (with delivery)"}


_PUBLISHED = frozenset({_S.SCHEDULED, _S.RUNNING, _S.AWAITING_NEXT_RUN})

# States each action may start from. Publish from pending or rejected is only reachable
# with the workflow off; `check_action` enforces that.
ACTION_SOURCES: dict[CampaignAction, frozenset[CampaignState]] = {
    CampaignAction.PUBLISH: frozenset({_S.DRAFT, _S.PENDING_APPROVAL, _S.REJECTED}),
    CampaignAction.SEND_FOR_APPROVAL: frozenset({_S.DRAFT, _S.REJECTED}),
    CampaignAction.APPROVE: frozenset({_S.PENDING_APPROVAL}),
    CampaignAction.REJECT: frozenset({_S.PENDING_APPROVAL}),
    CampaignAction.STOP: _PUBLISHED | {_S.PENDING_APPROVAL, _S.REJECTED},
    CampaignAction.DUPLICATE: frozenset(CampaignState),
    CampaignAction.ARCHIVE: frozenset({_S.DRAFT, _S.REJECTED, _S.STOPPED, _S.COMPLETED}),
}


def check_action(
    action: CampaignAction,
    state: CampaignState,
    stage: RunStage,
    name: str,
    approval_workflow: bool,
    published: bool = False,
) -> None:
    """Check that `action` may be taken on a campaign in `state`.

    `published` is true when a version of the campaign was published before, so a campaign whose
    edit waits for approval can still be stopped.

    Raises:
        InvalidTransition: the state or the workflow setting does not allow the action.
    """
    if action is CampaignAction.SEND_FOR_APPROVAL and not approval_workflow:
        raise InvalidTransition(
            f"the approval workflow is off for this account; publish campaign {name!r} instead"
        )
    if action is CampaignAction.PUBLISH and approval_workflow and state is not _S.DRAFT:
        raise InvalidTransition(
            f"campaign {name!r} is {state.value}; with the approval workflow on, "
            "approve it or send it for approval instead"
        )
    started = stage is not RunStage.NOT_STARTED
    stoppable = state in _PUBLISHED or started or published
    if action is CampaignAction.STOP and not stoppable:
        raise InvalidTransition(
            f"campaign {name!r} is {state.value} and was never published, so there is "
            "nothing to stop; archive it instead"
        )
    if action is CampaignAction.ARCHIVE and started and state is _S.REJECTED:
        raise InvalidTransition(f"campaign {name!r} has runs; stop it before archiving it")
    allowed = ACTION_SOURCES[action]
    if state not in allowed:
        states = ", ".join(sorted(s.value for s in allowed))
        raise InvalidTransition(
            f"cannot {action.value.replace('_', ' ')} campaign {name!r} while it is "
            f"{state.value}; allowed from: {states}"
        )


def reject_pause(name: str, state: CampaignState) -> InvalidTransition:
    """Return the error for a pause request, which no state allows."""
    return InvalidTransition(
        f"campaign {name!r} is {state.value}; campaigns cannot be paused, and a "
        "published campaign can only be stopped"
    )
