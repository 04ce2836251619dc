"""Campaign storage and editing under the lifecycle's edit rules.

Lifecycle actions (publish, approve, stop…) are in `control.campaign_actions`. Both
modules record every change in the audit log and queue it for the change feed in the
same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NoReturn

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from control.audit import diff_fields, record_audit
from control.identity import new_id
from control.models import Campaign, Label, Segment, User, campaign_labels
from control.outbox import check_record_size, enqueue_definition
from control.segments import check_campaign_references
from control.views import campaign_definition, parse_when
from domain.errors import (
    CampaignEnded,
    FieldError,
    InvalidTransition,
    InvalidValue,
    NotFound,
    ScheduledTimePassed,
)
from domain.labels import label_key
from domain.lifecycle import (
    CampaignState,
    EditContext,
    EditorRole,
    EditOutcome,
    RunStage,
    Section,
    Timing,
    check_edit,
    published_state,
)
from domain.schedule import first_run_at, is_triggered
from domain.templates import render_tree
from schemas.account import Role
from schemas.campaign import (
    CampaignCreate,
    CampaignPreview,
    CampaignPreviewRequest,
    CampaignUpdate,
    InlineSegmentAudience,
    RecurringSchedule,
    SavedSegmentAudience,
    When,
)
from schemas.campaign_message import WhatSection

__all__ = [
    "create_campaign",
    "edit_context",
    "editor_role",
    "get_campaign",
    "list_campaigns",
    "mark_pending",
    "mark_published",
    "preview_campaign",
    "publish_target",
    "resolve_labels",
    "run_stage",
    "save_change",
    "update_campaign",
]

logger = logging.getLogger(__name__)

_PUBLISHED = (CampaignState.SCHEDULED, CampaignState.RUNNING, CampaignState.AWAITING_NEXT_RUN)
_SECTION_OF_FIELD = {
    "name": Section.NAME,
    "labels": Section.LABELS,
    "who": Section.WHO,
    "channel": Section.WHAT,
    "what": Section.WHAT,
    "when": Section.WHEN,
    "delivery": Section.WHEN,
}


def get_campaign(session: Session, account_id: str, campaign_id: str) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or campaign.account_id != account_id:
        raise NotFound("campaign", campaign_id)
    return campaign


def list_campaigns(
    session: Session,
    account_id: str,
    state: CampaignState | None = None,
    channel: str | None = None,
    label: str | None = None,
    include_archived: bool = False,
) -> Sequence[Campaign]:
    """Return the account's campaigns, newest first, filtered by the given values."""
    query = select(Campaign).where(Campaign.account_id == account_id)
    if state is not None:
        query = query.where(Campaign.state == state.value)
    if channel is not None:
        query = query.where(Campaign.channel == channel)
    if not include_archived:
        query = query.where(Campaign.archived.is_(False))
    if label is not None:
        query = (
            query.join(campaign_labels, campaign_labels.c.campaign_id == Campaign.id)
            .join(Label, Label.id == campaign_labels.c.label_id)
            .where(Label.name_key == label_key(label))
        )
    return session.scalars(query.order_by(Campaign.created_at.desc(), Campaign.id)).all()


def create_campaign(session: Session, actor: User, body: CampaignCreate, now: datetime) -> Campaign:
    """Save a new campaign as a draft created by `actor`."""
    sections = body.model_dump(mode="json", exclude={"name", "channel", "labels"})
    campaign = Campaign(
        id=new_id("cmp"),
        account_id=actor.account_id,
        name=body.name,
        channel=body.channel,
        state=CampaignState.DRAFT.value,
        archived=False,
        live_definition=None,
        created_by=actor.id,
        created_at=now,
        updated_at=now,
        version=1,
        has_started=False,
        **sections,
    )
    _check_segment(session, actor.account_id, body)
    campaign.labels = resolve_labels(session, actor.account_id, body.labels)
    session.add(campaign)
    save_change(
        session, actor, campaign, "create", now, changes=_snapshot(campaign), check_size=True
    )
    return campaign


def update_campaign(
    session: Session, actor: User, campaign_id: str, body: CampaignUpdate, now: datetime
) -> tuple[Campaign, list[str]]:
    """Apply `body` to a campaign if the edit rules allow it; return it with warnings.

    Fields that are sent with their current value do not count as changed, so a client may
    send the whole campaign back.

    Raises:
        EditDiscarded: the run time passed, so nothing may change.
        EditNotAllowed: the state does not let the editor change these sections.
        ScheduledTimePassed: the edit would publish a campaign whose time has passed.
        InvalidTransition: the campaign is archived.
    """
    campaign = get_campaign(session, actor.account_id, campaign_id)
    if campaign.archived:
        raise_archived(campaign)
    before = _snapshot(campaign)
    after = _merged(before, body)
    changed = frozenset(_SECTION_OF_FIELD[k] for k in diff_fields(before, after))
    if not changed:
        return campaign, []
    rule = check_edit(edit_context(actor, campaign, now), changed, campaign.name)
    _apply(session, campaign, after)
    from_state = campaign.state
    _apply_outcome(campaign, rule.outcome, actor, now)
    save_change(
        session,
        actor,
        campaign,
        "edit",
        now,
        changes=diff_fields(before, _snapshot(campaign)),
        from_state=from_state,
        check_size=True,
    )
    return campaign, [rule.warning] if rule.warning else []


def raise_archived(campaign: Campaign) -> NoReturn:
    """Refuse any change to an archived campaign; a copy of it can be edited instead."""
    raise InvalidTransition(
        f"campaign {campaign.name!r} is archived and cannot change; duplicate it to reuse it"
    )


def edit_context(actor: User, campaign: Campaign, now: datetime) -> EditContext:
    """Collect the facts that select the edit rule for `actor` on `campaign`."""
    stage = run_stage(campaign)
    return EditContext(
        state=CampaignState(campaign.state),
        stage=stage,
        timing=_timing(campaign, stage, actor.account.timezone, now),
        role=editor_role(actor, campaign),
        approval_workflow=actor.account.approval_workflow,
    )


def editor_role(actor: User, campaign: Campaign) -> EditorRole:
    """Return the approver column only for an approver who did not create the campaign."""
    can_approve = actor.role in (Role.APPROVER, Role.ADMIN)
    if can_approve and actor.id != campaign.created_by:
        return EditorRole.APPROVER
    return EditorRole.CREATOR


def run_stage(campaign: Campaign) -> RunStage:
    """Return how far the campaign has got; pending and rejected ones keep their last stage."""
    state = CampaignState(campaign.state)
    if state is CampaignState.RUNNING:
        return RunStage.LIVE
    if state is CampaignState.AWAITING_NEXT_RUN:
        return RunStage.AWAITING_NEXT_RUN
    if not campaign.has_started:
        return RunStage.NOT_STARTED
    if campaign.resume_state == CampaignState.AWAITING_NEXT_RUN.value:
        return RunStage.AWAITING_NEXT_RUN
    return RunStage.LIVE


def publish_target(campaign: Campaign, when: When, timezone: str, now: datetime) -> CampaignState:
    """Return the state that publishing (or approving) `campaign` leads to.

    Raises:
        ScheduledTimePassed: a campaign not yet started is due at a time already past.
    """
    end_at = getattr(when, "end_at", None)
    if end_at is not None and end_at <= now:
        raise CampaignEnded(
            f"campaign {campaign.name!r} ends at {end_at.isoformat()}, which has passed, so "
            "it could never send; give it a later `end_at`"
        )
    if campaign.has_started:
        if campaign.state in {s.value for s in _PUBLISHED}:
            return CampaignState(campaign.state)
        return CampaignState(campaign.resume_state or CampaignState.RUNNING.value)
    first = first_run_at(when, timezone)
    if first is None and isinstance(when, RecurringSchedule):
        raise InvalidValue(
            f"campaign {campaign.name!r} has no run: no day between its start and end "
            "matches its schedule; change the days or the dates",
            ("when",),
        )
    if first is not None and first <= now and not is_triggered(when):
        raise ScheduledTimePassed(
            f"campaign {campaign.name!r} was scheduled for {first.isoformat()}, which has "
            "passed; give a new time (`at`, or a new `when`) or choose to run it now (`run_now`)"
        )
    return published_state(first, now)


def mark_published(campaign: Campaign, target: CampaignState) -> None:
    """Move `campaign` to `target` and snapshot the definition that workers send from."""
    campaign.state = target.value
    campaign.has_started = campaign.has_started or target is CampaignState.RUNNING
    campaign.resume_state = None
    campaign.rejection_comment = None
    campaign.live_definition = {
        "name": campaign.name,
        "labels": [label.name for label in campaign.labels],
        **_snapshot(campaign),
    }


def mark_pending(campaign: Campaign) -> None:
    if campaign.state in {s.value for s in _PUBLISHED}:
        campaign.resume_state = campaign.state
    campaign.state = CampaignState.PENDING_APPROVAL.value


def save_change(
    session: Session,
    actor: User,
    campaign: Campaign,
    action: str,
    now: datetime,
    *,
    changes: dict[str, Any] | None = None,
    from_state: str | None = None,
    comment: str | None = None,
    check_size: bool = False,
) -> None:
    """Bump the version, record the audit entry, queue the feed record, and commit.

    `check_size` rejects a change that makes the feed record too large. Only edits of the
    content check it, so that stopping or scheduling a campaign always goes through.
    """
    if action != "create":
        campaign.version += 1
    campaign.updated_at = now
    session.flush()
    record_audit(
        session,
        actor,
        "campaign",
        campaign.id,
        action,
        now,
        changes=changes,
        from_state=from_state,
        to_state=campaign.state,
        comment=comment,
    )
    definition = campaign_definition(campaign, actor.account)
    if check_size:
        check_record_size(definition)
    enqueue_definition(session, "campaign", campaign.id, definition, now)
    session.commit()
    logger.info(
        "campaign %s",
        action,
        extra={"campaign_id": campaign.id, "user_id": actor.id, "state": campaign.state},
    )


def preview_campaign(campaign: Campaign, request: CampaignPreviewRequest) -> CampaignPreview:
    """Render the message of each variant (or of `request.variant`) for a profile."""
    what = WhatSection.model_validate(campaign.what)
    names = [v.name for v in what.variants]
    if request.variant is not None and request.variant not in names:
        raise InvalidValue(
            f"variant {request.variant!r} does not exist; the campaign has {names}", ("variant",)
        )
    rendered: dict[str, dict[str, Any]] = {}
    for index, variant in enumerate(what.variants):
        if request.variant not in (None, variant.name):
            continue
        message = variant.message.model_dump(mode="json", exclude={"channel"})
        path = ("what", "variants", index, "message")
        rendered[variant.name] = render_tree(message, request.profile, what.defaults, path)
    return CampaignPreview(variants=rendered)


def resolve_labels(session: Session, account_id: str, names: Sequence[str]) -> list[Label]:
    """Return the labels named in `names`, in order and without repeats.

    Raises:
        InvalidValue: a name matches no label of the account.
    """
    found: list[Label] = []
    for index, name in enumerate(names):
        label = session.scalar(
            select(Label).where(Label.account_id == account_id, Label.name_key == label_key(name))
        )
        if label is None:
            raise InvalidValue(
                f"label {name!r} does not exist; create it first (POST /labels)", ("labels", index)
            )
        if label not in found:
            found.append(label)
    return found


def _check_segment(session: Session, account_id: str, body: CampaignCreate) -> None:
    if isinstance(body.who, InlineSegmentAudience):
        check_campaign_references(session, account_id, body.who.definition, ("who", "definition"))
    if not isinstance(body.who, SavedSegmentAudience):
        return
    segment = session.get(Segment, body.who.segment_id)
    if segment is None or segment.account_id != account_id:
        raise InvalidValue(f"segment {body.who.segment_id!r} does not exist", ("who", "segment_id"))
    # Segments saved before their campaign references were checked are checked here.
    check_campaign_references(session, account_id, segment.definition, ("who", "segment_id"))


def _timing(campaign: Campaign, stage: RunStage, timezone: str, now: datetime) -> Timing:
    if stage is RunStage.LIVE:
        return Timing.BEFORE
    if stage is RunStage.AWAITING_NEXT_RUN:
        due = campaign.next_run_at
    else:
        due = first_run_at(parse_when(campaign.when), timezone)
    return Timing.AFTER if due is not None and due <= now else Timing.BEFORE


def _snapshot(campaign: Campaign) -> dict[str, Any]:
    return {
        "name": campaign.name,
        "channel": campaign.channel,
        "labels": [label.name for label in campaign.labels],
        "who": campaign.who,
        "what": campaign.what,
        "when": campaign.when,
        "delivery": campaign.delivery,
    }


def _merged(before: dict[str, Any], body: CampaignUpdate) -> dict[str, Any]:
    """Return the full campaign after `body`, validated as a whole.

    Label names are compared case-insensitively with the stored ones, so `cart recovery`
    for `Cart Recovery` is no change.
    """
    sent = body.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    try:
        merged = CampaignCreate.model_validate({**before, **sent}).model_dump(mode="json")
    except ValidationError as error:
        raise InvalidValue.of_fields(
            [FieldError(tuple(e["loc"]), e["msg"], e["type"]) for e in error.errors()]
        ) from None
    stored = {label_key(name): name for name in before["labels"]}
    merged["labels"] = [stored.get(label_key(name), name) for name in merged["labels"]]
    return merged


def _apply(session: Session, campaign: Campaign, after: dict[str, Any]) -> None:
    body = CampaignCreate.model_validate(after)
    _check_segment(session, campaign.account_id, body)
    campaign.labels = resolve_labels(session, campaign.account_id, body.labels)
    campaign.name, campaign.channel = after["name"], after["channel"]
    campaign.who, campaign.what = after["who"], after["what"]
    campaign.when, campaign.delivery = after["when"], after["delivery"]


def _apply_outcome(campaign: Campaign, outcome: EditOutcome, actor: User, now: datetime) -> None:
    if outcome is EditOutcome.SEND_FOR_APPROVAL:
        mark_pending(campaign)
    elif outcome is EditOutcome.PUBLISH:
        when = parse_when(campaign.when)
        mark_published(campaign, publish_target(campaign, when, actor.account.timezone, now))
